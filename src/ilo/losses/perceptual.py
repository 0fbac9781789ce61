"""Perceptual distances between images in ``[-1, 1]``, and the paper's 256-px resizing.

Both distances here follow the recipe of LPIPS (Zhang et al. 2018, eq. 1): deep features at
several depths ``l``, each unit-normalised along channels at every pixel, squared differences
weighted per channel, averaged over space and summed over depths::

    d(x, y) = sum_l  mean_{h,w}  sum_c  w_lc * (f_l(x)[c,h,w] - f_l(y)[c,h,w])^2,
    f_l = g_l / (||g_l||_channels + eps)

- :class:`MobileNetPerceptualDistance`: the ImageNet MobileNetV2 whose weights install offline,
  equal weights ``w_lc = 1`` (no calibrated heads exist for this backbone). It is *not* LPIPS:
  its values are on a different scale and it was never fitted to human judgements.
- :class:`ilo.losses.lpips.LPIPS`: the real thing (VGG16/AlexNet with the published heads)
  when the user supplies the backbone file.

The paper computes the perceptual term at 256 x 256: :func:`resize_for_perceptual` downsamples
larger images (bicubic, antialiased) and leaves images of at most 256 px (e.g. 64 x 64 faces)
at their native size. The distances do not resize by themselves: the caller decides.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.mobilenet_v2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STAGE_ENDS,
    MobileNetV2,
    fuse_batchnorm,
    load_mobilenet_v2,
)


def resize_for_perceptual(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Downsample images larger than ``size`` for a perceptual loss; others are returned as is.

    An image whose longer side exceeds ``size`` is resized with bicubic interpolation and
    antialiasing (``F.interpolate(mode="bicubic", antialias=True)``, which low-pass filters
    first, like PIL's resize) so that its longer side is ``size``: square images become
    ``size x size``, as in the paper; the aspect ratio of others is kept. Values are not
    clamped (bicubic overshoots slightly) so that gradients pass everywhere.

    Args:
        x: images ``[B, C, H, W]``.
        size: the largest side length to keep.

    Returns:
        ``x`` itself when ``max(H, W) <= size``, else ``[B, C, H', W']`` with ``max(H', W') == size``.

    >>> resize_for_perceptual(torch.zeros(2, 3, 1024, 1024)).shape
    torch.Size([2, 3, 256, 256])
    >>> x = torch.zeros(1, 3, 64, 64); resize_for_perceptual(x) is x
    True
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if max(h, w) <= size:
        return x
    scale = size / max(h, w)
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=out, mode="bicubic", align_corners=False, antialias=True)


def unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """``f / (||f||_2 + eps)`` along dim 1 (channels) of ``[B, C, H, W]`` features.

    As in LPIPS; the norm is ``sqrt(sum f^2 + eps^2)`` so that its gradient stays finite where
    a feature vector is exactly zero (e.g. all ReLUs off).
    """
    norm = torch.sqrt((f * f).sum(dim=1, keepdim=True) + eps * eps)
    return f / (norm + eps)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{name} must be RGB images [B, 3, H, W] in [-1, 1], got shape {tuple(t.shape)}")
    if x.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"x and y must have the same size, got {tuple(x.shape[-2:])} and {tuple(y.shape[-2:])}")
    if x.shape[0] != y.shape[0] and 1 not in (x.shape[0], y.shape[0]):
        raise ValueError(f"batch sizes {x.shape[0]} and {y.shape[0]} differ and neither is 1")


class FeatureDistance(nn.Module):
    """Base of the LPIPS-style distances: subclasses set ``self.backbone`` and ``self.taps``
    (one entry per depth), implement :meth:`raw_features`, and may override :meth:`channel_weights`.

    The backbone stays in eval mode (frozen batch-norm statistics) even if ``.train()`` is
    called on a module that contains the distance. Parameters never require gradients;
    gradients flow to the images.
    """

    backbone: nn.Module
    taps: tuple[int, ...]

    def raw_features(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """Backbone activations ``[B, C_l, H_l, W_l]`` at each depth for images in ``[-1, 1]``."""
        raise NotImplementedError

    def channel_weights(self) -> list[torch.Tensor | None]:
        """Per-depth channel weights ``[C_l]`` (``None`` = all ones)."""
        return [None] * self.num_layers

    @property
    def num_layers(self) -> int:
        return len(self.taps)

    def train(self, mode: bool = True) -> FeatureDistance:
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised features of ``x`` ``[B, 3, H, W]`` in ``[-1, 1]``, one per depth.

        Compute them once for a fixed target and pass them to :meth:`distance` at every step.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        return [unit_normalize(f) for f in self.raw_features(x)]

    def distance(self, fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-depth distances ``[B, L]`` between two lists of :meth:`features` (batch 1 broadcasts)."""
        out = []
        for a, b, w in zip(fx, fy, self.channel_weights(), strict=True):
            d = (a - b).square()  # [B, C, h, w]
            d = d.sum(dim=1) if w is None else torch.einsum("bchw,c->bhw", d, w)
            out.append(d.mean(dim=(1, 2)))  # [B]
        return torch.stack(out, dim=1)

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-depth distances ``[B, L]`` between images ``x`` and ``y`` ``[B, 3, H, W]`` in ``[-1, 1]``."""
        _check_pair(x, y)
        return self.distance(self.features(x), self.features(y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances ``[B]`` between ``x`` and ``y`` ``[B, 3, H, W]`` in ``[-1, 1]``; a batch of 1 broadcasts."""
        return self.layer_distances(x, y).sum(dim=1)


