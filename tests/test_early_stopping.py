"""CSGM's early stopping (``CSGMConfig.patience``): when it stops, and that it changes nothing else."""

import pytest
import torch

from ilo.operators import Inpainting
from ilo.solvers import CSGMConfig, csgm
from ilo.solvers.optim import Plateau

SHAPE = (3, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: thousands of tiny ops run faster on one thread


def _problem(G):
    x = G(G.sample_latent(2, torch.Generator().manual_seed(5))).detach()
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    return op(x), op


def _first_stall(best: torch.Tensor, patience: int, tolerance: float) -> int | None:
    """The rule written out on a full run's per-step best losses ``[T, B]``: the first step ``t``
    at which every image's best is within ``tolerance`` (relative) of its best ``patience`` steps earlier."""
    for t in range(patience, best.shape[0]):
        if all(best[t, b] >= (1 - tolerance) * best[t - patience, b] for b in range(best.shape[1])):
            return t
    return None


def test_plateau_stops_on_a_flat_loss_and_not_on_an_improving_one():
    flat = Plateau(patience=3, tolerance=1e-3)
    assert [flat(torch.tensor([1.0, 2.0])) for _ in range(5)] == [False, False, False, True, True]
    improving = Plateau(patience=3, tolerance=1e-3)
    assert not any(improving(torch.tensor([0.99**t, 2 * 0.99**t])) for t in range(50))  # 3 % per 3 steps
    # one image still improving keeps the batch going; once it stalls too, it stops
    one = Plateau(patience=2, tolerance=0.01)
    said = [one(torch.tensor([1.0, 1.0 / (t + 1) if t < 4 else 0.25])) for t in range(8)]
    assert said == [False, False, False, False, False, True, True, True]  # stalled from t = 5: 0.25 at t = 3 and 5


def test_plateau_rejects_bad_settings():
    for patience, tolerance in ((0, 0.1), (3, -0.1), (3, 1.0)):
        with pytest.raises(ValueError):
            Plateau(patience, tolerance)
    with pytest.raises(ValueError):
        CSGMConfig(patience=-1)
    with pytest.raises(ValueError):
        CSGMConfig(patience=5, tolerance=1.5)


def _run(G, y, op, **kw):
    best = []
    res = csgm(y, op, G, CSGMConfig(steps=60, restarts=2, lr=0.2, **kw), seeds=[3, 8],
               callback=lambda info: best.append(info.best_loss.clone()))
    return res, torch.stack(best)


def test_off_and_never_firing_are_bit_identical(tiny_dcgan):
    y, op = _problem(tiny_dcgan)
    off, _ = _run(tiny_dcgan, y, op)
    never, _ = _run(tiny_dcgan, y, op, patience=100)  # longer than the run: never fires
    assert torch.equal(off.image, never.image) and torch.equal(off.measurement_loss, never.measurement_loss)
    assert off.history == [{**h, "time": g["time"]} for h, g in zip(never.history, off.history)]
    assert len(off.history) == 60


@pytest.mark.parametrize("patience, tolerance", [(5, 0.05), (3, 0.01)])
def test_stops_where_the_rule_says_and_is_a_prefix_of_the_full_run(tiny_dcgan, patience, tolerance):
    y, op = _problem(tiny_dcgan)
    full, best = _run(tiny_dcgan, y, op)
    stop = _first_stall(best, patience, tolerance)
    assert stop is not None and stop + 1 < 60  # the loss flattens within this run
    assert _first_stall(best[:stop], patience, tolerance) is None  # ... and improved before
    early, best_early = _run(tiny_dcgan, y, op, patience=patience, tolerance=tolerance)
    assert early.steps == len(early.history) == stop + 1  # the steps run are the steps reported
    assert torch.equal(best_early, best[: stop + 1])  # the same iterates up to the stop
    assert [h["measurement_loss"] for h in early.history] == [h["measurement_loss"] for h in full.history[: stop + 1]]
    # the result is the best iterate seen, the one update after the last recorded step included
    assert (early.measurement_loss <= best[stop]).all() and (early.measurement_loss >= full.measurement_loss).all()
    torch.testing.assert_close(op.measurement_loss(early.image, y), early.measurement_loss)


def test_a_still_improving_run_is_not_stopped(tiny_dcgan):
    y, op = _problem(tiny_dcgan)
    _, best = _run(tiny_dcgan, y, op)
    drop = 1 - best[10:] / best[:-10]  # relative improvement over 10 steps, per image
    tol = float(drop.max(1).values.min()) * 0.5  # below the batch's improvement at every step
    assert _first_stall(best, 10, tol) is None
    res, _ = _run(tiny_dcgan, y, op, patience=10, tolerance=tol)
    assert res.steps == 60


def test_the_self_tuned_stage_stops_as_ilos_own_stage_says_and_reports_the_steps_run(tiny_dcgan):
    """Under ``SelectionConfig.csgm == "method"`` the stage is the CSGM method's preset with the
    early stopping of ``ILOConfig.csgm``; the record and the history count the steps it ran."""
    from dataclasses import replace

    from ilo.solvers import ILOConfig, RoundConfig, solve
    from ilo.solvers.config import self_tuned
    from ilo.solvers.ilo import csgm_stage
    from ilo.solvers.selection import split

    y, op = _problem(tiny_dcgan)
    base = ILOConfig(csgm=CSGMConfig(steps=40, restarts=2, lr=0.05, patience=3, tolerance=0.05),
                     rounds=(RoundConfig(1, 20, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    stage = csgm_stage(cfg, tiny_dcgan)
    assert (stage.patience, stage.tolerance, stage.steps, stage.lr) == (3, 0.05, 60, 0.2)
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    fit, y_fit, _, _ = split(op, y, [4, 9], cfg.selection)
    alone = solve(y_fit, fit, tiny_dcgan, "csgm", stage, seeds=[4, 9])
    assert alone.steps < 60  # it stopped early
    assert res.selection["csgm_steps"] == alone.steps and res.steps == alone.steps + 20
    assert res.selection["csgm_config"]["patience"] == 3
    off = solve(y, op, tiny_dcgan, "ilo", replace(cfg, csgm=replace(cfg.csgm, patience=0)), seeds=[4, 9])
    assert off.selection["csgm_steps"] == 60
