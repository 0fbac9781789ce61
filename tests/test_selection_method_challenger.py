"""The CSGM method on all measurements as a challenger under ``"method"``
(``SelectionConfig.method_challenger``, issue 15 item 4): it only adds a candidate, is exactly
what the CSGM method alone returns, moves the choice only where its held-out estimate wins, and
stays out of the run's history."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import Inpainting
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned
from ilo.solvers.csgm import csgm
from ilo.solvers.ilo import csgm_stage
from ilo.solvers.selection import paste_observed
from _images import far, in_range

SHAPE = (3, 16, 16)
SEEDS = [4, 9]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**selection) -> ILOConfig:
    """Random inpainting at 40 % on 16 x 16 holds out ~15 pixels per image: the challenger runs
    from 5 units here, under the plain rule from 5 (the defaults, 20 and 40, in the last tests)."""
    base = ILOConfig(csgm=CSGMConfig(steps=10, restarts=2, lr=0.05), rounds=(RoundConfig(1, 10, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, csgm="method", **{"csgm_min_units": 5, "method_challenger_units": 5, **selection}))


def _op() -> Inpainting:
    return Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0))



@pytest.mark.parametrize("where", ["in range", "far"])
def test_the_challenger_adds_the_csgm_methods_own_solution_and_moves_only_its_choices(tiny_dcgan, where):
    op = _op()
    x = (in_range(tiny_dcgan)
         if where == "in range" else far())
    y = op(x)
    steps_plain: list = []
    steps: list = []
    plain = solve(y, op, tiny_dcgan, "ilo", _cfg(method_challenger=False), seeds=SEEDS, callback=steps_plain.append)
    cfg = _cfg(method_challenger_z=0.0)
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=SEEDS, callback=steps.append)
    sel, ch = res.selection, res.selection["csgm_challenger"]
    # one more candidate, the others those of plain "method" up to float rounding (its stage ran in
    # one batch with the challenger; its refit included)
    assert sel["candidates"] == plain.selection["candidates"] + ["csgm-method"]
    assert sel["csgm_candidate"] == "csgm-method" and sel["csgm_refit"] == plain.selection["csgm_refit"]
    torch.testing.assert_close(res.candidates[:-1], plain.candidates, rtol=0, atol=1e-5, equal_nan=True)
    # the challenger is the CSGM method on all measurements, continued on them where taken and better
    stage = csgm_stage(cfg, tiny_dcgan)
    alone = solve(y, op, tiny_dcgan, "csgm", stage, seeds=SEEDS)
    more = csgm(y, op, tiny_dcgan, replace(stage, restarts=1), seeds=SEEDS, init=alone.latents)
    cont = torch.tensor(ch["continued"])
    torch.testing.assert_close(res.candidates[-1], torch.where(cont.view(-1, 1, 1, 1), more.image, alone.image),
                               rtol=0, atol=1e-5)
    assert ch["run"] and ch["basin"] == "all" and sel["challenger_steps"] == cfg.total_steps
    for b, taken in enumerate(ch["taken"]):
        assert taken == (ch["estimated_mse"][b] < ch["choice_estimated_mse"][b])  # margin 0, enough units
        assert sel["choice"][b] == ("csgm-method" if taken else plain.selection["choice"][b])
        assert cont[b] <= taken  # continued only where taken
        expected = paste_observed(res.candidates[-1] if taken else plain.image, y, op)[b]
        torch.testing.assert_close(res.image[b], expected, rtol=0, atol=1e-5)
    assert len(steps) == len(steps_plain)  # the challenger is not in the history
    if where == "in range":
        assert any(ch["taken"])
    else:
        assert not any(ch["taken"])
        torch.testing.assert_close(res.image, plain.image, rtol=0, atol=1e-5)
    # the history is the shared stage's (its first copy of the batch), then the rounds'
    meas = lambda r: torch.tensor([h["measurement_loss"] for h in r.history])
    torch.testing.assert_close(meas(res), meas(plain), rtol=1e-4, atol=1e-7)


def test_on_too_few_held_out_units_it_is_not_run_and_it_is_recorded(tiny_dcgan):
    """~15 held-out pixels per image, under the default ``csgm_min_units`` (20): not run, the
    result is plain ``"method"``'s bit for bit."""
    assert SelectionConfig().method_challenger and SelectionConfig().csgm_min_units == 20
    op = _op()
    y = op(in_range(tiny_dcgan))
    res = solve(y, op, tiny_dcgan, "ilo", _cfg(csgm_min_units=20), seeds=SEEDS)
    plain = solve(y, op, tiny_dcgan, "ilo", _cfg(method_challenger=False), seeds=SEEDS)
    ch = res.config["selection"]["csgm_challenger"]
    assert not ch["run"] and all(5 <= n < 20 for n in ch["units"])
    assert res.selection["candidates"] == plain.selection["candidates"] and torch.equal(res.image, plain.image)
    assert res.config["selection"]["csgm"] == "method"
    assert res.config["selection"]["settings"]["method_challenger"] is True
    assert res.config["selection"]["settings"]["csgm"] == "method"  # resolved, not "auto"


def test_below_the_units_threshold_only_a_clear_ratio_takes_it():
    """Two images, 16 held-out low-resolution pixels each; the challenger's estimate is 1/25 of
    the choice's on image 0 and 1/1.56 on image 1. The plain rule (``z`` 0) takes it on both;
    below ``sparse_below`` units only where the ratio reaches ``ratio`` (4)."""
    import ilo.solvers.selection as S
    from ilo.operators import SuperResolution

    y = torch.zeros(2, 1, 4, 4)
    val = S.HeldOut(SuperResolution((1, 16, 16), 4), torch.ones(1, 1, 4, 4))
    units = S.held_out_units(y)
    cands_fit = torch.full((1, 2, 1, 16, 16), 0.1)
    chall = torch.stack([torch.full((1, 16, 16), 0.02), torch.full((1, 16, 16), 0.08)])
    est = torch.stack([val.measurement_loss(c, y) for c in cands_fit])
    choice = torch.zeros(2, dtype=torch.long)
    taken = lambda **kw: S.challenge_csgm(chall, choice, cands_fit, est, None, None, val, y, units, 0.0, **kw)[4]
    assert taken()["taken"] == [True, True]
    assert taken(sparse_below=16, ratio=4.0)["taken"] == [True, True]  # 16 units: not below
    rec = taken(sparse_below=17, ratio=4.0)
    assert rec["taken"] == [True, False] and rec["ratio"] == 4.0 and rec["sparse_below"] == 17
    assert taken(sparse_below=17, ratio=30.0)["taken"] == [False, False]
    with pytest.raises(ValueError):
        SelectionConfig(method_challenger_ratio=0.5)
    with pytest.raises(ValueError):
        SelectionConfig(method_challenger_z=-1.0)


def test_its_margin_is_method_challenger_z_not_csgm_z(tiny_dcgan):
    op = _op()
    y = op(in_range(tiny_dcgan))
    free = solve(y, op, tiny_dcgan, "ilo", _cfg(method_challenger_z=0.0, csgm_z=1e6), seeds=SEEDS)
    held = solve(y, op, tiny_dcgan, "ilo", _cfg(method_challenger_z=1e6, csgm_z=0.0), seeds=SEEDS)
    assert any(free.selection["csgm_challenger"]["taken"])
    assert not any(held.selection["csgm_challenger"]["taken"]) and "csgm-method" not in held.selection["choice"]