class MobileNetPerceptualDistance(FeatureDistance):
    """LPIPS-style distance on ImageNet MobileNetV2 features, equal weights: works offline.

    Features: the outputs of the five stages (``features[1, 3, 6, 13, 17]``: 16, 24, 32, 96, 320
    channels at strides 2, 4, 8, 16, 32), at the input's native resolution. Each depth
    contributes at most 4, so ``0 <= d <= 20``. Measured on scikit-image photos (values in
    ``[-1, 1]``): Gaussian noise of std 0.02 / 0.1 / 0.4 gives about 0.1-0.5 / 1.3-2.9 / 5-7,
    Gaussian blur of 1 / 4 px about 1-1.7 / 5-6, two unrelated photos about 9.

    Args:
        net: a MobileNetV2 with ImageNet weights (default: :func:`load_mobilenet_v2`).
        taps: the ``features`` indices used.
        fuse: run a copy of ``net`` with batch norm folded into the convolutions
            (:func:`~ilo.nets.mobilenet_v2.fuse_batchnorm`; same values, faster); ``False``
            runs ``net`` as is (the reference path).
        channels_last: with ``fuse``, keep the fused copy's weights and the activations in the
            channels-last memory format (same values within float rounding; measured 1.2-1.3x
            faster forward + backward on CPU, docs/PERFORMANCE.md).

    Shapes: ``x, y`` ``[B, 3, H, W]`` in ``[-1, 1]`` (``H, W >= 32``) -> ``[B]``.

    Example (on any MobileNetV2; the default loads the pretrained one)::

        >>> d = MobileNetPerceptualDistance(MobileNetV2().eval())
        >>> x = torch.rand(2, 3, 64, 64) * 2 - 1
        >>> d(x, x).tolist()
        [0.0, 0.0]
    """

    mean: torch.Tensor  # buffer [1, 3, 1, 1]
    std: torch.Tensor  # buffer [1, 3, 1, 1]

    def __init__(self, net: MobileNetV2 | None = None, taps: Sequence[int] = STAGE_ENDS, fuse: bool = True,
                 channels_last: bool = True):
        super().__init__()
        net = net if net is not None else load_mobilenet_v2()
        self.backbone: MobileNetV2 = fuse_batchnorm(net) if fuse else net.eval().requires_grad_(False)
        self.memory_format = torch.channels_last if fuse and channels_last else torch.contiguous_format
        self.backbone.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # nn.Module.to takes it; the stubs omit it
        self.taps = tuple(taps)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def raw_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (((x + 1) / 2 - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        return self.backbone.forward_features(x, self.taps)
