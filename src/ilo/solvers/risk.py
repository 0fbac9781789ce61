"""Guarantees against doing worse than the input: pasting observed pixels back, and SURE.

* :func:`keep_observed`: for noiseless inpainting, the observed pixels are known exactly, so
  a reconstruction takes them from ``y`` and only fills the missing ones.
* :func:`sure`: Monte-Carlo Stein's unbiased risk estimate (Ramani, Blu & Unser, IEEE TIP
  2008) of a denoiser's mean squared error from the noisy image alone, for white Gaussian
  noise of known ``sigma``:

  .. math::
      \\mathrm{SURE}(f, y) = \\tfrac1n \\|y - f(y)\\|^2 - \\sigma^2
          + \\tfrac{2\\sigma^2}{n}\\, \\frac{b^\\top (f(y + \\varepsilon b) - f(y))}{\\varepsilon},
      \\qquad b_i = \\pm 1 \\text{ (Rademacher)},

  whose expectation over the noise is the true ``E ||f(y) - x||² / n`` (as ``ε -> 0``; any
  probe with ``E[b bᵀ] = I`` will do, Rademacher signs give the lowest variance). The noisy image itself
  (``f = identity``) has SURE exactly ``sigma²``, the bar a denoiser's output must clear.
  :class:`~ilo.operators.Denoising` clips the noisy image to ``[-1, 1]``, which the estimate
  ignores (it is slightly biased on saturated pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..operators import Inpainting
from ..operators.base import Operator


def keep_observed(x: torch.Tensor, y: torch.Tensor, operator: Operator) -> torch.Tensor:
    """``x`` with the observed pixels replaced by ``y``'s: ``[B, C, H, W]``.

    Only for noiseless :class:`~ilo.operators.Inpainting` (with noise, ``y`` is not the truth
    there); raises ValueError otherwise.

    >>> op = Inpainting.box((1, 4, 4), 1, 1, 3, 3)
    >>> keep_observed(torch.zeros(1, 1, 4, 4), op(torch.ones(1, 1, 4, 4)), op)[0, 0].tolist()[1]
    [1.0, 0.0, 0.0, 1.0]
    """
    if not isinstance(operator, Inpainting):
        raise ValueError(f"keep_observed needs an Inpainting operator, got {type(operator).__name__}")
    if operator.noise.sigma != 0:
        raise ValueError("keep_observed needs noiseless observations (the observed pixels are noisy)")
    operator.check_input(x)
    if y.shape != x.shape:
        raise ValueError(f"y must have the image's shape {list(x.shape)}, got {list(y.shape)}")
    return operator.keep_observed(x, y)


def sure(
    denoiser: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    sigma: float,
    *,
    epsilon: float | None = None,
    probes: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo SURE of ``denoiser`` at the noisy images ``y [B, ...]``: the estimated mean
    squared error per entry, ``[B]``, in ``y``'s units (Ramani, Blu & Unser 2008).

    Args:
        denoiser: maps a batch like ``y`` to its estimate (called ``1 + probes`` times).
        y: noisy images, white Gaussian noise of std ``sigma`` (> 0) per entry.
        epsilon: finite-difference step; default ``sigma / 100`` (the paper's rule of thumb
            ``0.01 * max|y|`` is for 0-255 images).
        probes: Monte-Carlo probes ``b`` averaged for the divergence.
        generator: random source of the probes (default: seed 0).

    >>> y = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> [round(v, 4) for v in sure(lambda v: v, y, 0.5).tolist()]  # the identity: sigma²
    [0.25, 0.25, 0.25]
    """
    if not sigma > 0:
        raise ValueError(f"sure needs a noise sigma > 0, got {sigma!r}")
    if int(probes) < 1:
        raise ValueError(f"probes must be >= 1, got {probes!r}")
    eps = float(epsilon) if epsilon is not None else sigma / 100
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    with torch.no_grad():
        fy = denoiser(y)
        n = y[0].numel()
        fit = (y - fy).flatten(1).pow(2).sum(1)
        div = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for _ in range(int(probes)):
            b = torch.randint(0, 2, y.shape, generator=gen).to(y.dtype).mul_(2).sub_(1).to(y.device)
            div += (b * (denoiser(y + eps * b) - fy)).flatten(1).sum(1) / eps
        div /= int(probes)
        return (fit - n * sigma**2 + 2 * sigma**2 * div) / n


__all__ = ["keep_observed", "sure"]
