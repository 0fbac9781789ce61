"""Feathered paste-back of restored faces, and the classical restoration of the background
(the method the task's operator names, ``classical_method``).

Images are ``[1, C, H, W]`` in ``[-1, 1]``; masks ``[1, 1, H, W]`` in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch

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
          window: torch.Tensor | None = None, weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend the aligned ``face [1, C, S, S]`` into ``canvas [1, C, scale * H, scale * W]``:
    ``canvas + weight * alpha * (face - canvas)``.

    ``T`` maps photo coordinates (``H x W``) to the aligned frame. Returns the new canvas and the
    window ``alpha [1, 1, scale * H, scale * W]`` (the warped :func:`feather_window`, not scaled
    by ``weight``: where the face is).
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
    b = weight * a
    out[..., y0:y1, x0:x1] = b * warp(face.to(canvas.dtype), grid) + (1 - b) * canvas[..., y0:y1, x0:x1]
    return out, alpha


def classical_restore(y: torch.Tensor, op: Operator) -> torch.Tensor:
    """The whole photo restored by ``op.classical_method`` through :func:`ilo.solvers.solve`: the
    observation ``y [1, C, H, W]`` of ``op`` -> ``[1, C, scale * H, scale * W]`` (``op``'s input shape)."""
    from ..solvers import solve

    if op.classical_method is None:
        raise ValueError(f"{type(op).__name__} has no classical method to restore a photo with")
    return solve(y, op, None, op.classical_method).image.clamp(-1, 1)
