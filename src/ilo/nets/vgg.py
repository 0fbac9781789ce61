"""VGG-16 (Simonyan & Zisserman 2015, configuration D) in torchvision's state-dict layout.

Plain PyTorch, no torchvision: torchvision's ImageNet file ``vgg16-397923af.pth`` loads into
:class:`VGG16` with ``strict=True``. Keys::

    features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}   3x3 convolutions
    classifier.{0,3,6}.{weight,bias}                              4096-4096-num_classes MLP

``features`` indices (ReLU after every conv, max-pool at 4, 9, 16, 23, 30)::

    conv1_1 0  relu 1  conv1_2 2  relu 3  pool 4
    conv2_1 5  relu 6  conv2_2 7  relu 8  pool 9
    conv3_1 10 relu 11 conv3_2 12 relu 13 conv3_3 14 relu 15 pool 16
    conv4_1 17 relu 18 conv4_2 19 relu 20 conv4_3 21 relu 22 pool 23
    conv5_1 24 relu 25 conv5_2 26 relu 27 conv5_3 28 relu 29 pool 30

LPIPS taps ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3`` = indices ``3, 8, 15, 22, 29``.
Inputs are ImageNet-normalised RGB (any size >= 32 px for the classifier).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)
LPIPS_TAPS = (3, 8, 15, 22, 29)


def collect_taps(layers: nn.Sequential, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    """Run ``layers`` on ``x`` and return the outputs of the modules at indices ``taps``.

    Stops after the deepest tap (later layers are not evaluated). ``taps`` must be strictly
    increasing valid indices.
    """
    taps = list(taps)
    if not taps or any(b <= a for a, b in zip(taps, taps[1:], strict=False)) or taps[0] < 0 or taps[-1] >= len(layers):
        raise ValueError(f"taps must be strictly increasing indices in [0, {len(layers)}), got {taps}")
    out, wanted = [], set(taps)
    for i in range(taps[-1] + 1):
        x = layers[i](x)
        if i in wanted:
            out.append(x)
    return out


class VGG16(nn.Module):
    """VGG-16 with torchvision's module names.

    Args:
        num_classes: outputs of the last linear layer.
        classifier: build the 3-layer MLP head (``False`` for a features-only backbone, e.g.
            for LPIPS: 14.7 M instead of 138 M parameters).

    >>> net = VGG16(classifier=False)
    >>> [tuple(f.shape) for f in net.forward_features(torch.zeros(1, 3, 32, 32), LPIPS_TAPS)]
    [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 512, 2, 2)]
    """

    def __init__(self, num_classes: int = 1000, classifier: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.has_classifier = classifier
        if classifier:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(4096, num_classes),
            )

    def forward_features(self, x: torch.Tensor, taps: Sequence[int] = LPIPS_TAPS) -> list[torch.Tensor]:
        """Activations after ``features[i]`` for each ``i`` in ``taps`` (see the module docstring)."""
        return collect_taps(self.features, x, taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of ImageNet-normalised images ``[B, 3, H, W]``."""
        if not self.has_classifier:
            raise RuntimeError("this VGG16 was built with classifier=False; use forward_features")
        h = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(h, 1))
