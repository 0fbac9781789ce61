"""The pool of the self-tuning's candidates per image: every ILO stage, each plus a sparse deviation at every
weight and plus a classical method on its residual, the classical methods alone (the generator's
Gaussian prior first where it applies), and, for denoising, the observation itself; their names
and the stage each comes from; the observed pixels kept (:func:`paste_observed`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...operators import Inpainting, SuperResolution
from ...operators.base import Operator
from ..classical import PRIOR_METHODS, RESIDUAL_METHODS, TUNED, default_weight, direct_estimate, on_residual
from ..gaussian import GaussianPrior, posterior_mean, solves
from ..config import DeviationConfig, SelectionConfig
from ..deviation import deviate
from ..risk import keep_observed
from .heldout import HeldOut, is_box


#: ``(name, image [B, C, H, W], measurement loss [B])`` of one ILO stage
Stage = tuple[str, torch.Tensor, torch.Tensor]


def paste_observed(x: torch.Tensor, y: torch.Tensor, operator: Operator, dev: DeviationConfig | None = None
                   ) -> torch.Tensor:
    """``x`` with the observed pixels from ``y`` for noiseless inpainting (unless
    ``dev.keep_observed`` is off); ``x`` itself otherwise."""
    if (dev is None or dev.keep_observed) and isinstance(operator, Inpainting) and operator.noise.sigma == 0:
        return keep_observed(x, y, operator)
    return x


def extend(image: torch.Tensor, y: torch.Tensor, operator: Operator, dev: DeviationConfig,
           weight: float | torch.Tensor) -> torch.Tensor:
    """Range extension of ``image [B, C, H, W]``: ``image + δ`` by :func:`deviate` at ``weight``,
    the observed pixels kept for noiseless inpainting (``dev.keep_observed``)."""
    out = deviate(y, operator, image, dev.prior, weight, dev.steps, history=False).image
    return paste_observed(out, y, operator, dev)


def candidate_names(stages: Sequence[str], dev: DeviationConfig | None, identity: bool = False,
                    methods: Sequence[str] = ()) -> list[str]:
    """``stages``, then ``"<stage>+<prior>@<weight>"`` per stage and weight, then
    ``"<stage>+<method>"`` per stage and classical method (the method on the stage's residual),
    then each method alone (on ``y``), then ``"observation"``.

    >>> candidate_names(["csgm", "round1"], DeviationConfig(weights=(0.01, 0.1)), identity=True)
    ['csgm', 'round1', 'csgm+tv@0.01', 'csgm+tv@0.1', 'round1+tv@0.01', 'round1+tv@0.1', 'observation']
    >>> candidate_names(["csgm", "round1"], None, methods=["bicubic"])
    ['csgm', 'round1', 'csgm+bicubic', 'round1+bicubic', 'bicubic']
    """
    names = list(stages)
    if dev is not None:
        names += [f"{s}+{dev.prior}@{w:g}" for s in stages for w in dev.weights]
    names += [f"{s}+{m}" for s in stages for m in methods] + list(methods)
    return names + (["observation"] if identity else [])


def candidate_stages(stages: int, dev: DeviationConfig | None, identity: bool = False,
                     methods: Sequence[str] = ()) -> list[int]:
    """The stage each candidate of :func:`candidate_names` starts from (-1: none, the
    classical methods alone and the observation).

    >>> candidate_stages(2, None, identity=True, methods=["bicubic"])
    [0, 1, 0, 1, -1, -1]
    """
    S, W = range(stages), len(dev.weights) if dev is not None else 0
    return [*S, *(s for s in S for _ in range(W)), *(s for s in S for _ in methods), *([-1] * len(methods)),
            *([-1] if identity else [])]


def classical_methods(operator: Operator, config: SelectionConfig) -> tuple[str, ...]:
    """The classical methods of the candidates: ``config.classical``, or (None) next to a box
    ``config.box_classical``, otherwise (or where that is None) those of
    :data:`~ilo.solvers.classical.RESIDUAL_METHODS` for the operator's class."""
    if config.classical is not None:
        return tuple(config.classical)
    if config.box_classical is not None and is_box(operator):
        return tuple(config.box_classical)
    base = operator.base if isinstance(operator, HeldOut) else operator
    return next((m for cls, m in RESIDUAL_METHODS.items() if isinstance(base, cls)), ())


def wants_prior(operator: Operator, config: SelectionConfig) -> bool:
    """Whether the self-tuning's classical methods include the generator's Gaussian prior for
    ``operator``: one of :data:`~ilo.solvers.classical.PRIOR_METHODS` among
    :func:`classical_methods`, an operator the prior solves (:func:`~ilo.solvers.gaussian.solves`),
    and for random inpainting at most ``config.gaussian_max_observed`` of the pixels observed (a
    box, super-resolution or compressed sensing: always)."""
    if not set(PRIOR_METHODS) & set(classical_methods(operator, config)) or not solves(operator):
        return False
    if isinstance(operator, Inpainting) and not is_box(operator):
        return (operator.level or 1.0) <= config.gaussian_max_observed
    return True


def _low_res_fill(r: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Low-resolution residuals ``r [B, C, h, w]`` with the entries outside ``keep`` filled
    by biharmonic interpolation of the kept ones (scikit-image)."""
    from skimage.restoration import inpaint_biharmonic

    out = []
    for im, k in zip(r.detach().cpu().double(), keep.expand_as(r).cpu()):
        missing = (k[0] == 0).numpy()
        a = im.permute(1, 2, 0).numpy()
        out.append(torch.from_numpy(inpaint_biharmonic(a, missing, channel_axis=-1) if missing.any() else a))
    return torch.stack(out).permute(0, 3, 1, 2).to(r)


def residual_candidates(bases: torch.Tensor, y: torch.Tensor, operator: Operator,
                        methods: Sequence[str], prior: GaussianPrior | None = None) -> torch.Tensor:
    """``base + C(y - A(base))`` for every base image ``bases [S, B, C, H, W]`` and classical
    method (:func:`~ilo.solvers.classical.on_residual`): ``[S * M, B, C, H, W]``, base-major.
    For :class:`HeldOut` measurements the method's weight is the base operator's and the
    held-out residuals are zeros (compressed sensing) or interpolated (super-resolution).
    ``"gaussian"`` (inpainting, super-resolution): the ``prior``'s posterior mean centred at the
    base (:func:`~ilo.solvers.gaussian.posterior_mean`), at the prior's own mean for a zero base
    (the method alone)."""
    S, B = bases.shape[:2]
    if not methods:
        return bases[:0]
    rows = bases.transpose(0, 1).reshape(B * S, *bases.shape[2:])  # image-major, as batch_repeat
    op, yr = operator.batch_repeat(S), y.repeat_interleave(S, 0)
    level = operator.base.batch_repeat(S) if isinstance(operator, HeldOut) else op
    outs = []
    for m in methods:
        if m in PRIOR_METHODS:
            if prior is None:
                raise ValueError("the gaussian candidates need the generator's GaussianPrior (prior=)")
            centred = rows.flatten(1).abs().amax(1) > 0  # [B * S]; a zero base: the prior's own mean
            base = torch.where(centred[:, None, None, None], rows, prior.mean.view(1, *prior.shape).to(rows))
            out = posterior_mean(yr, op, prior, base=base, remainder=PRIOR_METHODS[m])
            outs.append(out.view(B, S, *bases.shape[2:]).transpose(0, 1))
            continue
        weight = default_weight(m, level, B * S) if m in TUNED else None
        estimate = None
        if isinstance(op, HeldOut):
            r = op.keep * (yr - op.base.A(rows))
            if isinstance(op.base, SuperResolution):
                r = _low_res_fill(r, op.keep)
            estimate = direct_estimate(r, op.base)
        out = on_residual(yr, op, m, rows, weight=weight, estimate=estimate)
        outs.append(out.view(B, S, *bases.shape[2:]).transpose(0, 1))  # [S, B, ...]
    return torch.stack(outs, 1).reshape(S * len(methods), B, *bases.shape[2:])  # base-major, method-minor


def candidates(stages: torch.Tensor, y: torch.Tensor, operator: Operator, dev: DeviationConfig | None,
               identity: bool = False, methods: Sequence[str] = (), only: torch.Tensor | None = None,
               prior: GaussianPrior | None = None) -> torch.Tensor:
    """Every candidate of :func:`candidate_names`: ``[K, B, C, H, W]`` from stage images
    ``[S, B, C, H, W]`` and observations ``y [B, ...]``; the deviations run as one batch of
    ``B * S * W`` rows with one weight each, the classical ``methods`` on the residual of each
    stage and of zero (:func:`residual_candidates`); ``identity``: the observation, for denoising.
    The observed pixels are not pasted (:func:`paste_observed` does that to the choice; it
    does not change a held-out validation error). ``only [B]``: image ``b``'s deviations and
    residuals are computed for stage ``only[b]`` alone, the other stages' are NaN images.
    ``prior``: the generator's Gaussian prior, for the ``"gaussian"`` method."""
    S, B = stages.shape[:2]
    if only is not None:
        return _only_stage(stages, y, operator, dev, identity, methods, only, prior)
    parts = [stages]
    if dev is not None:
        W = len(dev.weights)
        x0 = stages.transpose(0, 1).unsqueeze(2).expand(B, S, W, *stages.shape[2:]).reshape(B * S * W, *stages.shape[2:])
        lam = torch.tensor(dev.weights, dtype=stages.dtype, device=stages.device).repeat(B * S)
        out = deviate(y.repeat_interleave(S * W, 0), operator.batch_repeat(S * W), x0, dev.prior, lam, dev.steps, history=False).image
        parts.append(out.view(B, S * W, *stages.shape[2:]).transpose(0, 1))
    parts.append(residual_candidates(torch.cat([stages, torch.zeros_like(stages[:1])]), y, operator, methods, prior))
    if identity:
        parts.append(y.unsqueeze(0))
    return torch.cat(parts)


def _only_stage(stages: torch.Tensor, y: torch.Tensor, operator: Operator, dev: DeviationConfig | None,
                identity: bool, methods: Sequence[str], only: torch.Tensor, prior: GaussianPrior | None = None
                ) -> torch.Tensor:
    """:func:`candidates` with the deviations and residuals of stage ``only[b]`` of image ``b``
    alone (one stage per image, so ``1 / S`` of the work); the rest of their rows are NaN."""
    S, B = stages.shape[:2]
    W, M = (len(dev.weights) if dev is not None else 0), len(methods)
    rows = torch.arange(B, device=stages.device)
    part = candidates(stages[only, rows].unsqueeze(0), y, operator, dev, False, methods, prior=prior)  # [1 + W + 2M, B]
    full = stages.new_full((S + S * W + (S + 1) * M + int(identity), B, *stages.shape[2:]), float("nan"))
    full[:S] = stages
    for b, s in enumerate(only.tolist()):
        full[S + s * W:S + (s + 1) * W, b] = part[1:1 + W, b]
        full[S + S * W + s * M:S + S * W + (s + 1) * M, b] = part[1 + W:1 + W + M, b]
    full[S + S * W + S * M:S + S * W + (S + 1) * M] = part[1 + W + M:]
    if identity:
        full[-1] = y
    return full


def row_candidates(stages: torch.Tensor, v: torch.Tensor, operator: Operator, dev: DeviationConfig | None,
             methods: Sequence[str] = ()) -> torch.Tensor:
    """The candidates of one image as a function of its observation, one per row: row ``k`` of
    ``v [K, C, H, W]`` (copies of one noisy image, perturbed apart by SURE's probes) gives
    candidate ``k``; ``stages [S, C, H, W]`` are held fixed. For operators without per-image parts."""
    S = stages.shape[0]
    parts = [stages]
    if dev is not None:
        W = len(dev.weights)
        x0 = stages.repeat_interleave(W, 0)
        lam = torch.tensor(dev.weights, dtype=v.dtype, device=v.device).repeat(S)
        parts.append(deviate(v[S:S + S * W], operator, x0, dev.prior, lam, dev.steps, history=False).image)
    if methods:
        bases = torch.cat([stages, torch.zeros_like(stages[:1])]).repeat_interleave(len(methods), 0)
        start = sum(p.shape[0] for p in parts)
        v_m = v[start:start + len(bases)]
        parts += [on_residual(v_m[k:k + 1], operator, m, bases[k:k + 1])
                  for k, m in enumerate(list(methods) * (S + 1))]
    return torch.cat(parts + [v[len(v) - 1:]])


def mean_candidate(cands: torch.Tensor, alone: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
    """The equal mean of the classical methods alone and one stage's image per image:
    ``[1, B, ...]`` from ``cands [K, B, ...]`` (the stages' images first, :func:`candidate_names`),
    ``alone [K]`` bool (the classical methods alone) and ``stage [B]`` (e.g. ILO's own output,
    the best-fitting stage). Next to a box-shaped hole the methods' errors in the hole are far
    apart and partly independent, so their mean is often better than the best of them.

    >>> c = torch.tensor([[1.0], [3.0], [5.0], [7.0]]).view(4, 1, 1)  # two stages, two methods alone
    >>> mean_candidate(c, torch.tensor([False, False, True, True]), torch.tensor([1])).flatten().tolist()
    [5.0]
    """
    rows = torch.arange(cands.shape[1], device=cands.device)
    return ((cands[alone].sum(0) + cands[stage, rows]) / (int(alone.sum()) + 1))[None]
