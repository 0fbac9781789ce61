"""The CSGM method's solution as a challenger of super-resolution's held-out choice
(``SelectionConfig.csgm == "challenge"``): taken in range, where it is far better than ILO's own
stages, never on a face outside the generator's range, and only by its margin."""

from dataclasses import replace

import pytest
import torch

import ilo.solvers.selection as S
from ilo import metrics as M
from ilo.operators import Denoising, SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned
from _images import far, in_range

SHAPE = (3, 16, 16)
SEEDS = [4, 9]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(csgm: str, **selection) -> ILOConfig:
    """x2 on 16 pixels holds out ~10 low-resolution pixels: below the default ``csgm_min_units``,
    so the challenger is allowed from 5 here unless ``selection`` says otherwise."""
    base = ILOConfig(csgm=CSGMConfig(steps=10, restarts=2, lr=0.05), rounds=(RoundConfig(1, 10, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, csgm=csgm, **{"csgm_min_units": 5, **selection}))




def test_in_range_the_csgm_challenger_is_taken_and_refit(tiny_dcgan):
    """Session 8's challenger, on the fit part (``csgm_basin="fit"``; the default's is in
    tests/test_selection_sr_basin.py)."""
    from ilo.solvers.csgm import csgm
    from ilo.solvers.ilo import csgm_stage

    op = SuperResolution(SHAPE, 2)
    x = in_range(tiny_dcgan)
    y = op(x)
    cfg = _cfg("challenge", csgm_basin="fit")
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=SEEDS)
    own = solve(y, op, tiny_dcgan, "ilo", _cfg("own"), seeds=SEEDS)
    sel = res.selection
    assert sel["csgm_candidate"] == "csgm-method" == sel["candidates"][-1]
    assert all(5 <= n < SelectionConfig().csgm_min_units for n in sel["csgm_challenger"]["units"])
    assert sel["choice"] == ["csgm-method"] * 2 and sel["csgm_challenger"]["taken"] == [True, True]
    # the candidates before it are "own"'s: the challenger only adds a row
    assert sel["candidates"][:-1] == own.selection["candidates"]
    torch.testing.assert_close(res.candidates[:-1], own.candidates, rtol=0, atol=0, equal_nan=True)
    # the CSGM method on the fit part, then refit on all measurements where it fits them better
    fit, y_fit, _, _ = S.split(op, y, SEEDS, cfg.selection)
    stage = csgm_stage(cfg, tiny_dcgan)
    alone = solve(y_fit, fit, tiny_dcgan, "csgm", stage, seeds=SEEDS)
    more = csgm(y, op, tiny_dcgan, replace(stage, steps=round(stage.steps * cfg.selection.csgm_refit), restarts=1),
                seeds=SEEDS, init=alone.latents)
    refit = torch.tensor(sel["csgm_refit"])
    expected = torch.where(refit.view(-1, 1, 1, 1), more.image, alone.image)
    torch.testing.assert_close(res.image, expected, rtol=0, atol=1e-6)
    assert sel["challenger_steps"] == cfg.total_steps and sel["csgm_steps"] == cfg.csgm.steps
    assert bool((M.psnr(res.image, x) > M.psnr(own.image, x)).all())  # better than ILO's own stages here


@pytest.mark.parametrize("where", ["far", "few units"])
def test_out_of_range_or_on_few_units_the_challenger_is_not_taken_and_changes_nothing(tiny_dcgan, where):
    """Out of the generator's range CSGM's held-out error is far above the choice's; in range, with
    fewer held-out units than ``csgm_min_units`` (the default's 20 here) on every image, the CSGM
    method is not even run."""
    op = SuperResolution(SHAPE, 2)
    y = op(far() if where == "far" else in_range(tiny_dcgan))
    res = solve(y, op, tiny_dcgan, "ilo", _cfg("challenge", **({} if where == "far" else {"csgm_min_units": 20})),
                seeds=SEEDS)
    own = solve(y, op, tiny_dcgan, "ilo", _cfg("own"), seeds=SEEDS)
    sel, ch = res.selection, res.selection["csgm_challenger"]
    assert "csgm-method" not in sel["choice"]
    if where == "far":
        assert ch["run"] and ch["taken"] == [False, False]
        assert all(c > 5 * e for c, e in zip(ch["estimated_mse"], ch["choice_estimated_mse"]))  # CSGM is far off
    else:
        assert not ch["run"] and all(5 <= n < 20 for n in ch["units"])
        assert "challenger_steps" not in sel and sel["candidates"] == own.selection["candidates"]
    assert sel["choice"] == own.selection["choice"]
    assert torch.equal(res.image, own.image)


