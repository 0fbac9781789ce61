"""The self-tuned presets' budget: half the round steps after the CSGM method's full-budget stage."""

import pytest
import torch

from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.solvers import preset_for
from ilo.solvers.ilo import csgm_stage
from ilo.solvers.presets import SELF_TUNED_ROUNDS, default_config, self_tuned_budget

SHAPE = (3, 16, 16)
OPS = {"inpaint": Inpainting.random(SHAPE, 0.1, torch.Generator().manual_seed(0)), "denoise": Denoising(SHAPE, 25),
       "cs": CompressedSensing(SHAPE, 0.1, torch.Generator().manual_seed(0)), "superres": SuperResolution(SHAPE, 4)}


@pytest.mark.parametrize("task", list(OPS))
@pytest.mark.parametrize("steps", [600, 90, 2, 1])
def test_rounds_halved_where_the_stage_is_the_csgm_method(tiny_dcgan, task, steps):
    op = OPS[task]
    paper = default_config("ilo", tiny_dcgan, task, total_steps=steps, level=op.level)
    tuned = preset_for("ilo", tiny_dcgan, op, total_steps=steps)
    assert preset_for("ilo", tiny_dcgan, op, total_steps=steps, extend=False) == paper  # the paper's ILO as before
    assert tuned.total_steps == paper.total_steps == steps
    if op.self_tuning_csgm == "method":
        assert [r.steps for r in tuned.rounds] == [min(r.steps, max(1, round(r.steps * SELF_TUNED_ROUNDS)))
                                                   for r in paper.rounds]
        assert (tuned.rounds != paper.rounds) == any(r.steps >= 2 for r in paper.rounds)  # 1-step rounds stay
    else:  # super-resolution: ILO's own CSGM stage, the paper's split (restarts, loss: test_presets_own_stage.py)
        assert tuned.rounds == paper.rounds and tuned.csgm.steps == paper.csgm.steps
    # the stage the self-tuning runs is the CSGM method at the whole budget either way
    if op.self_tuning_csgm == "method":
        from dataclasses import replace

        assert csgm_stage(replace(tuned, selection=replace(tuned.selection, csgm="method")), tiny_dcgan).steps == steps


def test_self_tuned_budget_keeps_every_other_setting(tiny_dcgan):
    cfg = default_config("ilo", tiny_dcgan, "cs", total_steps=600, level=0.1)
    out = self_tuned_budget(cfg, 0.25)
    assert [r.steps for r in out.rounds] == [33, 33, 34] and out.csgm.steps == 600 - 100
    assert [(r.layer, r.lr, r.radius) for r in out.rounds] == [(r.layer, r.lr, r.radius) for r in cfg.rounds]
    assert out.loss == cfg.loss and out.csgm.lr == cfg.csgm.lr
    assert self_tuned_budget(cfg, 1.0) == cfg


@pytest.mark.parametrize("steps", range(1, 12))
def test_tiny_budgets_stay_valid(tiny_dcgan, steps):
    """A round never gets more steps than it had (a 0-step round stays 0), so the CSGM stage never
    goes negative and the budget is kept (``ilo solve --steps 2``)."""
    cfg = default_config("ilo", tiny_dcgan, "inpaint", total_steps=steps, level=0.1)
    out = self_tuned_budget(cfg)
    assert out.total_steps == cfg.total_steps and out.csgm.steps >= cfg.csgm.steps >= 0
    assert all(0 <= r.steps <= q.steps for r, q in zip(out.rounds, cfg.rounds))
