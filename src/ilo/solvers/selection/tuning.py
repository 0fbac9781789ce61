"""The self-tuning's steps (:func:`self_tune`): the candidates and their estimates (SURE for
denoising, held-out measurements otherwise), the margin's reference, the stage rule, the choice
with its blends, then the CSGM method's challenge and refit (the package docstring)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from collections.abc import Callable, Sequence

import torch

from ...operators import Denoising
from ...operators.base import Operator
from ...rng import stream
from ..classical import PRIOR_METHODS, on_residual
from ..gaussian import GaussianPrior
from ..config import CSGMConfig, DeviationConfig, ILOConfig, SelectionConfig
from ..result import Result
from ..risk import sure
from .batches import fit_and_refit, paired, result_rows
from .pool import (Stage, candidate_names, candidate_stages, candidates, classical_methods, mean_candidate,
                   paste_observed, residual_candidates, row_candidates)
from .challenger import challenge_csgm, refit_csgm, run_challenger
from .choice import blend, blend_names, challenge, choose, first_reference, made_of, usable_pairs, with_blends
from .heldout import held_out_units, paired_se, split, unit_errors


def csgm_sure_correction(sigma: float, dof: int, n: int) -> float:
    """SURE's divergence term for a CSGM solution held fixed: ``2 sigma² dof / n`` for ``dof``
    latent entries optimised per image and ``n`` entries per observation. A least-squares fit
    onto a ``dof``-dimensional smooth manifold has divergence ``dof`` (the trace of the
    projection onto its tangent space), so its SURE is its residual ``- sigma² + 2 sigma² dof / n``.

    >>> csgm_sure_correction(0.1, 100, 1000)
    0.002
    """
    return round(2 * sigma**2 * dof / n, 12)


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

    def rowwise(b: int, v: torch.Tensor) -> torch.Tensor:  # :func:`row_candidates` on the rows kept
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
    challenger: Result | None = None  #: "challenge": the CSGM method (:func:`run_challenger`)
    probe: Result | None = None  #: "challenge": the run whose held-out error scores the challenger


def _sure_candidates(y: torch.Tensor, operator: Operator, config: ILOConfig, run: Callable[..., tuple[Result, list[Stage]]],
                     seeds: Sequence[int], first: Callable[..., Result] | None, csgm_dof: int,
                     methods: tuple[str, ...]) -> _Tuning:
    """Denoising: ILO's run (or, under the ``"classical"`` stage rule with the CSGM method as the
    stage, the CSGM stage alone), every candidate on ``y`` and its SURE (the package docstring, :mod:`ilo.solvers.selection`)."""
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
            sure(partial(row_candidates, imgs[:, b], operator=operator, dev=dev, methods=methods),
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
    challenger, and its probe; under ``"challenge"`` the challenger alone, :func:`run_challenger`),
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
        challenger, probe = run_challenger(first, y, operator, y_fit, fit, sel)
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
    the challenger's under ``"challenge"``: :func:`challenge_csgm`), and where it is chosen
    (alone or in a blend) it is refit on all measurements (:func:`refit_csgm`); the refit
    candidates' blends join ``t.cands`` in between. The choice after it."""
    sel = t.sel
    if t.val is None:  # SURE: nothing to challenge with held-out measurements, nothing to refit
        return choice

    def against(image: torch.Tensor, choice: torch.Tensor) -> tuple:
        """:func:`challenge_csgm` of the CSGM method's ``image`` against ``choice``."""
        assert t.units is not None and t.val is not None and t.cands_fit is not None
        fit_all = t.cands_fit if pairs is None else torch.cat([t.cands_fit, blend(t.cands_fit, pairs, sel.blend)])
        method = t.start is not None and t.challenger is not None  # the challenger of "method"
        z = sel.method_challenger_z if method else sel.z if sel.csgm_z is None else sel.csgm_z
        return challenge_csgm(image, choice, fit_all, t.est, t.se, t.eligible, t.val, y, t.units, z,
                               sel.csgm_min_units, sel.method_challenger_units if method else 0,
                               sel.method_challenger_ratio)

    if t.start is not None and sel.csgm_challenge:  # the shared stage's solution (row 0) challenges too
        taken, _, _, _, rec = against(t.start.image, choice)
        t.record["csgm_stage_challenger" if t.challenger is not None else "csgm_challenger"] = rec
        choice = torch.where(taken == t.est.shape[0], torch.zeros_like(choice), choice)
    if t.start is not None and first is not None:
        redo = choice == 0 if pairs is None else made_of(choice, 0, pairs, K, len(sel.blend))
        t.record["csgm_refit"] = refit_csgm(t.cands, redo, y, operator, t.start, first, sel.csgm_refit)
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
        continued = refit_csgm(t.cands, taken, y, operator, t.challenger, partial(first, fraction=more), more, k=-1)
        if t.start is not None:  # "method" with its challenger: the shared stage's refit is recorded above
            rec["continued"] = continued
        else:
            t.record["csgm_refit"] = continued
    return choice


def self_tune(y: torch.Tensor, operator: Operator, config: ILOConfig,
              run: Callable[..., tuple[Result, list[Stage]]], seeds: Sequence[int],
              first: Callable[..., Result] | None = None, csgm_config: CSGMConfig | None = None,
              csgm_dof: int = 0, prior: GaussianPrior | None = None) -> Result:
    """ILO with the candidates chosen per image (the package docstring, :mod:`ilo.solvers.selection`). ``run(y, operator, copies=1,
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
    on_all = t.challenger if t.challenger is not None else t.start if t.val is None else None  # SURE: the stage is on y
    return Result(image=image, latents=t.res.latents, layer=t.res.layer, measurement_loss=meas, history=history,
                  method="ilo", config={**config.to_dict(), "selection": record},
                  seconds=time.perf_counter() - t0, selection=record, candidates=t.cands,
                  csgm_method=on_all)
