"""AlexNet (Krizhevsky 2014, "one weird trick" variant) in torchvision's state-dict layout.

Plain PyTorch, no torchvision: torchvision's ImageNet file ``alexnet-owt-7be5be79.pth`` loads
into :class:`AlexNet` with ``strict=True``. ``features`` indices::

    conv1 0 (11x11/4, 64)   relu 1  pool 2
    conv2 3 (5x5, 192)      relu 4  pool 5
    conv3 6 (3x3, 384)      relu 7
    conv4 8 (3x3, 256)      relu 9
    conv5 10 (3x3, 256)     relu 11 pool 12

``classifier.{1,4,6}`` is the 9216-4096-4096-num_classes MLP (dropout at 0 and 3).
LPIPS taps ``relu1 .. relu5`` = indices ``1, 4, 7, 9, 11``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .vgg import collect_taps

LPIPS_TAPS = (1, 4, 7, 9, 11)


class AlexNet(nn.Module):
    """AlexNet with torchvision's module names.

    Args:
        num_classes: outputs of the last linear layer.
        classifier: build the MLP head (``False`` for a features-only backbone, 2.5 M parameters).

    >>> net = AlexNet(classifier=False)
    >>> [tuple(f.shape) for f in net.forward_features(torch.zeros(1, 3, 64, 64))]
    [(1, 64, 15, 15), (1, 192, 7, 7), (1, 384, 3, 3), (1, 256, 3, 3), (1, 256, 3, 3)]
    """

    def __init__(self, num_classes: int = 1000, classifier: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.has_classifier = classifier
        if classifier:
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
                nn.Linear(4096, num_classes),
            )

    def forward_features(self, x: torch.Tensor, taps: Sequence[int] = LPIPS_TAPS) -> list[torch.Tensor]:
        """Activations after ``features[i]`` for each ``i`` in ``taps``."""
        return collect_taps(self.features, x, taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of ImageNet-normalised images ``[B, 3, H, W]``."""
        if not self.has_classifier:
            raise RuntimeError("this AlexNet was built with classifier=False; use forward_features")
        h = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(h, 1))
