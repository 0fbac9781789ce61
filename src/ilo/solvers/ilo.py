"""Intermediate Layer Optimization: Algorithm 1 of Daras et al. (ICML 2021), in rounds over layers."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..generators.base import LayeredGenerator, State
from ..losses.composite import Objective
from ..operators.base import Operator
from ..projections import project_l1_deviation
from .config import ILOConfig, RoundConfig
from .csgm import csgm, project_l2_ball_, sna_seed
from .optim import StepInfo, adam_loop, make_evaluate
from .result import Result
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

    ``Result.latents`` is the final state at ``Result.layer`` (the last round's layer);
    ``Result.image`` the selected iterate, which may come from an earlier round.
    ``init``: a CSGM result for these observations to start from instead of running line 1
    (its steps are then not part of this run's history).
    """
    B = y.shape[0]
    csgm_steps = 0 if init is not None else config.csgm.steps
    rec = Recorder(csgm_steps + sum(r.steps for r in config.rounds), "ilo", progress, callback)
    first = init if init is not None else csgm(y, operator, generator, config.csgm, seeds=seeds, _recorder=rec)
    if first.layer != 0:
        raise ValueError("init must be a CSGM result (latents at layer 0)")
    objective = Objective(config.loss, operator, noise_seeds=[sna_seed(s, 10_000) for s in resolve_seeds(seeds, B)])
    tracker = BestTracker(B, y.device)
    tracker.update(first.measurement_loss, first.image, 0)

    state, layer = detach_state(first.latents), 0  # the point the next round starts from
    var_center, var_radius = None, None  # feasible set of `state` (for back-to-range)
    for i, rnd in enumerate(config.rounds, start=1):
        with torch.no_grad():
            center = detach_state(generator.run(state, layer, rnd.layer))
        params = _pgd_round(y, operator, generator, objective, center, rnd, config, tracker, rec, i)
        solution = {**center, **params}
        if config.back_to_range and rnd.layer > layer:
            prev = _back_to_range(generator, state, layer, solution, rnd.layer, var_center, var_radius, config)
            with torch.no_grad():
                solution = detach_state(generator.run(prev, layer, rnd.layer))
        state, layer = solution, rnd.layer
        var_center, var_radius = center, rnd

    if config.select == "last" and config.rounds:
        with torch.no_grad():
            image = generator.tail(layer)(state)
            meas = operator.measurement_loss(image, y)
    else:
        image, meas = tracker.image, tracker.loss
    rec.close()
    return Result(
        image=image,
        latents=state,
        layer=layer,
        measurement_loss=meas,
        history=rec.history,
        method="ilo",
        config=config.to_dict(),
        seconds=rec.timer(),
    )


def _pgd_round(y, operator, generator, objective, center: State, rnd: RoundConfig, config, tracker, rec, i) -> State:
    """Line 4: projected Adam on the trainable entries of the state at ``rnd.layer``."""
    keys = rnd.keys if rnd.keys is not None else generator.trainable_keys(rnd.layer)
    keys = tuple(k for k in keys if k in center)
    fixed = {k: v for k, v in center.items() if k not in keys}
    params = {k: center[k].clone() for k in keys}
    radii = {k: _radius(rnd, k, center[k]) for k in keys}
    evaluate = make_evaluate(generator.tail(rnd.layer), objective, operator, y, fixed)

    def project(p):
        for k in keys:
            p[k].copy_(project_l1_deviation(p[k], center[k], radii[k]))

    def on_step(t, obj, meas, x):
        tracker.update(meas, x, rnd.layer)
        rec(i, rnd.layer, obj, meas, x)

    adam_loop(params, evaluate, rnd.steps, rnd.lr, config.schedule, project, on_step)
    with torch.no_grad():
        _, meas, x = evaluate(params)
        tracker.update(meas, x, rnd.layer)
    return {k: v.detach() for k, v in params.items()}


def _radius(rnd: RoundConfig, key: str, center: torch.Tensor) -> float | torch.Tensor:
    """The round's l1 radius for one state entry: absolute, or per sample relative to ``||center||_1``."""
    r = rnd.radius_for(key)
    return r * center.flatten(1).abs().sum(1) if rnd.relative else r


def _back_to_range(generator, state, layer, target: State, target_layer, center, rnd_prev, config) -> State:
    """Lines 5-6: ``argmin_{z in feasible set} ||G1(z) - target||^2`` for ``G1`` = layers
    ``layer .. target_layer``, started at the current ``state``; the feasible set is the
    previous round's l1 ball (or, for the input latent, CSGM's l2 ball if it has one)."""
    keys = generator.trainable_keys(layer) if layer > 0 else tuple(state)
    fixed = {k: v for k, v in state.items() if k not in keys}
    params = {k: state[k].clone() for k in keys}
    tkeys = [k for k in generator.trainable_keys(target_layer) if k in target]

    def evaluate(p):
        out = generator.run({**fixed, **p}, layer, target_layer)
        loss = sum((out[k] - target[k]).flatten(1).pow(2).mean(1) for k in tkeys)
        return loss, loss.detach(), out[tkeys[0]]

    def project(p):
        for k in keys:
            if layer == 0:
                if config.csgm.latent_radius is not None:
                    project_l2_ball_(p[k], config.csgm.latent_radius)
            else:
                p[k].copy_(project_l1_deviation(p[k], center[k], _radius(rnd_prev, k, center[k])))

    adam_loop(params, evaluate, config.back_to_range_steps, config.back_to_range_lr, config.schedule, project)
    return {**fixed, **{k: v.detach() for k, v in params.items()}}
