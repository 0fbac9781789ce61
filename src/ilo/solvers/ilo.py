"""Intermediate Layer Optimization: Algorithm 1 of Daras et al. (ICML 2021), in rounds over layers."""

from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from ..generators.base import LayeredGenerator, State
from ..losses.composite import Objective
from ..losses.fidelity import DataFidelity
from ..operators.base import Operator
from ..projections import Constraint, L1Ball
from ..rng import stream
from .config import CSGMConfig, ILOConfig, RoundConfig
from .csgm import csgm, latent_constraints
from .optim import StepInfo
from .result import Result
from .rounds import Round
from . import gaussian
from .selection import Stage, copy_rows, extend, is_box, self_tune, wants_prior
from .tracking import BestTracker, Recorder, detach_state, resolve_seeds


def ilo(
    y: torch.Tensor,
    operator: Operator,
    generator: LayeredGenerator,
    config: ILOConfig,
    *,
    seeds: int | Sequence[int] | None = 0,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
    init: Result | None = None,
    fidelity: DataFidelity | None = None,
) -> Result:
    """ILO (Algorithm 1 of Daras et al. 2021), run in rounds over successive layers.

    1. ``z_k`` = CSGM solution (line 1); ``z_p = G1(z_k)`` (line 2).
    2. For each round (a layer ``p``, shallow to deep): projected Adam on the state at layer
       ``p``, every step projecting the deviation from the round's starting point onto the
       l1 ball of the round's radius (line 4, Duchi et al. 2008).
    3. Optionally "back to range" (lines 5-6): fit the previous layer's variable so that its
       image under ``G1`` is closest to the round's solution, and continue from that point.
    4. Return per image the iterate with the lowest measurement loss over CSGM and all rounds
       (``config.select == "measurement"``; the official code kept the last round's only),
       or the final iterate (``"last"``).
    5. Range extension (``config.deviation``): ``x = G(state) + δ``, ``δ`` sparse under a TV /
       wavelet prior (:func:`~ilo.solvers.deviation.deviate`); for noiseless inpainting the
       observed pixels are kept exactly.
    6. Self-tuning (``config.selection``): the stage solutions and their deviations at a grid
       of weights are candidates, chosen per image by held-out measurements or SURE
       (:mod:`ilo.solvers.selection`); ``Result.selection`` records the choice. By default
       step 1 is then the CSGM method at its own preset and ILO's whole budget
       (:func:`csgm_stage`), run once and shared by the fit run and the refit, so the CSGM
       method's solution is one of the candidates.

    ``Result.latents`` is the final state at ``Result.layer`` (the last round's layer);
    ``Result.image`` the selected iterate, which may come from an earlier round.
    ``init``: a CSGM result for these observations to start from instead of running line 1
    (its steps are then not part of this run's history).
    ``fidelity``: the data-fidelity term of the objective (default: the measurement loss),
    e.g. :class:`~ilo.losses.classifier.ClassifierGuidance`.
    """
    B, seeds_ = y.shape[0], resolve_seeds(seeds, y.shape[0])

    def run(y_: torch.Tensor, op: Operator, copies: int = 1, start: Result | None = None
            ) -> tuple[Result, list[Stage]]:
        """Steps 1-4 on ``y_ [B * copies, ...]``, rows ``copies * i .. copies * i + copies - 1``
        image ``i``'s (its seed, ``init`` and fidelity), e.g. self-tuning's fit and refit runs as
        one batch; the callback sees the last copy of every image. ``start``: a CSGM result
        (``B`` rows) to start from instead of ``init``."""
        cb = callback if callback is None or copies == 1 else _on_copy(callback, B, copies, copies - 1)
        return _rounds(y_, op, generator, config, [s for s in seeds_ for _ in range(copies)], cb, progress,
                       _repeat(start or init, copies), fidelity if fidelity is None else fidelity.batch_repeat(copies))

    if config.selection is not None:
        sel = config.selection
        if sel.csgm == "auto":
            auto = sel.box_csgm if sel.box_csgm is not None and is_box(operator) else operator.self_tuning_csgm
            sel = replace(sel, csgm=auto)
            config = replace(config, selection=sel)
        stage = csgm_stage(config, generator)

        def first(y_: torch.Tensor, op: Operator, start: Result | None = None, fraction: float | None = None,
                  copies: int = 1) -> Result:
            """The CSGM method on ``y_ [B * copies, ...]`` (or ``init``, when given; rows as in
            ``run``); from ``start``: one restart continued for ``fraction`` of its steps (None:
            ``sel.csgm_refit``, the refit on all measurements). Only the shared stage under
            ``"method"`` is in the history (with ``copies``, its first copy, the fit part); a
            challenger is not."""
            if start is not None:
                share = sel.csgm_refit if fraction is None else fraction
                cfg = replace(stage, steps=max(1, round(stage.steps * share)), restarts=1)
                return csgm(y_, op, generator, cfg, seeds=seeds_, init=start.latents, fidelity=fidelity)
            if init is not None:
                rep = _repeat(init, copies)
                assert rep is not None
                return replace(rep, history=[])
            cb = callback if sel.csgm == "method" else None
            if cb is not None and copies > 1:
                cb = _on_copy(cb, B, copies, 0)
            return csgm(y_, op, generator, stage, seeds=[s for s in seeds_ for _ in range(copies)], progress=progress,
                        fidelity=fidelity if fidelity is None or copies == 1 else fidelity.batch_repeat(copies),
                        callback=cb)

        shapes = generator.layer_shapes()[0]
        dof = sum(math.prod(shapes[k]) for k in (stage.keys or generator.trainable_keys(0)))
        prior = gaussian_prior(generator, operator, config, progress=progress)
        return self_tune(y, operator, config, run, seeds_, first if sel.csgm in ("method", "challenge") else None,
                         stage, dof, prior)
    res, _ = run(y, operator)
    if config.deviation is not None:
        res.image = extend(res.image, y, operator, config.deviation, config.deviation.weights[0])
        res.measurement_loss = operator.measurement_loss(res.image, y)
    return res


