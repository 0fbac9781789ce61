"""Super-resolution's CSGM challenger on all measurements (``SelectionConfig.csgm_basin == "all"``,
the default): its solution is the CSGM method's own, scored by the held-out error of its
continuation on the fit part (``csgm_probe``), output as is (or continued on all measurements,
``csgm_continue``) where taken, and nothing changes where it is not run or not taken."""

from dataclasses import replace

import pytest
import torch

import ilo.solvers.selection as S
from ilo.operators import SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned
from _images import far, in_range

SHAPE = (3, 16, 16)
SEEDS = [4, 9]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**selection) -> ILOConfig:
    """The challenger at x2 on 16 pixels (~10 held-out low-resolution pixels: allowed from 5)."""
    base = ILOConfig(csgm=CSGMConfig(steps=10, restarts=2, lr=0.05), rounds=(RoundConfig(1, 10, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, **{"csgm": "challenge", "csgm_min_units": 5, **selection}))




def _method(y, op, G, cfg):
    """What a user running the CSGM method at the challenger's settings gets on all of ``y``."""
    from ilo.solvers.ilo import csgm_stage

    stage = csgm_stage(cfg, G)
    return stage, solve(y, op, G, "csgm", stage, seeds=SEEDS)


def test_default_is_the_all_measurement_challenger():
    sel = SelectionConfig()
    assert (sel.csgm_basin, sel.csgm_probe, sel.csgm_continue) == ("all", 0.25, 1.0)


def test_in_range_the_csgm_method_on_all_measurements_is_output_where_taken(tiny_dcgan):
    """With ``csgm_continue = 0`` the image output where the challenger is taken is the CSGM
    method's solution on all measurements, bit for bit (no refit on the fit part's basin)."""
    op = SuperResolution(SHAPE, 2)
    y = op(in_range(tiny_dcgan))
    cfg = _cfg(csgm_continue=0.0)
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=SEEDS)
    _, method = _method(y, op, tiny_dcgan, cfg)
    ch = res.selection["csgm_challenger"]
    assert ch["run"] and ch["basin"] == "all" and ch["taken"] == [True, True]
    assert res.selection["choice"] == ["csgm-method"] * 2 and res.selection["csgm_refit"] == [False, False]
    assert torch.equal(res.candidates[-1], method.image)
    assert torch.equal(res.image, method.image)
    # the choice it replaced is named, and is a candidate of the other rows
    assert all(n in res.selection["candidates"][:-1] for n in ch["against"])


def test_the_held_out_estimate_is_that_of_the_continuation_on_the_fit_part(tiny_dcgan):
    """The challenger's recorded estimate is the held-out error of CSGM continued from its
    solution on the fit part for ``csgm_probe`` of its steps, one restart, not of the solution
    itself (which has seen the held-out measurements)."""
    from ilo.solvers.csgm import csgm

    op = SuperResolution(SHAPE, 2)
    y = op(in_range(tiny_dcgan))
    cfg = _cfg(csgm_probe=0.5)
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=SEEDS)
    stage, method = _method(y, op, tiny_dcgan, cfg)
    fit, y_fit, val, _ = S.split(op, y, SEEDS, cfg.selection)
    probe = csgm(y_fit, fit, tiny_dcgan, replace(stage, steps=round(stage.steps * 0.5), restarts=1), seeds=SEEDS,
                 init=method.latents)
    ch = res.selection["csgm_challenger"]
    assert ch["probe_steps"] == round(cfg.total_steps * 0.5)
    assert (ch["probe_share"], ch["continue_share"]) == (0.5, 1.0)
    assert res.config["selection"]["csgm_challenger"] == ch  # config.json's selection record holds it too
    expected = val.measurement_loss(probe.image, y)
    torch.testing.assert_close(torch.tensor(ch["estimated_mse"]), expected, rtol=1e-5, atol=0)
    assert not torch.allclose(expected, val.measurement_loss(method.image, y), rtol=1e-3, atol=0)


def test_where_taken_it_continues_on_all_measurements_only_if_that_fits_them_better(tiny_dcgan):
    from ilo.solvers.csgm import csgm

    op = SuperResolution(SHAPE, 2)
    y = op(in_range(tiny_dcgan))
    cfg = _cfg()  # csgm_continue = 1: the whole budget again, one restart
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=SEEDS)
    stage, method = _method(y, op, tiny_dcgan, cfg)
    more = csgm(y, op, tiny_dcgan, replace(stage, restarts=1), seeds=SEEDS, init=method.latents)
    ch, refit = res.selection["csgm_challenger"], torch.tensor(res.selection["csgm_refit"])
    assert ch["taken"] == [True, True]
    better = op.measurement_loss(more.image, y) < op.measurement_loss(method.image, y)
    assert refit.tolist() == better.tolist()
    expected = torch.where(refit.view(-1, 1, 1, 1), more.image, method.image)
    torch.testing.assert_close(res.image, expected, rtol=0, atol=1e-6)
    assert bool((op.measurement_loss(res.image, y) <= op.measurement_loss(method.image, y)).all())


@pytest.mark.parametrize("where", ["far", "few units"])
def test_not_taken_or_not_run_the_output_is_unchanged_bit_for_bit(tiny_dcgan, where):
    """Out of the generator's range the challenger loses; with fewer held-out units than
    ``csgm_min_units`` it is not run. Either way the image is that of ILO's own candidates
    (``csgm = "own"``) and of session 8's fit-part challenger, bit for bit."""
    op = SuperResolution(SHAPE, 2)
    y = op(far() if where == "far" else in_range(tiny_dcgan))
    few = {} if where == "far" else {"csgm_min_units": 20}
    res = solve(y, op, tiny_dcgan, "ilo", _cfg(**few), seeds=SEEDS)
    own = solve(y, op, tiny_dcgan, "ilo", _cfg(csgm="own"), seeds=SEEDS)
    ch = res.selection["csgm_challenger"]
    if where == "far":
        assert ch["run"] and ch["taken"] == [False, False] and ch["basin"] == "all"
        torch.testing.assert_close(res.candidates[:-1], own.candidates, rtol=0, atol=0, equal_nan=True)
    else:
        assert not ch["run"] and all(n < 20 for n in ch["units"]) and "challenger_steps" not in res.selection
        fit = solve(y, op, tiny_dcgan, "ilo", _cfg(csgm_basin="fit", **few), seeds=SEEDS)
        assert torch.equal(res.image, fit.image)
    assert res.selection["choice"] == own.selection["choice"]
    assert torch.equal(res.image, own.image)


@pytest.mark.parametrize("bad", [{"csgm_basin": "both"}, {"csgm_probe": 0.0}, {"csgm_probe": 1.5},
                                 {"csgm_continue": -0.1}, {"csgm_continue": 2.0}])
def test_basin_config_validates(bad):
    with pytest.raises(ValueError) as e:
        SelectionConfig(**bad)
    assert "--" not in str(e.value) and "\n" not in str(e.value)
