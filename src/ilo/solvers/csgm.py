"""CSGM: compressed sensing with generative models (Bora et al. 2017)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..generators.base import LayeredGenerator
from ..losses.composite import Objective
from ..operators.base import Operator
from .config import CSGMConfig
from .optim import StepInfo, adam_loop, make_evaluate
from .result import Result
from .tracking import BestTracker, Recorder, resolve_seeds, stack_latents


def sna_seed(seed: int, stream: int) -> int:
    """Seed of the Stochastic-Noise-Addition stream ``stream`` of the image with solver seed ``seed``."""
    return (int(seed) * 1_000_003 + 7_919 * (stream + 1)) % (2**63 - 1)


#: state-0 entries that are latent vectors (PULSE's sphere applies to them, not to noise maps)
LATENT_VECTOR_KEYS = ("z", "ws", "v")


def project_sphere_(z: torch.Tensor) -> None:
    """In place: rescale every vector along the last dimension ``d`` to norm ``sqrt(d)`` (PULSE)."""
    d = z.shape[-1]
    z.mul_(d**0.5 / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def project_l2_ball_(z: torch.Tensor, radius: float) -> None:
    """In place: rescale each sample of ``z`` to l2 norm at most ``radius``."""
    norm = z.flatten(1).norm(dim=1).clamp_min(1e-12)
    z.mul_((radius / norm).clamp(max=1.0).view(-1, *[1] * (z.ndim - 1)))


def csgm(
    y: torch.Tensor,
    operator: Operator,
    generator: LayeredGenerator,
    config: CSGMConfig = CSGMConfig(),
    *,
    seeds: int | Sequence[int] | None = 0,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
    _recorder: Recorder | None = None,
) -> Result:
    """CSGM (Bora et al. 2017): ``min_z ||A G(z) - y||^2`` by Adam from several random starts.

    The ``restarts`` starts of every image run as one batch; per image the restart whose best
    iterate has the lowest measurement loss is returned. Image ``i`` draws its starts from a
    generator seeded with ``seeds[i]``, so its result does not depend on the batch.

    Args:
        y: observations ``[B, ...]`` from ``operator``.
        operator: the forward operator (simulates ``y`` and defines the loss).
        generator: a layered generator; only its input latent (layer 0) is optimised.
    Returns:
        :class:`Result` with ``layer = 0`` and ``latents`` the selected latent state.
    """
    B, R = y.shape[0], config.restarts
    seeds_ = resolve_seeds(seeds, B)
    rec = _recorder or Recorder(config.steps, "csgm", progress, callback)
    y_rep, op_rep = y.repeat_interleave(R, 0), operator.batch_repeat(R)
    objective = Objective(config.loss, op_rep, noise_seeds=[sna_seed(s, r) for s in seeds_ for r in range(R)])
    start = stack_latents(generator, seeds_, R)  # [B * R, ...]
    keys = config.keys if config.keys is not None else generator.trainable_keys(0)
    missing = [k for k in keys if k not in start]
    if missing:
        raise ValueError(f"latent state has no entries {missing}; it has {sorted(start)}")
    params = {k: v for k, v in start.items() if k in keys}
    fixed = {k: v for k, v in start.items() if k not in keys}
    tracker = BestTracker(B * R, y.device)

    evaluate = make_evaluate(generator, objective, op_rep, y_rep, fixed)

    def on_step(t, obj, meas, x):
        tracker.update(meas, x, 0, {**fixed, **params})
        rec(0, 0, obj.view(B, R).min(1).values, meas.view(B, R).min(1).values, x)

    def project(p):
        for k, v in p.items():
            if config.sphere and k in LATENT_VECTOR_KEYS:
                project_sphere_(v)
            if config.latent_radius is not None:
                project_l2_ball_(v, config.latent_radius)

    adam_loop(params, evaluate, config.steps, config.lr, config.schedule, project, on_step)
    with torch.no_grad():  # the last update was never evaluated
        _, meas, x = evaluate(params)
        tracker.update(meas, x, 0, {**fixed, **params})
    if _recorder is None:
        rec.close()
    best = tracker.loss.view(B, R).argmin(1)
    rows = torch.arange(B, device=best.device) * R + best
    return Result(
        image=tracker.image[rows],
        latents={k: v[rows] for k, v in tracker.state.items()},
        layer=0,
        measurement_loss=tracker.loss[rows],
        history=rec.history,
        method="csgm",
        config=config.to_dict(),
        seconds=rec.timer(),
    )