def gaussian_prior(generator: LayeredGenerator, operator: Operator, config: ILOConfig, progress: bool = False
                   ) -> gaussian.GaussianPrior | None:
    """The generator's Gaussian prior that ILO with ``config`` uses on ``operator`` (its
    self-tuning's candidate; :func:`~ilo.solvers.gaussian.prior_for`: from memory, the disk cache
    or fitted once), None where it uses none. :func:`ilo.solvers.prepare` calls it before solves
    in several processes (:mod:`ilo.workers`)."""
    sel = config.selection
    if sel is None or not gaussian.supports(generator) or not wants_prior(operator, sel):
        return None
    return gaussian.prior_for(generator, progress=progress, augment=gaussian.augmentation(sel.gaussian_augment))


def csgm_stage(config: ILOConfig, generator: LayeredGenerator) -> CSGMConfig:
    """The CSGM stage of self-tuning (``config.selection.csgm == "method"``, or the challenger
    under ``"challenge"``): the CSGM method's preset for the generator's family at ILO's whole
    budget (``SelectionConfig.csgm_share`` of it) and restarts (``SelectionConfig.csgm_restarts`` where set), with the early stopping
    and the start screening of ILO's own stage (``config.csgm.patience``, ``tolerance``, ``screen``); ILO's own stage with that
    budget for a family without presets. (``"own"``: ``config.csgm``; :func:`ilo` resolves
    ``"auto"`` from the operator's ``self_tuning_csgm`` before calling this.)"""
    from .presets import LAYOUTS

    if config.selection is not None and config.selection.csgm == "own":
        return config.csgm
    layout = LAYOUTS.get(getattr(generator, "family", ""))
    share = config.selection.csgm_share if config.selection is not None else 1.0
    steps = max(1, round(config.total_steps * share))
    if layout is None:
        stage = replace(config.csgm, steps=steps)
    else:
        stage = replace(layout.csgm(config, "csgm", steps), patience=config.csgm.patience,
                        tolerance=config.csgm.tolerance, screen=config.csgm.screen)
    restarts = config.selection.csgm_restarts if config.selection is not None else None
    return replace(stage, restarts=restarts or stage.restarts)


def _repeat(res: Result | None, copies: int) -> Result | None:
    """``res`` with every image repeated ``copies`` times in a row."""
    if res is None or copies == 1:
        return res
    rep = lambda t: t.repeat_interleave(copies, 0)
    return replace(res, image=rep(res.image), measurement_loss=rep(res.measurement_loss),
                   latents={k: rep(v) for k, v in res.latents.items()})


def _on_copy(callback: Callable[[StepInfo], None], images: int, copies: int, k: int) -> Callable[[StepInfo], None]:
    """``callback`` for a run with ``copies`` rows per image: it sees copy ``k`` of each."""
    def on_step(info: StepInfo) -> None:
        rows = lambda t: None if t is None else copy_rows(t, images, copies, k)
        callback(StepInfo(info.step, info.round, info.layer, rows(info.loss), rows(info.measurement_loss),
                          rows(info.image), info.time, rows(info.best_loss), rows(info.best_image)))
    return on_step