def test_the_challenger_must_beat_the_choice_by_its_margin():
    """Per image a choice and a challenger on 16 held-out low-resolution pixels: the challenger's
    mean held-out error is lower on both, but on image 1 its paired differences are noisy (a few
    units at one corner carry all of its advantage), so the margin keeps the choice there."""
    y = torch.zeros(2, 1, 4, 4)
    val = S.HeldOut(SuperResolution((1, 16, 16), 4), torch.ones(1, 1, 4, 4))
    units = S.held_out_units(y)
    # candidates are constant 16x16 images: the low-resolution residual of each pixel is the value
    choice_img = torch.full((2, 1, 16, 16), 0.1)
    chall = torch.full((2, 1, 16, 16), 0.05)
    chall[1] = 0.1
    chall[1, :, :4, :4] = 0.0  # exact at one corner, elsewhere as the choice
    cands_fit = choice_img[None]
    est = torch.stack([val.measurement_loss(c, y) for c in cands_fit])
    choice = torch.zeros(2, dtype=torch.long)
    for z, taken in ((1.5, [True, False]), (0.0, [True, True])):
        new, est2, se2, ok2, rec = S.challenge_csgm(chall, choice, cands_fit, est, None, None, val, y, units, z)
        assert rec["taken"] == taken and new.tolist() == [1 if t else 0 for t in taken]
        assert rec["units"] == [16, 16]
        assert S.challenge_csgm(chall, choice, cands_fit, est, None, None, val, y, units, z, 17)[4]["taken"] == [
            False, False]  # too few held-out units
        assert est2.shape == (2, 2) and se2 is None and ok2 is None
        assert rec["estimated_mse"][1] < rec["choice_estimated_mse"][1]  # lower on the mean, image 1 too


def test_challenge_config_validates(tiny_dcgan):
    dn = Denoising(SHAPE, sigma255=25)
    with pytest.raises(ValueError, match="SURE"):
        solve(dn(far()), dn, tiny_dcgan, "ilo", _cfg("challenge"), seeds=SEEDS)
    assert SelectionConfig(csgm="challenge", csgm_z=0.5, csgm_restarts=2).csgm_z == 0.5
    for bad in ({"csgm_z": -1.0}, {"csgm_restarts": 0}, {"csgm_min_units": 0}, {"csgm": "both"},
                {"csgm_share": 0.0}, {"csgm_share": 1.5}):
        with pytest.raises(ValueError):
            SelectionConfig(**bad)


def test_csgm_share_shortens_only_the_challenger(tiny_dcgan):
    """``csgm_share`` gives the CSGM method's run that share of ILO's budget; ILO's own stage and
    rounds, and so the candidates before the challenger, are those of the whole-budget run."""
    op = SuperResolution(SHAPE, 2)
    y = op(in_range(tiny_dcgan))
    full = solve(y, op, tiny_dcgan, "ilo", _cfg("challenge"), seeds=SEEDS)
    half = solve(y, op, tiny_dcgan, "ilo", _cfg("challenge", csgm_share=0.5), seeds=SEEDS)
    total = _cfg("challenge").total_steps
    assert full.selection["challenger_steps"] == total
    assert half.selection["challenger_steps"] == round(total * 0.5)
    torch.testing.assert_close(half.candidates[:-1], full.candidates[:-1], rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(half.candidates[-1], full.candidates[-1])


@pytest.mark.parametrize("where", ["in range", "far"])
def test_csgm_challenge_under_method_only_moves_the_choice_to_the_csgm_candidate(tiny_dcgan, where):
    """Under ``"method"`` with ``csgm_challenge`` the CSGM candidate (row 0) also challenges the
    choice at margin ``csgm_z``: the candidates are unchanged, and the choice differs from plain
    ``"method"``'s only where it was taken, and there it is the CSGM candidate."""
    op = SuperResolution(SHAPE, 2)
    y = op(in_range(tiny_dcgan) if where == "in range" else far())
    plain = solve(y, op, tiny_dcgan, "ilo", _cfg("method", method_challenger=False), seeds=SEEDS)
    res = solve(y, op, tiny_dcgan, "ilo", _cfg("method", csgm_challenge=True, method_challenger=False), seeds=SEEDS)
    ch = res.selection["csgm_challenger"]
    assert ch["run"] and "csgm_challenger" not in plain.selection
    assert res.selection["candidates"] == plain.selection["candidates"]
    for b, taken in enumerate(ch["taken"]):
        assert taken == (ch["estimated_mse"][b] < ch["choice_estimated_mse"][b])  # margin 0, enough units
        assert res.selection["choice"][b] == ("csgm" if taken else plain.selection["choice"][b])
        if not taken:
            torch.testing.assert_close(res.image[b], plain.image[b], rtol=0, atol=0)
    if where == "far":  # CSGM's held-out error is far above the choice's
        assert ch["taken"] == [False, False]
