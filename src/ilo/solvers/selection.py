"""ILO's last stages: range extension to the pixels and self-tuning per image, without the truth.

Candidates (per image): every stage solution of ILO (CSGM's, then each round's best iterate),
each of them plus a sparse deviation (:func:`~ilo.solvers.deviation.deviate`) at every weight
of a log grid (one batch, one weight per row), each of them plus a classical method applied to
its residual observation ``y - A(stage)`` (:func:`~ilo.solvers.classical.on_residual`), the
classical methods alone (``C(y)``), and, for denoising, the noisy observation itself. For inpainting
(sparse random masks and boxes) and super-resolution the generator's Gaussian prior
(:mod:`~ilo.solvers.gaussian`, where ``ilo`` passes it, :func:`wants_prior`) is the first of
these "classical" methods: its posterior mean alone and centred at each stage. Which
stages the choice may start from is ``SelectionConfig.stage`` (by default: any, next to a box;
the refit's best-fitting one for other held-out parts; none, i.e. the classical methods alone
or the observation, under SURE). The choice per image:

* **held-out measurements** (inpainting, super-resolution, compressed sensing): the observed
  entries are split into a fit and a validation part (:func:`split`; the split of image ``i``
  comes from the stream ``(seeds[i], "holdout")`` of :mod:`ilo.rng`), ILO runs on the fit part,
  every candidate is scored by its error on the validation part, and ILO's rounds are run again
  on all measurements (both runs as one batch of 2B rows, :func:`fit_and_refit`); the candidate
  of the chosen stage and weight is returned. By default (``SelectionConfig.csgm == "method"``)
  the CSGM stage is the CSGM method at its own preset and ILO's whole budget, run once on the
  fit part; both runs' rounds start from it and its solution is the ``"csgm"`` candidate
  (recorded as ``csgm_candidate``), which every stage rule lets the choice take; where it is
  chosen, CSGM continues from it on all measurements (``SelectionConfig.csgm_refit``, half of its
  steps, one restart; ``csgm_refit`` in the record says where that replaced it). The rounds
  double the generator rows; ``Result.history`` holds the CSGM stage's steps, then the refit's
  (the fit run's step count is recorded as ``fit_run_steps``), and ``Result.seconds`` is the
  wall time of the whole self-tuning, candidates included. The held-out part resembles what
  is missing: patches next to a box-shaped hole, random pixels for a random mask, random
  low-resolution pixels (all channels) for super-resolution, random measurements for
  compressed sensing (next to a box, ``SelectionConfig.ring`` holds out the whole ring of that
  width around it instead, :func:`ring`). The estimate is noisy where few entries are held out, so the choice
  counts its noise (``SelectionConfig.z``): the reference is the classical method alone with
  the lowest estimate (or the first, ``SelectionConfig.reference``; by default the first on
  images with fewer than ``SelectionConfig.sparse_units`` held-out units, :func:`first_reference`;
  next to a box the first of ``SelectionConfig.box_classical``, harmonic inpainting, with the
  margin ``SelectionConfig.box_z`` and no blends, ``box_blend``; or, ``reference="mean"``, a
  candidate of its own: the mean of the classical methods alone and ILO's own output,
  :func:`mean_candidate`), every candidate scores
  its estimate plus ``z`` standard errors of its paired difference to the reference over the
  held-out units (:func:`held_out_units`: pixels, measurements, or whole patches next to a
  box, whose pixels are correlated; :func:`paired_se`), and the lowest score is chosen (:func:`choose`); the record holds the
  ``reference``, ``estimated_se`` per candidate, ``units`` and ``z``. With
  ``SelectionConfig.blend`` (weights ``a``, by default 1/4, 1/2, 3/4) the choice
  also runs over convex blends ``a * first + (1 - a) * second`` of two candidates per image
  (``SelectionConfig.blend_pairs``; by default the best-scoring candidate other than the
  reference with the reference, and the two classical methods alone with the lowest
  estimates; :func:`blend_pairs`): each is scored on the held-out part like
  the others from the fit part's candidates (:func:`with_blends`) and built from the refit
  candidates (named ``"blend@<a>"``, ``"blend-<pair>@<a>"``; the record's ``blend`` says per
  image what each was made of). A blend replaces the choice among the other candidates only
  where its estimate plus ``z`` standard errors of their paired difference lies below that
  choice's estimate (:func:`challenge`; ``SelectionConfig.blend_against``). A chosen blend of
  the CSGM candidate refits that candidate first (:func:`made_of`). Under
  ``SelectionConfig.csgm == "challenge"`` (super-resolution) both runs keep ILO's own CSGM stage
  and the CSGM method, run once, challenges the final choice the same way (the candidate
  ``"csgm-method"``, margin ``csgm_z``, only on images with at least ``csgm_min_units``
  held-out units; not run where no image has them; ``csgm_challenger`` in the record). By
  default (``csgm_basin == "all"``) it runs on all measurements, so its solution is the CSGM
  method's own, and is scored by the held-out error of its continuation on the fit part
  (``csgm_probe`` of its steps, :func:`_run_challenger`); where taken CSGM continues from it on
  all measurements (``csgm_continue``). Under ``"fit"`` it runs on the fit part and is refit on
  all measurements where taken (``csgm_refit``). Under ``"method"`` with
  ``SelectionConfig.method_challenger`` (the default; random inpainting, CS) the CSGM method also
  runs on all measurements, in one batch with the shared stage on the fit part (:func:`paired`,
  :func:`result_rows`), and challenges the choice as under ``"challenge"`` with ``csgm_basin ==
  "all"``, at its own margin ``method_challenger_z`` (on images with fewer than ``method_challenger_units`` held-out units only where its
  estimate is below the choice's over ``method_challenger_ratio``): the fit part's run can land
  in a worse basin than the CSGM method on all measurements.
* **SURE** (denoising with known sigma; Ramani, Blu & Unser 2008): the Monte-Carlo estimate
  of each candidate's MSE (:func:`~ilo.solvers.risk.sure`), the stage images held fixed (their
  own dependence on the noise is not differentiated, which makes their estimates optimistic).
  The observation scores exactly ``sigma²``, so the choice never has a higher estimated risk
  than the input. The CSGM stage (run on ``y``) is held fixed too, with the divergence of a fit
  of its latent dimension added (:func:`csgm_sure_correction`). Under the default stage rule
  (``"classical"``: the CSGM stage's own solution, the classical methods alone and the
  observation) with the CSGM method as the stage, ILO's rounds are not run and only those
  candidates are built and estimated (the same choice, bit for bit; ``rounds_run`` in the
  record; ``SelectionConfig.every_candidate`` computes them all).

For noiseless inpainting every candidate keeps the observed pixels (:func:`keep_observed`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..operators import Denoising, Inpainting, SuperResolution
from ..operators.base import Operator
from ..rng import stream
from .classical import PRIOR_METHODS, RESIDUAL_METHODS, TUNED, default_weight, direct_estimate, on_residual
from .gaussian import GaussianPrior, posterior_mean, solves
from .config import CSGMConfig, DeviationConfig, ILOConfig, SelectionConfig
from .deviation import deviate
from .result import Result
from .risk import keep_observed, sure

#: ``(name, image [B, C, H, W], measurement loss [B])`` of one ILO stage
Stage = tuple[str, torch.Tensor, torch.Tensor]


class HeldOut(Operator):
    """The measurements of ``base`` where ``keep`` is 1: ``A(x) = keep * base.A(x)``, the
    measurement loss the mean over the kept entries only. ``keep``: ``[1 or B, *output_shape]``
    of zeros and ones. The perceptual pair compares against the observation with the other
    entries taken from the candidate, so nothing outside ``keep`` is read from ``y``.
    """

    per_sample_buffers = ("keep",)
    keep: torch.Tensor  # buffer [1 or B, *output_shape]
    base: Operator

    def __init__(self, base: Operator, keep: torch.Tensor):
        super().__init__(base.input_shape, base.noise)
        self.base = base
        self.register_buffer("keep", keep.to(torch.get_default_dtype()))
        self.output_shape = base.output_shape
        self.linear, self.noisy = base.linear, base.noisy
        self.perceptual_target = "candidate" if base.perceptual_target is not None else None

    @property
    def level(self) -> float | None:
        return self.base.level

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep.to(x.dtype) * self.base.A(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.A_adjoint(self.keep.to(y.dtype) * y)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.A(x) - self.keep.to(y.dtype) * y
        count = self.keep.expand_as(r).flatten(1).sum(1).clamp_min(1)
        return r.flatten(1).pow(2).sum(1) / count

    def perceptual_pair(self, x, y):
        k = self.keep.to(x.dtype)
        return self.base.perceptual_pair(x, k * y + (1 - k) * self.base.A(x).detach())

    def describe(self) -> str:
        return f"{self.base.describe()}, a subset of the measurements"

    def batch_repeat(self, r: int) -> HeldOut:
        new = copy.copy(self)
        new._modules = {**self._modules, "base": self.base.batch_repeat(r)}
        new._buffers = dict(self._buffers)
        if self.keep.shape[0] > 1:
            new._buffers["keep"] = self.keep.repeat_interleave(r, 0)
        return new


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


def is_box(operator: Operator) -> bool:
    """Whether ``operator`` hides a box-shaped hole (:meth:`Inpainting.box`)."""
    return isinstance(operator, Inpainting) and operator.config()["mask"].get("kind") == "box"


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
    ``operator``: ``"gaussian"`` among :func:`classical_methods`, an operator the prior solves
    (:func:`~ilo.solvers.gaussian.solves`), and for random inpainting at most
    ``config.gaussian_max_observed`` of the pixels observed (a box or super-resolution: always)."""
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


