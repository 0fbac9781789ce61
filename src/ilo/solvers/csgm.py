"""CSGM: compressed sensing with generative models (Bora et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..generators.base import LayeredGenerator, State
from ..losses.composite import Objective
from ..losses.fidelity import DataFidelity, MeasurementMSE
from ..operators.base import Operator
from ..projections import Constraint, L2Ball, Sphere
from ..rng import stream
from .config import CSGMConfig
from .optim import Plateau, StepInfo
from .result import Result
from .rounds import Round
from .tracking import BestTracker, Recorder, resolve_seeds, restart_latents, stack_latents

#: state-0 entries that are latent vectors (PULSE's sphere applies to them, not to noise maps)
LATENT_VECTOR_KEYS = ("z", "ws", "v")


def latent_constraints(config: CSGMConfig, keys: Sequence[str]) -> dict[str, list[Constraint]]:
    """The feasible set of CSGM's latents: PULSE's sphere on latent vectors, then the l2 ball."""
    out: dict[str, list[Constraint]] = {}
    for k in keys:
        sets: list[Constraint] = [Sphere()] if config.sphere and k in LATENT_VECTOR_KEYS else []
        if config.latent_radius is not None:
            sets.append(L2Ball(config.latent_radius))
        out[k] = sets
    return out


#: rows of one scoring pass of :func:`screened_starts` (candidates of every image together)
SCREEN_ROWS = 256


@torch.no_grad()
def screened_starts(generator: LayeredGenerator, y: torch.Tensor, operator: Operator, seeds: Sequence[int],
                    restarts: int, screen: int, fidelity: DataFidelity | None = None) -> State:
    """The ``restarts`` best of ``screen`` random starts per image: ``[B * restarts, ...]``.

    Image ``i``'s candidates are the starts of :func:`~ilo.solvers.tracking.stack_latents`
    (start ``r`` from the stream ``(seeds[i], "restart", r)``, ``r < screen``), each scored by its
    measurement loss (or ``fidelity``) at ``G(z)`` without gradient; the ``restarts`` lowest are
    returned, lowest first. Drawn and scored in passes of at most :data:`SCREEN_ROWS` rows, and the
    chosen ones drawn again from their streams: memory holds one pass, not every candidate (a
    StyleGAN-2 start carries its noise maps).
    """
    B, fid = y.shape[0], fidelity or MeasurementMSE()
    per_pass = max(1, SCREEN_ROWS // B)
    scores = []
    for j0 in range(0, screen, per_pass):
        c = min(per_pass, screen - j0)
        x = generator(restart_latents(generator, [(s, r) for s in seeds for r in range(j0, j0 + c)]))
        loss = fid.batch_repeat(c)(x, y.repeat_interleave(c, 0), operator.batch_repeat(c))
        scores.append(loss.view(B, c).cpu())
    best = torch.cat(scores, 1).argsort(dim=1, stable=True)[:, :restarts]  # [B, restarts]
    return restart_latents(generator, [(s, int(r)) for s, row in zip(seeds, best) for r in row])


def csgm(
    y: torch.Tensor,
    operator: Operator,
    generator: LayeredGenerator,
    config: CSGMConfig = CSGMConfig(),  # noqa: B008 - frozen dataclass, so one shared default is safe
    *,
    seeds: int | Sequence[int] | None = 0,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
    fidelity: DataFidelity | None = None,
    init: State | None = None,
    _recorder: Recorder | None = None,
) -> Result:
    """CSGM (Bora et al. 2017): ``min_z ||A G(z) - y||^2`` by Adam from several random starts.

    The ``restarts`` starts of every image run as one batch (with ``config.screen``, the best
    of that many random starts by their measurement loss: :func:`screened_starts`); per image the restart whose best
    iterate has the lowest measurement loss is returned. With ``config.patience`` the run stops
    early once every image's best loss has stalled (:class:`CSGMConfig`); ``Result.steps`` is
    the number of steps run. Image ``i`` draws its starts from the
    streams ``(seeds[i], "restart", r)`` and its SNA noise from ``(seeds[i], "sna", 0, restart)`` (ILO's rounds: ``(seeds[i], "sna", 1)``)
    (:mod:`ilo.rng`), so its result does not depend on the batch.

    Args:
        y: observations ``[B, ...]`` from ``operator``.
        operator: the forward operator (simulates ``y`` and defines the measurement loss).
        generator: a layered generator; only its input latent (layer 0) is optimised.
        fidelity: the data-fidelity term of the objective (default: the measurement loss).
        init: a latent state ``[B, ...]`` every restart of image ``i`` starts from (row ``i``)
            instead of the random starts, e.g. to refine a solution on more measurements.
    Returns:
        :class:`Result` with ``layer = 0`` and ``latents`` the selected latent state.
    """
    B, R = y.shape[0], config.restarts
    seeds_ = resolve_seeds(seeds, B)
    rec = _recorder or Recorder(config.steps, "csgm", progress, callback, B, y.device)
    y_rep, op_rep = y.repeat_interleave(R, 0), operator.batch_repeat(R)
    fid = fidelity.batch_repeat(R) if fidelity is not None else None
    objective = Objective(config.loss, op_rep, [stream(s, "sna", 0, r) for s in seeds_ for r in range(R)], fid)
    if init is not None:
        start = {k: v.detach().repeat_interleave(R, 0).clone() for k, v in init.items()}
    elif config.screen > R:
        start = screened_starts(generator, y, operator, seeds_, R, config.screen, fidelity)
    else:
        start = stack_latents(generator, seeds_, R)  # [B * R, ...]
    keys = config.keys if config.keys is not None else generator.trainable_keys(0)
    missing = [k for k in keys if k not in start]
    if missing:
        raise ValueError(f"latent state has no entries {missing}; it has {sorted(start)}")
    params = {k: v for k, v in start.items() if k in keys}
    fixed = {k: v for k, v in start.items() if k not in keys}
    tracker = BestTracker(B * R, y.device)  # per restart, with its latents
    rnd = Round(render=generator, objective=lambda x, s, t: objective(x, y_rep, s, t), steps=config.steps, lr=config.lr,
                constraints=latent_constraints(config, keys), schedule=config.schedule,
                measure=lambda x: op_rep.measurement_loss(x, y_rep))
    rows = torch.arange(B, device=y.device) * R
    plateau = Plateau(config.patience, config.tolerance) if config.patience > 0 else None

    def offer(meas, x):
        tracker.update(meas, x, 0, {**fixed, **params})
        best, idx = meas.view(B, R).min(1)
        rec.track(best, x[rows + idx], 0)

    def on_step(t, obj, meas, x) -> bool:
        offer(meas, x)
        rec(0, 0, obj.view(B, R).min(1).values, meas.view(B, R).min(1).values, x)
        return plateau is not None and plateau(tracker.loss.view(B, R).min(1).values)

    rnd.run(params, fixed, on_step)
    with torch.no_grad():  # the last update was never evaluated
        _, meas, x = rnd.evaluate(params, fixed)
        offer(meas, x)
    if _recorder is None:
        rec.close()
    assert tracker.image is not None and tracker.state is not None  # offer() above recorded an iterate and its state
    pick = rows + tracker.loss.view(B, R).argmin(1)
    return Result(
        image=tracker.image[pick],
        latents={k: v[pick] for k, v in tracker.state.items()},
        layer=0,
        measurement_loss=tracker.loss[pick],
        history=rec.history,
        method="csgm",
        config=config.to_dict(),
        seconds=rec.timer(),
    )
