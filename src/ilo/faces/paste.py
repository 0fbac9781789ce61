"""Feathered paste-back of restored faces, and the classical restoration of the background
(the method the task's operator names, ``classical_method``).

Images are ``[1, C, H, W]`` in ``[-1, 1]``; masks ``[1, 1, H, W]`` in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..operators.base import Operator
from .align import Similarity, sampling_grid
from .warp import face_region, warp

def feather_window(size: int, ramp: float = 0.12, inset: float = 0.02) -> torch.Tensor:
    """``[1, 1, S, S]`` weights of the aligned frame: 0 within ``inset * S`` of the border, rising
    smoothly (smoothstep) to 1 over the next ``ramp * S``.

    >>> w = feather_window(64)
    >>> float(w[0, 0, 32, 32]), float(w[0, 0, 0, 32])
    (1.0, 0.0)
    """
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    d = torch.minimum(t, 1 - t)  # distance to the nearest border, in units of S
    r = ((d - inset) / ramp).clamp(0, 1)
    s = r * r * (3 - 2 * r)
    return (s[:, None] * s[None, :])[None, None]


def scaled(T: Similarity, factor: int) -> Similarity:
    """``T`` (photo -> aligned) for the photo enlarged ``factor`` times."""
    return Similarity(T.matrix @ np.diag([1.0 / factor, 1.0 / factor, 1.0]))


def paste(canvas: torch.Tensor, face: torch.Tensor, T: Similarity, *, scale: int = 1,
          window: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the aligned ``face [1, C, S, S]`` into ``canvas [1, C, scale * H, scale * W]``.

    ``T`` maps photo coordinates (``H x W``) to the aligned frame. Returns the new canvas and the
    blending weight ``alpha [1, 1, scale * H, scale * W]`` (the warped :func:`feather_window`).
    """
    size = face.shape[-1]
    window = feather_window(size) if window is None else window
    ph, pw = canvas.shape[-2] // scale, canvas.shape[-1] // scale
    box = face_region(T, size, (ph, pw), margin=1)
    grid = sampling_grid(T, (size, size), box, scale)
    x0, y0, x1, y1 = (v * scale for v in box)
    alpha = torch.zeros(1, 1, *canvas.shape[-2:], dtype=canvas.dtype)
    alpha[..., y0:y1, x0:x1] = warp(window.to(canvas.dtype), grid)
    out = canvas.clone()
    a = alpha[..., y0:y1, x0:x1]
    out[..., y0:y1, x0:x1] = a * warp(face.to(canvas.dtype), grid) + (1 - a) * canvas[..., y0:y1, x0:x1]
    return out, alpha


def fill_missing(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Missing pixels (``mask == 0``) from a pyramid of mask-weighted averages (push-pull); observed
    pixels unchanged. ``x [1, C, H, W]``, ``mask [1, 1, H, W]``.

    >>> x = torch.tensor([[[[1.0, 0.0, 3.0]]]]); m = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    >>> fill_missing(x, m).tolist()
    [[[[1.0, 2.0, 3.0]]]]
    """
    if bool(mask.all()) or not bool(mask.any()):
        return x if bool(mask.all()) else torch.zeros_like(x)
    pooled = F.avg_pool2d(x * mask, 2, ceil_mode=True)
    weight = F.avg_pool2d(mask, 2, ceil_mode=True)
    coarse = fill_missing(pooled / weight.clamp_min(1e-8), (weight > 0).to(x.dtype))
    up = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return mask * x + (1 - mask) * up


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter (reflect padding) of std ``sigma`` pixels."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


#: the classical methods until :func:`ilo.solvers.solve` has them, by method name
_CLASSICAL = {
    "biharmonic": lambda y, op: fill_missing(y, op.mask.to(y.dtype)),
    "bicubic": lambda y, op: F.interpolate(y, scale_factor=op.factor, mode="bicubic", align_corners=False).clamp(-1, 1),
    "nlmeans": lambda y, op: gaussian_blur(y, max(0.5, op.sigma255 / 25.0)),
}


def classical_restore(y: torch.Tensor, op: Operator) -> torch.Tensor:
    """The whole photo restored by ``op.classical_method``: the observation ``y [1, C, H, W]`` of
    ``op`` -> ``[1, C, scale * H, scale * W]`` (``op``'s input shape)."""
    if op.classical_method is None:
        raise ValueError(f"{type(op).__name__} has no classical method to restore a photo with")
    return _CLASSICAL[op.classical_method](y, op)