def _rowwise(stages: torch.Tensor, v: torch.Tensor, operator: Operator, dev: DeviationConfig | None,
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


def split(operator: Operator, y: torch.Tensor, seeds: Sequence[int], config: SelectionConfig
          ) -> tuple[Operator, torch.Tensor, Operator, dict]:
    """Fit and validation parts of the observed entries: ``(fit operator, y restricted to it,
    validation operator, record)``; image ``i``'s split from the stream ``(seeds[i], "holdout")``."""
    gens = [stream(s, "holdout") for s in seeds]
    B = y.shape[0]
    if isinstance(operator, Inpainting):
        mask = operator.mask.expand(B, -1, -1, -1)
        if is_box(operator) and config.ring:
            held, kind = ring(mask, config.ring), "patches of the ring around the hole"
        elif is_box(operator):
            held, kind = _band_patches(mask, config.patch, gens), "patches next to the hole"
        else:
            u = torch.stack([torch.rand(mask.shape[1:], generator=g) for g in gens]).to(mask)
            held, kind = mask * (u < config.holdout).to(mask), "random observed pixels"
        held = _nonempty(held, mask)
        fit: Operator = Inpainting(operator.input_shape, mask - held, operator.noise)
        val: Operator = Inpainting(operator.input_shape, held, operator.noise)
        keep = mask - held
    else:
        shape = (1, *y.shape[2:]) if y.ndim == 4 else tuple(y.shape[1:])  # pixels: all channels together
        u = torch.stack([torch.rand(shape, generator=g) for g in gens]).to(y)
        keep = (u >= config.holdout).to(y).expand_as(y).contiguous()
        held = _nonempty(1 - keep, torch.ones_like(keep))
        keep = 1 - held
        fit, val = HeldOut(operator, keep), HeldOut(operator, held)
        kind = "random measurements" if y.ndim != 4 else "random low-resolution pixels"
    record = {"rule": "holdout", "kind": kind, "fraction": config.holdout, "seeds": [int(s) for s in seeds],
              "stream": "holdout", "held_out": held.flatten(1).sum(1).tolist()}
    return fit, keep * y, val, record


def _band_patches(mask: torch.Tensor, p: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Half of the ``p x p`` patches (drawn per image) of the observed band of width ``p``
    around the missing pixels: ``[B, 1, H, W]``."""
    H, W = mask.shape[-2:]
    band = F.max_pool2d(1 - mask, 2 * p + 1, stride=1, padding=p) * mask
    blocks = F.max_pool2d(band, p, stride=p, ceil_mode=True)
    pick = torch.stack([torch.rand(blocks.shape[1:], generator=g) for g in gens]).to(mask) < 0.5
    up = (blocks * pick).repeat_interleave(p, -2).repeat_interleave(p, -1)[..., :H, :W]
    return (up > 0).to(mask) * band


def ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Every observed pixel within ``width`` pixels (horizontally, vertically or diagonally) of
    a missing one: ``[B, 1, H, W]`` for a mask ``[B, 1, H, W]``. Held out whole, it enlarges a
    box-shaped hole by ``width`` on every side, so the candidates fitted on the rest must fill
    a bigger box and are scored where filling is as hard as in the hole.

    >>> m = torch.ones(1, 1, 5, 5); m[..., 2, 2] = 0
    >>> ring(m, 1)[0, 0].tolist()[1:4]
    [[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0]]
    """
    return F.max_pool2d(1 - mask, 2 * width + 1, stride=1, padding=width) * mask


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


def first_reference(reference: str, errors: torch.Tensor, sparse_units: int) -> torch.Tensor:
    """``[B]`` bool: where the margin's reference is the first classical method instead of the
    one with the lowest held-out estimate: every image under ``reference == "first"``, under
    ``"auto"`` (away from a box) the images with fewer than ``sparse_units`` held-out units,
    none otherwise. ``errors [B, U]``: one candidate's per-unit errors (:func:`unit_errors`; NaN:
    nothing held out in that unit). With few units the lowest estimate is noise: at 5 % random
    inpainting it picked TV inpainting, 2.5 dB below biharmonic on average, on faces where
    biharmonic was better (docs/BENCHMARKS.md, "Sparse random inpainting's reference").

    >>> e = torch.tensor([[1.0, 2.0, float("nan")], [1.0, 2.0, 3.0]])  # 2 and 3 units
    >>> first_reference("auto", e, 3).tolist(), first_reference("first", e, 3).tolist()
    ([True, False], [True, True])
    """
    if reference == "first":
        return torch.ones(errors.shape[0], dtype=torch.bool, device=errors.device)
    if reference == "auto":
        return (~errors.isnan()).sum(1) < sparse_units
    return torch.zeros(errors.shape[0], dtype=torch.bool, device=errors.device)


def held_out_units(y: torch.Tensor, patch: int | None = None) -> torch.Tensor:
    """The unit of every entry of an observation ``y [B, *output_shape]`` for the standard
    error of a held-out estimate: ``[*output_shape]`` integer labels. Image-shaped outputs:
    one unit per pixel (its channels together), or with ``patch`` one per ``patch x patch``
    block (the held-out patches next to a box, whose pixels are correlated); other outputs:
    one unit per measurement.

    >>> held_out_units(torch.zeros(1, 3, 2, 4), patch=2).tolist()[0]
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if y.ndim != 4:
        return torch.arange(y[0].numel(), device=y.device).view(y.shape[1:])
    H, W = y.shape[-2:]
    i, j = torch.arange(H, device=y.device)[:, None], torch.arange(W, device=y.device)[None, :]
    label = (i // patch) * -(-W // patch) + j // patch if patch else i * W + j
    return label.expand(y.shape[1:])


def unit_errors(val: Operator, cands: torch.Tensor, y: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Per-unit held-out squared errors of ``cands [K, B, C, H, W]`` on the validation part
    ``val`` (a :class:`HeldOut` or an :class:`~ilo.operators.Inpainting` mask) of ``y``, units
    from :func:`held_out_units`: ``[K, B, U]``, each unit's summed squared residual scaled so
    that an image's mean over its held-out units is its held-out estimate
    (``val.measurement_loss``); NaN for units with nothing held out."""
    mask = val.keep if isinstance(val, HeldOut) else val.get_buffer("mask")
    held = mask.to(y).expand_as(y).flatten(1)  # [B, N]
    idx = units.expand_as(y).flatten(1)
    B, U = y.shape[0], int(units.max()) + 1
    count = y.new_zeros(B, U).scatter_add_(1, idx, held)
    present = count > 0
    scale = present.sum(1, keepdim=True) / count.sum(1, keepdim=True)  # [B, 1]
    sums = torch.stack([y.new_zeros(B, U).scatter_add_(1, idx, (val.A(c) - held.view_as(y) * y).pow(2).flatten(1))
                        for c in cands])
    return (sums * scale).masked_fill(~present, float("nan"))


def paired_se(units: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Standard error of every candidate's held-out estimate minus the reference's:
    ``std(d) / sqrt(n)`` over an image's ``n`` held-out units of the paired differences
    ``d = units[k] - units[ref]``. ``units [K, B, U]`` (:func:`unit_errors`), ``ref [B]``:
    ``[K, B]``; 0 for the reference itself, infinite where ``n < 2`` and ``d`` is not zero
    (one unit has no spread to judge a difference by, so the candidate never beats the
    reference by a margin).

    >>> u = torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]])  # two candidates, one image, two units
    >>> paired_se(u, torch.tensor([1])).tolist()
    [[1.0], [0.0]]
    """
    base = units[ref, torch.arange(units.shape[1])]  # [B, U]
    present = ~base.isnan()
    n = present.sum(1).clamp_min(1)
    d = torch.where(present, units - base, torch.zeros_like(units))
    dev = torch.where(present, d - d.sum(2, keepdim=True) / n[:, None], torch.zeros_like(d))
    se = (dev.pow(2).sum(2) / (n - 1).clamp_min(1) / n).sqrt()
    return se.masked_fill((n < 2) & (d.abs().sum(2) > 0), float("inf"))


def choose(est: torch.Tensor, eligible: torch.Tensor | None = None, se: torch.Tensor | None = None,
           z: float = 0.0) -> torch.Tensor:
    """Per image the eligible candidate with the lowest score ``est + z * se`` (``est`` alone
    where ``z`` is 0 or ``se`` is None; NaN scores never chosen). ``est``, ``se``,
    ``eligible`` (bool, None: all): ``[K, B]``; returns ``[B]``.

    >>> est, se = torch.tensor([[1.0], [0.8]]), torch.tensor([[0.0], [0.3]])
    >>> choose(est).tolist(), choose(est, se=se, z=1.0).tolist()
    ([1], [0])
    """
    return scores(est, eligible, se, z).argmin(0)


def scores(est: torch.Tensor, eligible: torch.Tensor | None = None, se: torch.Tensor | None = None,
           z: float = 0.0) -> torch.Tensor:
    """The scores :func:`choose` minimises: ``est + z * se``, infinite where NaN or not
    ``eligible``. ``[K, B]``."""
    score = est + z * se if se is not None and z else est
    score = torch.nan_to_num(score, nan=float("inf"))
    return score.masked_fill(~eligible, float("inf")) if eligible is not None else score


def blend_pairs(score: torch.Tensor, est: torch.Tensor, alone: torch.Tensor, ref: torch.Tensor | None,
                pairs: Sequence[str]) -> torch.Tensor:
    """Per image the two candidates of every blend pair (:attr:`~ilo.solvers.config.SelectionConfig.blend_pairs`):
    ``[P, 2, B]`` indices, the first weighted ``a``, the second ``1 - a``. ``score``
    (:func:`scores`), ``est``: ``[K, B]``; ``alone [K]`` bool: the classical methods alone;
    ``ref [B]``: the margin's reference (``"reference"`` needs it, ``"classical"`` two
    classical methods: :func:`usable_pairs`). Where an image has no second candidate with a
    finite score the pair is the first twice (the reference alone, for ``"reference"``), so
    the blend is that candidate itself.

    >>> score = torch.tensor([[0.5], [0.9], [1.0], [0.7]])  # csgm, round1, biharmonic (ref), tv-inpaint
    >>> alone = torch.tensor([False, False, True, True])
    >>> blend_pairs(score, score, alone, torch.tensor([2]), ["reference", "classical", "top"])[:, :, 0].tolist()
    [[0, 2], [2, 3], [0, 3]]
    """
    inf = float("inf")
    out = []
    for kind in pairs:
        if kind == "reference":
            if ref is None:
                raise ValueError("a blend with the reference needs a classical method")
            others = score.scatter(0, ref[None], inf)  # every candidate but the reference
            first = torch.where(others.min(0).values < inf, others.argmin(0), ref)
            out.append(torch.stack([first, ref]))
            continue
        s = torch.nan_to_num(est, nan=inf).masked_fill(~alone[:, None], inf) if kind == "classical" else score
        top = s.topk(2, 0, largest=False)  # the lowest two, lowest first
        second = torch.where(top.values[1] < inf, top.indices[1], top.indices[0])
        out.append(torch.stack([second, top.indices[0]] if kind == "classical" else [top.indices[0], second]))
    return torch.stack(out)


def usable_pairs(pairs: Sequence[str], methods: int) -> tuple[str, ...]:
    """The blend pairs that exist with ``methods`` classical methods: ``"reference"`` needs
    one, ``"classical"`` two.

    >>> usable_pairs(["reference", "classical", "top"], 1)
    ('reference', 'top')
    """
    return tuple(p for p in pairs if methods >= {"reference": 1, "classical": 2}.get(p, 0))


def blend_names(pairs: Sequence[str], weights: Sequence[float]) -> list[str]:
    """The names of the blends of :func:`blend`, pair-major: ``"blend@<a>"`` for the
    ``"reference"`` pair, ``"blend-<pair>@<a>"`` for the others.

    >>> blend_names(["reference", "top"], [0.25, 0.5])
    ['blend@0.25', 'blend@0.5', 'blend-top@0.25', 'blend-top@0.5']
    """
    return [f"blend{'' if p == 'reference' else '-' + p}@{a:g}" for p in pairs for a in weights]


def blend(cands: torch.Tensor, pairs: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Convex blends ``a * cands[first] + (1 - a) * cands[second]`` per image, for every pair of
    ``pairs [P, 2, B]`` (:func:`blend_pairs`) and weight ``a``: ``[P * A, B, C, H, W]`` from
    ``cands [K, B, C, H, W]``, pair-major; where ``first == second``, that candidate exactly.

    >>> c = torch.tensor([[[0.0]], [[4.0]]])  # two candidates, one image, one value
    >>> blend(c, torch.tensor([[[1], [0]]]), [0.25, 0.5]).flatten().tolist()
    [1.0, 2.0]
    """
    rows = torch.arange(cands.shape[1], device=cands.device)
    out = []
    for first, second in pairs:
        a_img, b_img = cands[first, rows], cands[second, rows]
        same = (first == second).view(-1, *[1] * (cands.ndim - 2))
        out += [torch.where(same, a_img, a * a_img + (1 - a) * b_img) for a in weights]
    return torch.stack(out) if out else cands[:0]


