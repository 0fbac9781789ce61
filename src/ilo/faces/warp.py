"""The generator's aligned face warped into the photo, then the task's own operator.

:class:`WarpedOperator` composes a differentiable warp ``W`` (bilinear ``grid_sample`` through
the inverse alignment) with any operator ``inner`` of the library acting on a photo region:

.. math::
    A(x) = A_{inner}(W x), \\qquad
    \\ell(x, y) = \\frac{\\sum_i w_i (A(x) - y)_i^2}{\\sum_i w_i},

so a mask drawn on the photo, white noise of the photo and the photo's own resolution are the
inner operator's business, exactly as for any image. ``W x`` is zero outside the aligned square;
the weight ``w`` keeps the measurements that the face alone determines: ``w_i = 1`` where
``|A_inner(c) - 1|_i < tol`` for the coverage ``c = W 1``. For inpainting that is "observed and
inside the face", for denoising "inside the face", for super-resolution the low-resolution pixels
whose whole kernel footprint lies inside the face.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..operators.base import Operator, RandomSource
from .align import Similarity, sampling_grid


def face_region(T: Similarity, size: int, photo_hw: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """Bounding box ``(x0, y0, x1, y1)`` in photo pixels of the aligned square ``[0, size]^2``
    (``T``: photo -> aligned), widened by ``margin`` pixels and clipped to the photo.

    Raises:
        ValueError: the square lies outside the photo.
    """
    corners = T.inverse().apply(np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    h, w = photo_hw
    x0 = max(0, math.floor(corners[:, 0].min()) - margin)
    y0 = max(0, math.floor(corners[:, 1].min()) - margin)
    x1 = min(w, math.ceil(corners[:, 0].max()) + margin)
    y1 = min(h, math.ceil(corners[:, 1].max()) + margin)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the aligned face lies outside the photo")
    return x0, y0, x1, y1


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``x [B, C, S, S]`` at ``grid [1, h, w, 2]`` (zeros outside): ``[B, C, h, w]``."""
    return F.grid_sample(x, grid.to(x.dtype).expand(x.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="zeros", align_corners=False)


class WarpedOperator(Operator):
    """``inner`` acting on a photo region, seen from the generator's aligned frame.

    Args:
        inner: an operator whose ``input_shape`` is the region ``(C, (y1 - y0) * scale, (x1 - x0) * scale)``.
        transform: photo -> aligned-frame similarity.
        size: the generator's side ``S``; the operator's ``input_shape`` is ``(C, S, S)``.
        box: the region ``(x0, y0, x1, y1)`` in photo pixels.
        scale: output pixels per photo pixel (the super-resolution factor; 1 otherwise).
        tol: tolerance of the measurement weight (see the module docstring).

    ``task``, ``linear`` and the noise model are the inner operator's; ``y`` is what the inner
    operator observes on the region. Shapes: ``x [B, C, S, S] -> A(x)`` of the inner operator's output shape.

    Example:
        >>> from ilo.operators import Denoising
        >>> T = Similarity.from_params(1.0, 0.0, (-4.0, -4.0))  # the face sits at (4, 4) in the photo
        >>> op = WarpedOperator(Denoising((3, 16, 16), 10), T, 8, (0, 0, 16, 16))
        >>> op.input_shape, op.task, int(op.weight[0, 0].sum())
        ((3, 8, 8), 'denoise', 64)
    """

    #: ``weight [1 or B, *output_shape]``: one per row for a batch that measures less in some rows
    #: (:func:`ilo.faces.choice.fit_and_all`)
    per_sample_buffers = ("weight",)

    def __init__(self, inner: Operator, transform: Similarity, size: int, box: tuple[int, int, int, int],
                 scale: int = 1, tol: float = 1e-3):
        c = inner.input_shape[0]
        super().__init__((c, size, size), inner.noise)
        self.inner, self.transform, self.box, self.scale = inner, transform, tuple(int(v) for v in box), int(scale)
        self.task, self.linear = inner.task, inner.linear
        grid = sampling_grid(transform, (size, size), self.box, self.scale)  # [1, h, w, 2]
        if tuple(grid.shape[1:3]) != tuple(inner.input_shape[1:]):
            raise ValueError(f"the region {self.box} at scale {scale} is {tuple(grid.shape[1:3])} pixels but the inner "
                             f"operator takes {tuple(inner.input_shape[1:])}")
        self.register_buffer("grid", grid)
        cov = warp(torch.ones(1, 1, size, size), grid)  # [1, 1, h, w]
        self.register_buffer("coverage", cov)
        with torch.no_grad():
            weight = ((inner.A(cov.expand(1, c, -1, -1)) - 1).abs() < tol).to(cov.dtype)  # [1, *output_shape]
        if not bool(weight.any()):
            raise ValueError("no measurement of the photo falls inside the aligned face")
        self.register_buffer("weight", weight)
        self.output_shape = getattr(inner, "output_shape", tuple(weight.shape[1:]))

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        """Aligned frame -> photo region: ``[B, C, S, S] -> [B, C, h, w]``."""
        self.check_input(x)
        return warp(x, self.grid)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.A(self.warp(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``W^T A_inner^T y``; ``W^T`` is the exact adjoint of the bilinear warp (its vector-Jacobian product)."""
        v = self.inner.A_adjoint(y)
        x0 = torch.zeros(y.shape[0], *self.input_shape, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            (adj,) = torch.autograd.grad(warp(x0, self.grid), x0, v)
        return adj

    def forward(self, x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        """Simulate the inner operator's observation of the warped face."""
        return self.inner(self.warp(x), generator)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error over the measurements the face determines: ``[B]``."""
        r = self.A(x) - y
        w = self.weight.to(r.dtype)
        return (w * r.pow(2)).flatten(1).sum(1) / w.flatten(1).sum(1)

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.observation_image(y)

    def config(self) -> dict:
        return {"task": self.task, "input_shape": list(self.input_shape), "noise_sigma": self.noise.sigma,
                "inner": self.inner.config(), "region": list(self.box), "scale": self.scale,
                "transform": self.transform.to_dict(), "measurements_used": int(self.weight[-1].sum())}