def _rounds(y, operator, generator, config: ILOConfig, seeds, callback, progress, init, fidelity
            ) -> tuple[Result, list[Stage]]:
    """Steps 1-4 of :func:`ilo`; also the best iterate of every stage (CSGM, round 1, ...)."""
    B = y.shape[0]
    csgm_steps = 0 if init is not None else config.csgm.steps
    rec = Recorder(csgm_steps + sum(r.steps for r in config.rounds), "ilo", progress, callback, B, y.device)
    first = init if init is not None else csgm(y, operator, generator, config.csgm, seeds=seeds, fidelity=fidelity,
                                                _recorder=rec)
    if first.layer != 0:
        raise ValueError("init must be a CSGM result (latents at layer 0)")
    if init is not None:  # it may come from other measurements (self-tuning's fit part)
        with torch.no_grad():
            first = replace(first, measurement_loss=operator.measurement_loss(first.image, y))
    objective = Objective(config.loss, operator, [stream(s, "sna", 1) for s in resolve_seeds(seeds, B)],
                          fidelity)
    rec.track(first.measurement_loss, first.image, 0)
    stages: list[Stage] = [("csgm", first.image, first.measurement_loss)]

    state, layer = detach_state(first.latents), 0  # the point the next round starts from
    feasible: dict[str, list[Constraint]] = latent_constraints(config.csgm, tuple(state))  # of `state`
    for i, rc in enumerate(config.rounds, start=1):
        with torch.no_grad():
            center = detach_state(generator.run(state, layer, rc.layer))
        rnd, params, fixed = _ilo_round(y, operator, generator, objective, center, rc, config)
        best = BestTracker(B, y.device)

        def on_step(t, obj, meas, x, i=i, k=rc.layer, best=best):
            rec.track(meas, x, k)
            best.update(meas, x, k)
            rec(i, k, obj, meas, x)

        params = rnd.run(params, fixed, on_step)
        with torch.no_grad():
            _, meas, x = rnd.evaluate(params, fixed)
            rec.track(meas, x, rc.layer)
            best.update(meas, x, rc.layer)
        assert best.image is not None  # updated just above
        stages.append((f"round{i}", best.image, best.loss))
        solution = {**center, **params}
        if config.back_to_range and rc.layer > layer:
            prev = _back_to_range(generator, state, layer, solution, rc.layer, feasible, config)
            with torch.no_grad():
                solution = detach_state(generator.run(prev, layer, rc.layer))
        state, layer = solution, rc.layer
        feasible = rnd.constraints

    if config.select == "last" and config.rounds:
        with torch.no_grad():
            image = generator.tail(layer)(state)
            meas = operator.measurement_loss(image, y)
    else:
        image, meas = rec.best.image, rec.best.loss
    rec.close()
    res = Result(
        image=image,
        latents=state,
        layer=layer,
        measurement_loss=meas,
        history=rec.history,
        method="ilo",
        config=config.to_dict(),
        seconds=rec.timer(),
    )
    return res, stages


def _ilo_round(y, operator, generator, objective, center: State, rc: RoundConfig, config: ILOConfig):
    """Line 4: the round on the trainable entries of the state at ``rc.layer``, each within the
    l1 ball of its radius around the round's starting point; returns ``(round, params, fixed)``."""
    keys = rc.keys if rc.keys is not None else generator.trainable_keys(rc.layer)
    keys = tuple(k for k in keys if k in center)
    fixed = {k: v for k, v in center.items() if k not in keys}
    params = {k: center[k].clone() for k in keys}
    balls: dict[str, list[Constraint]] = {k: [L1Ball(center[k], _radius(rc, k, center[k]))] for k in keys}
    rnd = Round(render=generator.tail(rc.layer), objective=lambda x, s, t: objective(x, y, s, t), steps=rc.steps, lr=rc.lr,
                constraints=balls, schedule=config.schedule, measure=lambda x: operator.measurement_loss(x, y))
    return rnd, params, fixed


def _radius(rc: RoundConfig, key: str, center: torch.Tensor) -> float | torch.Tensor:
    """The round's l1 radius for one state entry: absolute, or per sample relative to ``||center||_1``."""
    r = rc.radius_for(key)
    return r * center.flatten(1).abs().sum(1) if rc.relative else r


def _back_to_range(generator, state: State, layer: int, target: State, target_layer: int,
                   feasible: dict[str, list[Constraint]], config: ILOConfig) -> State:
    """Lines 5-6: ``argmin_{z in feasible set} ||G1(z) - target||^2`` for ``G1`` = layers
    ``layer .. target_layer``, started at the current ``state``: a round whose objective is the
    distance to the target; the feasible set is the previous round's (or CSGM's latent set)."""
    keys = generator.trainable_keys(layer) if layer > 0 else tuple(state)
    keys = tuple(k for k in keys if k in feasible)  # an entry the round did not optimise stays put
    fixed = {k: v for k, v in state.items() if k not in keys}
    params = {k: state[k].clone() for k in keys}
    tkeys = [k for k in generator.trainable_keys(target_layer) if k in target]

    def distance(out: State, _state: State, _step: int | None) -> torch.Tensor:
        return torch.stack([(out[k] - target[k]).flatten(1).pow(2).mean(1) for k in tkeys]).sum(0)

    rnd = Round(render=lambda s: generator.run(s, layer, target_layer), objective=distance,
                steps=config.back_to_range_steps, lr=config.back_to_range_lr,
                constraints={k: feasible[k] for k in keys}, schedule=config.schedule)
    return {**fixed, **rnd.run(params, fixed)}