def _nonempty(held: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``held`` with at least one entry per image, and at least one observed entry left out of it."""
    held = held.clone()
    for i in range(held.shape[0]):
        obs = observed[i].flatten().nonzero().flatten()
        h = held[i].view(-1)
        if h.sum() == 0:
            h[obs[0]] = 1
        if (observed[i].flatten() - h).sum() == 0:
            h[obs[-1]] = 0
    return held


def copy_rows(t: torch.Tensor, images: int, copies: int, k: int) -> torch.Tensor:
    """Copy ``k`` of every image from ``t [images * copies * n, ...]``, whose rows hold image 0's
    copies first (``n`` rows each, e.g. restarts), then image 1's: ``[images * n, ...]``.

    >>> copy_rows(torch.arange(12), images=2, copies=3, k=1).tolist()
    [2, 3, 8, 9]
    """
    return t.unflatten(0, (images, copies, -1))[:, k].flatten(0, 1)


def fit_and_refit(run: Callable[..., tuple[Result, list[Stage]]], y_fit: torch.Tensor, fit: Operator,
                  y: torch.Tensor, operator: Operator, start: Result | None = None
                  ) -> tuple[tuple[Result, list[Stage]], tuple[Result, list[Stage]]]:
    """Self-tuning's two ILO runs, on the fit part (``fit``, ``y_fit``) and on all measurements,
    as one batch of ``2B`` (image ``i``'s fit at row ``2i``, its refit at ``2i + 1``, both from
    its seed): ``((result, stages) of the fit, (result, stages) of the refit)``, each as the
    run alone would give it up to float rounding; both results hold the shared wall time.
    ``fit``: a :class:`HeldOut` part of ``operator``, or an operator of its class that differs
    in its per-sample buffers only (e.g. an inpainting mask). ``start``: a CSGM result (``B``
    rows) both runs start from instead of their own CSGM stage."""
    B = y.shape[0]
    res, stages = run(*paired(y_fit, fit, y, operator), 2, start)

    def part(k: int) -> tuple[Result, list[Stage]]:
        rows = lambda t: copy_rows(t, B, 2, k)
        return result_rows(res, B, 2, k), [(name, rows(img), rows(loss)) for name, img, loss in stages]

    return part(0), part(1)


def paired(y_fit: torch.Tensor, fit: Operator, y: torch.Tensor, operator: Operator) -> tuple[torch.Tensor, Operator]:
    """The fit part's problem (``y_fit``, ``fit``) and the whole one (``y [B, ...]``, ``operator``)
    as one batch of ``2B``: image ``i``'s fit part at row ``2i``, all its measurements at ``2i + 1``.
    ``fit``: a :class:`HeldOut` part of ``operator``, or an operator of its class that differs in
    its per-sample buffers only (e.g. an inpainting mask)."""
    B = y.shape[0]
    pair = lambda a, b: torch.stack([a.expand(B, *a.shape[1:]), b.expand(B, *b.shape[1:])], 1).flatten(0, 1)
    if isinstance(fit, HeldOut):
        both: Operator = HeldOut(fit.base.batch_repeat(2), pair(fit.keep, torch.ones_like(fit.keep[:1])))
    else:
        assert type(fit) is type(operator), "fit must be a HeldOut or an operator of the same class"
        both = operator.with_buffers(**{n: pair(fit.get_buffer(n), operator.get_buffer(n)) for n in operator.per_sample_buffers})
    return pair(y_fit, y), both


def result_rows(res: Result, images: int, copies: int, k: int) -> Result:
    """Copy ``k`` of every image of ``res`` (a run with ``copies`` rows per image, as
    :func:`paired` lays them out): its image, latents, losses and history."""
    rows = lambda t: copy_rows(t, images, copies, k)
    history = [{key: v[k::copies] if isinstance(v, list) else v for key, v in h.items()} for h in res.history]
    return replace(res, image=rows(res.image), latents={n: rows(v) for n, v in res.latents.items()},
                   measurement_loss=rows(res.measurement_loss), history=history)


def csgm_sure_correction(sigma: float, dof: int, n: int) -> float:
    """SURE's divergence term for a CSGM solution held fixed: ``2 sigma² dof / n`` for ``dof``
    latent entries optimised per image and ``n`` entries per observation. A least-squares fit
    onto a ``dof``-dimensional smooth manifold has divergence ``dof`` (the trace of the
    projection onto its tangent space), so its SURE is its residual ``- sigma² + 2 sigma² dof / n``.

    >>> csgm_sure_correction(0.1, 100, 1000)
    0.002
    """
    return round(2 * sigma**2 * dof / n, 12)


def with_blends(cands_fit: torch.Tensor, val: Operator, y: torch.Tensor, units: torch.Tensor | None,
                est: torch.Tensor, se: torch.Tensor | None, eligible: torch.Tensor | None,
                errors: torch.Tensor | None, ref: torch.Tensor | None, alone: torch.Tensor, config: SelectionConfig,
                kinds: Sequence[str], against: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The held-out choice's candidates with their convex blends (``config.blend`` weights,
    pairs ``kinds``, :func:`usable_pairs` of ``config.blend_pairs``): ``(pairs [P, 2, B], est,
    se, eligible)``, the last three with the ``P * A`` blends' rows appended (:func:`blend_names`
    order). The pairs come from the scores :func:`choose` uses (``est + z * se``); each blend of
    the fit part's candidates
    ``cands_fit [K, B, ...]`` is scored like them: its held-out estimate on ``val`` and, where
    there are per-unit errors ``errors [K, B, U]`` (:func:`unit_errors` over ``units``), the
    standard error of its paired difference to ``against [B]`` (the choice among the other
    candidates, :func:`challenge`) or, None, to the reference ``ref [B]``. A blend is
    eligible (its two candidates are). ``alone [K]`` bool: the classical methods alone."""
    pairs = blend_pairs(scores(est, eligible, se, config.z), est, alone, ref, kinds)
    fit_blends = blend(cands_fit, pairs, config.blend)  # [P * A, B, ...]
    est = torch.cat([est, torch.stack([val.measurement_loss(c, y) for c in fit_blends])])
    base = against if against is not None else ref
    if errors is not None and base is not None and units is not None and se is not None:
        rows = torch.arange(y.shape[0], device=y.device)
        paired = torch.cat([errors[base, rows][None], unit_errors(val, fit_blends, y, units)])  # base's errors, then the blends'
        se = torch.cat([se, paired_se(paired, torch.zeros_like(base))[1:]])
    if eligible is not None:
        eligible = torch.cat([eligible, eligible.new_ones(len(fit_blends), y.shape[0])])
    return pairs, est, se, eligible


def challenge(est: torch.Tensor, se: torch.Tensor | None, eligible: torch.Tensor | None, base: torch.Tensor,
              K: int, z: float) -> torch.Tensor:
    """The choice ``base [B]`` among the first ``K`` candidates unless a blend (rows ``K`` on of
    ``est``, ``se``, ``eligible [K + P * A, B]``) scores below ``base``'s estimate: the blend
    with the lowest estimate plus ``z`` standard errors of its paired difference to ``base``
    (:func:`with_blends` with ``against=base``). ``[B]``.

    >>> est = torch.tensor([[1.0, 1.0], [0.9, 0.8]]); se = torch.tensor([[0.0, 0.0], [0.2, 0.1]])
    >>> challenge(est, se, None, torch.tensor([0, 0]), 1, 1.0).tolist()
    [0, 1]
    """
    rows = torch.arange(est.shape[1], device=est.device)
    s = scores(est[K:], None if eligible is None else eligible[K:], None if se is None else se[K:], z)
    best = s.argmin(0)
    take = s[best, rows] < est[base, rows]
    return torch.where(take, K + best, base)


def made_of(choice: torch.Tensor, k: int, pairs: torch.Tensor, K: int, weights: int) -> torch.Tensor:
    """``[B]`` bool: where the ``choice [B]`` is candidate ``k`` or a blend of it (rows ``K`` on,
    ``weights`` per pair of ``pairs [P, 2, B]``, :func:`blend`).

    >>> made_of(torch.tensor([0, 3, 4, 1]), 0, torch.tensor([[[0, 1, 2, 1], [2, 0, 1, 2]]]), K=3, weights=2).tolist()
    [True, True, False, False]
    """
    rows = torch.arange(len(choice), device=choice.device)
    j = (choice - K).clamp_min(0) // weights  # the pair of a chosen blend
    return (choice == k) | ((choice >= K) & (pairs.permute(0, 2, 1)[j, rows] == k).any(1))


def _refit_csgm(cands: torch.Tensor, redo: torch.Tensor, y: torch.Tensor, operator: Operator, start: Result,
                first: Callable[..., Result], fraction: float, k: int = 0) -> list[bool]:
    """Where ``redo [B]`` (bool: the choice is the CSGM candidate, row ``k`` of ``cands [K, B, ...]``,
    CSGM's solution ``start``, or a blend of it), continue CSGM from it on all measurements
    (``first(y, operator, start)``, for ``fraction`` of its steps; 0: not) and put the result in
    its place where it fits all of them better: which images changed."""
    if fraction <= 0 or not bool(redo.any()):
        return [False] * len(redo)
    refit = first(y, operator, start)
    with torch.no_grad():
        better = redo & (operator.measurement_loss(refit.image, y) < operator.measurement_loss(cands[k], y))
    cands[k, better] = refit.image[better]
    return better.tolist()


def _run_challenger(first: Callable[..., Result], y: torch.Tensor, operator: Operator, y_fit: torch.Tensor,
                    fit: Operator, sel: SelectionConfig) -> tuple[Result, Result]:
    """The ``"challenge"`` CSGM method's run (``first``, :func:`self_tune`) under
    ``sel.csgm_basin``: ``(its solution, the run whose held-out estimate scores it)``.
    ``"fit"``: the CSGM method on the fit part (``y_fit``, ``fit``), both. ``"all"``: the CSGM
    method on all measurements (``y``, ``operator``: what the CSGM method alone returns) and,
    to score it, its continuation on the fit part for ``sel.csgm_probe`` of its steps (one restart)."""
    if sel.csgm_basin == "fit":
        res = first(y_fit, fit)
        return res, res
    res = first(y, operator)
    return res, first(y_fit, fit, res, sel.csgm_probe)


def _challenge_csgm(image: torch.Tensor, choice: torch.Tensor, cands_fit: torch.Tensor, est: torch.Tensor,
                    se: torch.Tensor | None, eligible: torch.Tensor | None, val: Operator, y: torch.Tensor,
                    units: torch.Tensor, z: float, min_units: int = 1, sparse_below: int = 0,
                    ratio: float = 1.0) -> tuple:
    """The CSGM method's solution on the fit part (or its continuation there), ``image [B, C, H, W]``, against the ``choice [B]``
    among the fit part's candidates ``cands_fit [K, B, ...]`` (blends included): it replaces the
    choice only where its held-out estimate plus ``z`` standard errors of their paired difference
    (over ``units``, :func:`paired_se`) lies below the choice's estimate (:func:`challenge`), and
    at least ``min_units`` units are held out; on images with fewer than ``sparse_below`` units,
    only where its estimate is also below the choice's divided by ``ratio``. Returns the choice (``K`` where it was taken),
    ``est``, ``se`` and ``eligible`` with its row appended, and a record of its estimate, standard
    error, the units and where it was taken."""
    B = y.shape[0]
    rows = torch.arange(B, device=y.device)
    with torch.no_grad():
        own = val.measurement_loss(image, y)  # [B]
        errors = unit_errors(val, torch.stack([cands_fit[choice, rows], image]), y, units)  # [2, B, U]
    diff_se = paired_se(errors, torch.zeros_like(choice))[1]
    pair_est, pair_se = torch.stack([est[choice, rows], own]), torch.stack([torch.zeros_like(own), diff_se])
    n = (~errors[0].isnan()).sum(-1)  # [B] held-out units
    take = (challenge(pair_est, pair_se, None, torch.zeros_like(choice), 1, z) == 1) & (n >= min_units)
    take &= (n >= sparse_below) | (own * ratio <= pair_est[0])
    K = est.shape[0]
    new = torch.where(take, torch.full_like(choice, K), choice)
    est = torch.cat([est, own[None]])
    se = None if se is None else torch.cat([se, diff_se[None]])
    eligible = None if eligible is None else torch.cat([eligible, eligible.new_ones(1, B)])
    return new, est, se, eligible, {"estimated_mse": own.tolist(), "estimated_se": diff_se.tolist(),
                                    "choice_estimated_mse": pair_est[0].tolist(), "units": n.tolist(),
                                    "taken": take.tolist(), "run": True,
                                    **({"sparse_below": sparse_below, "ratio": ratio} if sparse_below else {})}


def _classical_sure(csgm: torch.Tensor, y: torch.Tensor, operator: Operator, dev: DeviationConfig | None,
                    methods: Sequence[str], seeds: Sequence[int], probes: int, stages: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoising's candidates under the ``"classical"`` stage rule with the CSGM stage
    ``csgm [B, C, H, W]`` (on ``y``) as the only stage: ``(candidates [K, B, C, H, W], SURE
    [K, B])`` in the order of :func:`candidate_names` for it; the ones the rule excludes (the
    stage's deviations and residuals) are NaN and not computed. Each estimate is the one the
    candidate gets in the list of ``stages`` stages (CSGM and ILO's rounds): SURE's probes are
    drawn for that list's rows and each candidate is evaluated on its own row there."""
    B = y.shape[0]
    rows = lambda S: [k for k, s in enumerate(candidate_stages(S, dev, True, methods)) if k == 0 or s < 0]
    full, mine = rows(stages), rows(1)  # CSGM, the classical methods alone, the observation
    K_full, K = len(candidate_stages(stages, dev, True, methods)), len(candidate_stages(1, dev, True, methods))
    zero = torch.zeros_like(csgm[:1])

    def rowwise(b: int, v: torch.Tensor) -> torch.Tensor:  # :func:`_rowwise` on the rows kept
        out = torch.full_like(v, float("nan"))
        out[0] = csgm[b]
        for k, m in zip(full[1:-1], methods):
            out[k] = on_residual(v[k:k + 1], operator, m, zero)[0]
        out[-1] = v[-1]
        return out

    est = y.new_full((K, B), float("nan"))
    est[mine] = torch.stack([sure(partial(rowwise, b), y[b:b + 1].expand(K_full, *y.shape[1:]), operator.noise.sigma,
                                  probes=probes, generator=stream(seeds[b], "holdout"))[full]
                             for b in range(B)], 1)
    cands = y.new_full((K, B, *y.shape[1:]), float("nan"))
    cands[0], cands[-1] = csgm, y
    cands[mine[1:-1]] = residual_candidates(torch.zeros_like(csgm[None]), y, operator, methods)
    return cands, est


@dataclass
class _Tuning:
    """The self-tuning's state between its steps (``K`` candidates, ``B`` images). Set by
    :func:`_sure_candidates` or :func:`_held_out_candidates`, then narrowed by the stage rule,
    the blends and the CSGM method's challenge."""

    sel: SelectionConfig  #: the selection config in force (next to a box, its margin ``box_z``)
    res: Result  #: ILO's run on all measurements (or the CSGM stage alone where the rounds are skipped)
    stages: list[Stage]  #: that run's stages
    start: Result | None  #: the CSGM method shared by the runs (None: each run's own stage)
    plain: torch.Tensor  #: [B] the best-fitting stage: what ILO without these stages returns
    names: list[str]  #: the candidates' names
    cands: torch.Tensor  #: [K, B, C, H, W] the candidates on all measurements
    est: torch.Tensor  #: [K, B] each candidate's estimated MSE (held-out error or SURE)
    record: dict  #: the selection record
    auto: str  #: the stage rule ``"auto"`` stands for here
    cands_fit: torch.Tensor | None = None  #: held-out: [K, B, ...] the candidates of the fit part
    val: Operator | None = None  #: held-out: the validation part's operator
    units: torch.Tensor | None = None  #: held-out: the unit of every measurement (held_out_units)
    alone: torch.Tensor | None = None  #: held-out: [K] bool, the classical methods alone
    ref: torch.Tensor | None = None  #: held-out: [B] the margin's reference
    errors: torch.Tensor | None = None  #: held-out: [K, B, U] the candidates' per-unit errors
    se: torch.Tensor | None = None  #: [K, B] the standard error of each estimate minus the reference's
    eligible: torch.Tensor | None = None  #: [K, B] bool: the candidates the choice may take (None: all)
    challenger: Result | None = None  #: "challenge": the CSGM method (:func:`_run_challenger`)
    probe: Result | None = None  #: "challenge": the run whose held-out error scores the challenger


def _sure_candidates(y: torch.Tensor, operator: Operator, config: ILOConfig, run: Callable[..., tuple[Result, list[Stage]]],
                     seeds: Sequence[int], first: Callable[..., Result] | None, csgm_dof: int,
                     methods: tuple[str, ...]) -> _Tuning:
    """Denoising: ILO's run (or, under the ``"classical"`` stage rule with the CSGM method as the
    stage, the CSGM stage alone), every candidate on ``y`` and its SURE (module docstring)."""
    sel, dev = config.selection, config.deviation
    assert sel is not None
    if sel.csgm == "challenge":
        raise ValueError("a CSGM challenger needs held-out measurements, not SURE (denoising)")
    if operator.noise.sigma <= 0:
        raise ValueError("self-tuning a denoiser needs a noise sigma > 0 (SURE)")
    start = first(y, operator) if first is not None else None
    auto = "classical" if methods else "estimate"
    # the "classical" rule takes no round's candidate: the rounds are not run, and the CSGM
    # stage's deviations and residuals are not computed (_classical_sure)
    skip = (start is not None and not sel.every_candidate
            and (sel.stage if sel.stage != "auto" else auto) == "classical")
    if skip:
        assert start is not None
        with torch.no_grad():
            stages = [("csgm", start.image, operator.measurement_loss(start.image, y))]
        res = replace(start, history=[])  # the CSGM stage's latents, layer 0; its steps come first
    else:
        res, stages = run(y, operator, 1, start)
    plain = torch.stack([s[2] for s in stages]).argmin(0)
    imgs = torch.stack([s[1] for s in stages])
    names = candidate_names([s[0] for s in stages], dev, identity=True, methods=methods)
    if skip:
        cands, est = _classical_sure(imgs[0], y, operator, dev, methods, seeds, sel.probes, 1 + len(config.rounds))
    else:
        est = torch.stack([
            sure(partial(_rowwise, imgs[:, b], operator=operator, dev=dev, methods=methods),
                 y[b:b + 1].expand(len(names), *y.shape[1:]), operator.noise.sigma, probes=sel.probes,
                 generator=stream(seeds[b], "holdout"))
            for b in range(y.shape[0])], 1)  # [K, B]
        cands = candidates(imgs, y, operator, dev, identity=True, methods=methods)
    # the CSGM stage's divergence is not zero but its latent dimension (csgm_sure_correction)
    est[0] += csgm_sure_correction(operator.noise.sigma, csgm_dof, y[0].numel())
    record = {"rule": "sure", "sigma": operator.noise.sigma, "probes": sel.probes,
              "seeds": [int(s) for s in seeds], "stream": "holdout", "rounds_run": not skip}
    return _Tuning(sel=sel, res=res, stages=stages, start=start, plain=plain, names=names, cands=cands, est=est,
                   record=record, auto=auto)


def _held_out_candidates(y: torch.Tensor, operator: Operator, config: ILOConfig,
                         run: Callable[..., tuple[Result, list[Stage]]], seeds: Sequence[int],
                         first: Callable[..., Result] | None, methods: tuple[str, ...],
                         prior: GaussianPrior | None = None) -> _Tuning:
    """Inpainting, super-resolution, CS: the split, the CSGM method on the fit part as the shared
    stage (with ``method_challenger`` in one batch with the CSGM method on all measurements, the
    challenger, and its probe; under ``"challenge"`` the challenger alone, :func:`_run_challenger`),
    the fit and refit runs, every candidate of
    both and its held-out estimate, then the margin's reference (:func:`_reference`)."""
    sel, dev = config.selection, config.deviation
    assert sel is not None
    B = y.shape[0]
    fit, y_fit, val, record = split(operator, y, seeds, sel)
    box = str(record["kind"]).startswith("patches")  # the held-out part: patches next to a box-shaped hole
    patch = sel.patch if box else None
    units = held_out_units(y, patch)
    if box:
        sel = sel.next_to_box()  # the box's margin, blends and challenger settings
    challenge_it = False
    method = sel.csgm == "method" and sel.method_challenger  # its challenger runs on all measurements, beside the stage
    if sel.csgm == "challenge" or method:  # the CSGM method challenges the choice
        blank = torch.zeros(1, B, *operator.input_shape, dtype=y.dtype, device=y.device)
        n = (~unit_errors(val, blank, y, units)[0].isnan()).sum(1)  # [B] held-out units
        challenge_it = first is not None and bool((n >= sel.csgm_min_units).any())
        if not challenge_it:  # no image has enough held-out units for it to be taken: not run
            record["csgm_challenger"] = {"units": n.tolist(), "run": False}
    challenger = probe = start = None  # under "challenge" the runs keep their own stage
    if first is not None and method and challenge_it:  # one batch: the shared stage on the fit part, the challenger on all
        both = first(*paired(y_fit, fit, y, operator), copies=2)
        start, challenger = result_rows(both, B, 2, 0), result_rows(both, B, 2, 1)
        probe = first(y_fit, fit, challenger, sel.csgm_probe)
    elif first is not None and sel.csgm == "method":
        start = first(y_fit, fit)  # the CSGM method on the fit part, the shared stage
    elif first is not None and challenge_it:
        challenger, probe = _run_challenger(first, y, operator, y_fit, fit, sel)
    (res_fit, st_fit), (res, stages) = fit_and_refit(run, y_fit, fit, y, operator, start)  # one batch of 2B
    plain = torch.stack([s[2] for s in stages]).argmin(0)  # the refit's best-fitting stage: ILO's own output
    auto = "estimate" if box else "measurement"
    only = None  # the measurement rule excludes every other stage's candidates: skip them
    if (sel.stage if sel.stage != "auto" else auto) == "measurement" and not sel.every_candidate:
        only = plain
    cands_fit = candidates(torch.stack([s[1] for s in st_fit]), y_fit, fit, dev, methods=methods, only=only, prior=prior)
    t = _Tuning(sel=sel, res=res, stages=stages, start=start, plain=plain,
                names=candidate_names([s[0] for s in stages], dev, methods=methods),
                cands=candidates(torch.stack([s[1] for s in stages]), y, operator, dev, methods=methods, only=only,
                                 prior=prior),
                est=torch.stack([val.measurement_loss(c, y) for c in cands_fit]),  # [K, B]
                record=record, auto=auto, cands_fit=cands_fit, val=val, units=units, challenger=challenger, probe=probe,
                alone=torch.tensor(candidate_stages(len(stages), dev, methods=methods), device=y.device) < 0)
    _reference(t, y, methods, patch, fit_plain=torch.stack([s[2] for s in st_fit]).argmin(0))
    record["z"] = sel.z
    record["fit_run_steps"] = res_fit.steps  # the held-out run's history is not kept
    return t


def _reference(t: _Tuning, y: torch.Tensor, methods: tuple[str, ...], patch: int | None,
               fit_plain: torch.Tensor) -> None:
    """The margin's reference among the classical methods alone (``SelectionConfig.reference``):
    the one with the lowest estimate, the first (:func:`first_reference`), or (``"mean"``) a
    candidate of its own, the mean of them and ILO's own output (``fit_plain [B]``: the fit run's best-fitting stage), appended
    to ``t``'s candidates; then every candidate's per-unit errors and paired standard errors."""
    assert t.alone is not None and t.cands_fit is not None and t.val is not None and t.units is not None
    if not t.alone.any():
        return
    reference = t.sel.reference if t.sel.reference != "auto" or t.auto != "estimate" else "first"
    if reference == "mean":  # from the fit run's own output here, from the refit's on all measurements
        fit_mean = mean_candidate(t.cands_fit, t.alone, fit_plain)
        t.cands_fit = torch.cat([t.cands_fit, fit_mean])
        t.est = torch.cat([t.est, t.val.measurement_loss(fit_mean[0], y)[None]])
        t.cands = torch.cat([t.cands, mean_candidate(t.cands, t.alone, t.plain)])
        t.names, t.alone = t.names + ["mean"], torch.cat([t.alone, t.alone.new_zeros(1)])
        t.record["mean_of"] = [[*methods, t.stages[int(k)][0]] for k in t.plain]
        ref = torch.full_like(t.plain, len(t.names) - 1)
    else:  # the classical method alone with the lowest estimate
        ref = torch.nan_to_num(t.est, nan=float("inf")).masked_fill(~t.alone[:, None], float("inf")).argmin(0)
    t.errors = unit_errors(t.val, t.cands_fit, y, t.units)  # [K, B, U]
    if reference != "mean":  # or the first: under "first" everywhere, under "auto" where few units are held out
        rows = torch.arange(y.shape[0], device=y.device)
        ref = torch.where(first_reference(reference, t.errors[ref, rows], t.sel.sparse_units),
                          t.names.index(methods[0]), ref)
    t.ref = ref
    t.se = paired_se(t.errors, ref)  # [K, B]
    t.record.update(reference=[t.names[int(k)] for k in ref],
                    units=f"{patch}x{patch} patches" if patch else "pixels" if y.ndim == 4 else "measurements")


def _stage_rule(t: _Tuning, operator: Operator, dev: DeviationConfig | None, methods: tuple[str, ...]) -> None:
    """Which candidates the choice may take (``SelectionConfig.stage``; the rule in the record):
    under ``"estimate"`` all; otherwise those without a stage, CSGM's, and (``"measurement"``)
    the refit's best-fitting stage's (``t.eligible``, the stage in the record)."""
    rule = t.record["stage_rule"] = t.sel.stage if t.sel.stage != "auto" else t.auto
    if rule == "estimate":
        return
    origin = torch.tensor(candidate_stages(len(t.stages), dev, identity=isinstance(operator, Denoising), methods=methods)
                          + [-1] * (t.names[-1:] == ["mean"]), device=t.est.device)
    best = t.plain if rule == "measurement" else torch.full_like(t.plain, -1)
    t.eligible = (origin[:, None] == best[None, :]) | (origin[:, None] < 0)  # [K, B]
    t.eligible[0] = True  # CSGM's solution: never worse than CSGM where the estimates are right
    if rule == "measurement":
        t.record["stage"] = [t.stages[int(k)][0] for k in best]


def _blend_choice(t: _Tuning, y: torch.Tensor, methods: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The choice among the candidates (:func:`choose`), then, on held-out measurements with
    ``SelectionConfig.blend``, among them and their convex blends scored on the fit part
    (:func:`with_blends`, :func:`challenge`; the blends' names and makings in ``t``):
    ``(choice [B], pairs [P, 2, B] or None, K)``, ``K`` the candidates before the blends."""
    sel, K = t.sel, len(t.names)
    base = choose(t.est, t.eligible, t.se, sel.z)
    kinds = usable_pairs(sel.blend_pairs, len(methods))
    if not (sel.blend and kinds and t.val is not None and t.cands_fit is not None and t.alone is not None):
        return base, None, K
    against = base if sel.blend_against == "choice" else None
    pairs, t.est, t.se, t.eligible = with_blends(t.cands_fit, t.val, y, t.units, t.est, t.se, t.eligible, t.errors,
                                                 t.ref, t.alone, sel, kinds, against)
    t.names = t.names + blend_names(kinds, sel.blend)
    of = [[[t.names[k] for k in pair] for pair in img] for img in pairs.permute(2, 0, 1).tolist()]
    t.record["blend"] = [[{"of": pair, "weights": [a, 1 - a]} for pair in img for a in sel.blend] for img in of]
    t.record["blend_against"] = sel.blend_against
    choice = (challenge(t.est, t.se, t.eligible, base, K, sel.z) if sel.blend_against == "choice"
              else choose(t.est, t.eligible, t.se, sel.z))
    return choice, pairs, K


def _csgm_method(t: _Tuning, choice: torch.Tensor, pairs: torch.Tensor | None, K: int, y: torch.Tensor,
                 operator: Operator, first: Callable[..., Result] | None) -> torch.Tensor:
    """The CSGM method's part once the ``choice [B]`` is made on held-out measurements: its
    solution challenges the choice (the shared stage's under ``SelectionConfig.csgm_challenge``,
    the challenger's under ``"challenge"``: :func:`_challenge_csgm`), and where it is chosen
    (alone or in a blend) it is refit on all measurements (:func:`_refit_csgm`); the refit
    candidates' blends join ``t.cands`` in between. The choice after it."""
    sel = t.sel
    if t.val is None:  # SURE: nothing to challenge with held-out measurements, nothing to refit
        return choice

    def against(image: torch.Tensor, choice: torch.Tensor) -> tuple:
        """:func:`_challenge_csgm` of the CSGM method's ``image`` against ``choice``."""
        assert t.units is not None and t.val is not None and t.cands_fit is not None
        fit_all = t.cands_fit if pairs is None else torch.cat([t.cands_fit, blend(t.cands_fit, pairs, sel.blend)])
        method = t.start is not None and t.challenger is not None  # the challenger of "method"
        z = sel.method_challenger_z if method else sel.z if sel.csgm_z is None else sel.csgm_z
        return _challenge_csgm(image, choice, fit_all, t.est, t.se, t.eligible, t.val, y, t.units, z,
                               sel.csgm_min_units, sel.method_challenger_units if method else 0,
                               sel.method_challenger_ratio)

    if t.start is not None and sel.csgm_challenge:  # the shared stage's solution (row 0) challenges too
        taken, _, _, _, rec = against(t.start.image, choice)
        t.record["csgm_stage_challenger" if t.challenger is not None else "csgm_challenger"] = rec
        choice = torch.where(taken == t.est.shape[0], torch.zeros_like(choice), choice)
    if t.start is not None and first is not None:
        redo = choice == 0 if pairs is None else made_of(choice, 0, pairs, K, len(sel.blend))
        t.record["csgm_refit"] = _refit_csgm(t.cands, redo, y, operator, t.start, first, sel.csgm_refit)
    if pairs is not None:
        t.cands = torch.cat([t.cands, blend(t.cands, pairs, sel.blend)])  # the blends of the refit candidates
    if t.challenger is not None and t.probe is not None and first is not None:
        challenged = [t.names[int(c)] for c in choice]
        choice, t.est, t.se, t.eligible, rec = against(t.probe.image, choice)
        on_all = t.probe is not t.challenger  # run on all measurements, scored by its continuation on the fit part
        rec.update(basin="all" if on_all else "fit", against=challenged)
        if on_all:
            rec.update(probe_steps=t.probe.steps, probe_share=sel.csgm_probe, continue_share=sel.csgm_continue)
        t.record["csgm_challenger"] = rec
        t.names = t.names + ["csgm-method"]
        t.cands = torch.cat([t.cands, t.challenger.image[None]])
        taken = choice == len(t.names) - 1
        more = sel.csgm_continue if on_all else sel.csgm_refit
        continued = _refit_csgm(t.cands, taken, y, operator, t.challenger, partial(first, fraction=more), more, k=-1)
        if t.start is not None:  # "method" with its challenger: the shared stage's refit is recorded above
            rec["continued"] = continued
        else:
            t.record["csgm_refit"] = continued
    return choice


def self_tune(y: torch.Tensor, operator: Operator, config: ILOConfig,
              run: Callable[..., tuple[Result, list[Stage]]], seeds: Sequence[int],
              first: Callable[..., Result] | None = None, csgm_config: CSGMConfig | None = None,
              csgm_dof: int = 0, prior: GaussianPrior | None = None) -> Result:
    """ILO with the candidates chosen per image (module docstring). ``run(y, operator, copies=1,
    start=None)`` runs ILO's rounds, ``copies`` rows per image, from ``start`` (a CSGM result)
    or its own CSGM stage, and returns ``(result, stages)``. ``first(y, operator, start=None, fraction=None)``:
    the CSGM method (its config ``csgm_config``, recorded), run once (on the fit part for
    held-out measurements) and shared by both runs, or under ``"challenge"`` the challenger of
    the choice; with ``start``, its continuation for ``fraction`` of its steps (None:
    ``csgm_refit``); None: each run's own CSGM stage.
    ``csgm_dof``: the latent entries CSGM optimises per image (:func:`csgm_sure_correction`).
    ``prior``: the generator's Gaussian prior where ``"gaussian"`` is among the classical methods
    (without it that method is left out).

    The steps: the candidates and their estimates (:func:`_sure_candidates` for denoising,
    :func:`_held_out_candidates` otherwise), the stage rule (:func:`_stage_rule`), the choice
    and the blends (:func:`_blend_choice`), the CSGM method's challenge and refit
    (:func:`_csgm_method`), then the chosen candidate with the observed pixels kept."""
    t0 = time.perf_counter()
    assert config.selection is not None
    methods = classical_methods(operator, config.selection)
    if prior is None:  # the Gaussian prior needs the generator's (ilo passes it where the images are small enough)
        methods = tuple(m for m in methods if m not in PRIOR_METHODS)
    if isinstance(operator, Denoising):
        t = _sure_candidates(y, operator, config, run, seeds, first, csgm_dof, methods)
    else:
        t = _held_out_candidates(y, operator, config, run, seeds, first, methods, prior)
    _stage_rule(t, operator, config.deviation, methods)
    choice, pairs, K = _blend_choice(t, y, methods)
    choice = _csgm_method(t, choice, pairs, K, y, operator, first)
    record, names = t.record, t.names
    record["settings"] = asdict(config.selection)  # the resolved selection config (its ``csgm`` no longer "auto")
    if t.se is not None:
        record["estimated_se"] = t.se.T.tolist()
    if t.eligible is not None:
        record["eligible"] = t.eligible.T.tolist()
    image = paste_observed(t.cands[choice, torch.arange(y.shape[0], device=y.device)], y, operator, config.deviation)
    record.update(candidates=names, estimated_mse=t.est.T.tolist(), choice=[names[int(c)] for c in choice],
                  ilo_choice=[names[int(c)] for c in t.plain], classical=list(methods),
                  csgm_candidate=names[-1] if t.challenger is not None else names[0],
                  csgm=t.sel.csgm, csgm_steps=t.start.steps if t.start is not None else config.csgm.steps)
    if t.challenger is not None:
        record["challenger_steps"] = t.challenger.steps
    if csgm_config is not None and (t.start is not None or t.challenger is not None):
        record["csgm_config"] = csgm_config.to_dict()
    with torch.no_grad():
        meas = operator.measurement_loss(image, y)
    history = (t.start.history if t.start is not None else []) + t.res.history  # the shared CSGM stage's steps first
    return Result(image=image, latents=t.res.latents, layer=t.res.layer, measurement_loss=meas, history=history,
                  method="ilo", config={**config.to_dict(), "selection": record},
                  seconds=time.perf_counter() - t0, selection=record, candidates=t.cands)


__all__ = ["HeldOut", "extend", "paste_observed", "candidates", "candidate_names", "candidate_stages",
           "is_box", "classical_methods", "wants_prior", "residual_candidates", "split", "ring", "mean_candidate", "first_reference", "held_out_units", "unit_errors", "paired_se", "choose",
           "scores", "challenge", "blend_pairs", "blend_names", "blend", "usable_pairs", "with_blends", "made_of", "copy_rows",
           "fit_and_refit", "paired", "result_rows", "self_tune", "csgm_sure_correction"]
