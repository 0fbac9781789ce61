"""Sparse deviations from a starting image by proximal gradient (FISTA).

Dhar, Grover & Ermon (ICML 2018), "Modeling Sparse Deviations for Compressed Sensing using
Generative Models": the image is ``x = x0 + δ`` with ``x0`` a generator's output and ``δ``
sparse under a prior ``R`` (l1 of wavelet or DCT coefficients, or TV)::

    min_δ  ½ ||A(x0 + δ) - y||²  +  λ R(δ)

solved here by FISTA (Beck & Teboulle 2009) with gradient-based adaptive restart (O'Donoghue
& Candès 2015): a gradient step on the data term, then the prior's prox (:mod:`ilo.priors`).
The same routine is the classical TV / wavelet regularised least squares with ``x0 = 0``
(then ``δ`` is the image itself), which :mod:`ilo.solvers.classical` uses for ``tv-inpaint``,
``tv-superres``, ``tv-cs`` and ``wavelet-cs``.

Units: images in ``[-1, 1]``; the data term sums over all measurements; ``R`` sums over
pixels; so ``λ`` is in the measurements' units (e.g. about the noise std for denoising).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..operators.base import Operator
from ..priors import Prior, make_prior
from .optim import StepInfo, Timer
from .result import Result


def lipschitz(operator: Operator, like: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Per-image estimates of ``||A||²`` (the data term's gradient Lipschitz constant), ``[B]``,
    by power iteration on ``AᵀA``, every image from the same fixed-seed start (so an image's
    estimate does not depend on its batch), with a 2 % margin. ``like``: ``[B, C, H, W]``."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn((1, *like.shape[1:]), generator=g, dtype=like.dtype).to(like.device).expand_as(like)
    for _ in range(iterations):
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * (v.ndim - 1))
        v = operator.A_adjoint(operator.A(v))
    return 1.02 * v.flatten(1).norm(dim=1)


def deviate(
    y: torch.Tensor,
    operator: Operator,
    x0: torch.Tensor,
    prior: str | Prior = "tv",
    weight: float | torch.Tensor = 0.01,
    steps: int = 100,
    *,
    init: torch.Tensor | None = None,
    history: bool = True,
    callback: Callable[[StepInfo], None] | None = None,
) -> Result:
    """FISTA on ``min_δ ½||A(x0 + δ) - y||² + λ R(δ)`` (Dhar et al. 2018), per image.

    Args:
        y: observations ``[B, ...]`` of ``operator`` (a linear one).
        operator: the forward operator; its ``A`` and ``A_adjoint`` define the data term.
        x0: the starting image ``[B, C, H, W]`` in ``[-1, 1]`` (a generator's output, or zeros
            for plain regularised least squares).
        prior: ``"tv"`` (best after CSGM on most tuning cells, docs/CLASSICAL.md), ``"wavelet"``
            (db4, 3 levels), ``"dct"`` or a :class:`~ilo.priors.Prior`.
        weight: ``λ >= 0``, a number or one per image ``[B]``. The best weight depends on the
            task, the noise and ``||A||²`` (docs/CLASSICAL.md): choose it per problem.
        steps: FISTA iterations (0 returns the start).
        init: the first iterate of ``x0 + δ`` (default ``x0``, i.e. ``δ = 0``).
        history: record the objective and the measurement loss at every iteration; False
            leaves ``Result.history`` empty and skips computing them (the same image, cheaper:
            for a caller that only needs the image).
        callback: called with a :class:`StepInfo` after every iteration.

    Returns:
        a :class:`Result` with ``image = clamp(x0 + δ, -1, 1)``, ``latents = {}``, ``layer = -1``
        and one history entry per iteration (objective and measurement loss per image; none
        with ``history=False``).

    >>> from ilo.operators import Inpainting
    >>> op = Inpainting.random((1, 16, 16), observed=0.5, generator=torch.Generator().manual_seed(0))
    >>> x = torch.linspace(-1, 1, 16).expand(1, 1, 16, 16)
    >>> res = deviate(op(x), op, torch.zeros_like(x), "tv", weight=0.01, steps=50)
    >>> bool(op.measurement_loss(res.image, op(x)) < 1e-3), len(res.history)
    (True, 50)
    """
    if not operator.linear:
        raise ValueError(f"deviate needs a linear operator, got {type(operator).__name__}")
    operator.check_input(x0)
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps!r}")
    prior = make_prior(prior)
    prior.reset()
    timer = Timer()
    x0 = x0.detach()
    lam = torch.as_tensor(weight, dtype=x0.dtype, device=x0.device)
    lam = lam.expand(x0.shape[0]) if lam.ndim == 0 else lam
    if lam.shape != (x0.shape[0],) or bool((lam < 0).any()):
        raise ValueError(f"weight must be >= 0, a number or one per image [{x0.shape[0]}]")
    eta = 1.0 / lipschitz(operator, x0).clamp_min(1e-12)  # [B] step sizes
    step, prox_step = eta.view(-1, 1, 1, 1), eta * lam
    record = history or callback is not None
    with torch.no_grad():
        delta = (init.detach() - x0) if init is not None else torch.zeros_like(x0)
        z, t = delta.clone(), torch.ones(x0.shape[0], dtype=x0.dtype, device=x0.device)
        records = []
        for k in range(int(steps)):
            g = operator.A_adjoint(operator.A(x0 + z) - y)
            nxt = prior.prox(torch.addcmul(z, g, step, value=-1), prox_step)  # prox of z - eta g
            move = nxt - delta
            # restart the momentum of images whose step went against the gradient
            restart = ((z - nxt) * move).flatten(1).sum(1) > 0
            t = torch.where(restart, 1.0, t)
            t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            z = torch.addcmul(nxt, move, ((t - 1) / t_next).view(-1, 1, 1, 1))
            delta, t = nxt, t_next
            if not record:
                continue
            x = x0 + delta
            data = 0.5 * (operator.A(x) - y).flatten(1).pow(2).sum(1)
            objective = data + lam * prior.value(delta)
            meas = operator.measurement_loss(x, y)
            info = StepInfo(k, 0, -1, objective, meas, x, timer())
            if history:
                records.append(info.as_dict())
            if callback is not None:
                callback(info)
        image = (x0 + delta).clamp(-1, 1)
        meas = operator.measurement_loss(image, y)
    config = {**prior.config(), "weight": lam.tolist(), "steps": int(steps), "step_size": eta.tolist()}
    return Result(image=image, latents={}, layer=-1, measurement_loss=meas, history=records, method="deviation",
                  config=config, seconds=timer())


__all__ = ["deviate", "lipschitz"]
