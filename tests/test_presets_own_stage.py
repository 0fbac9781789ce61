"""The self-tuned DCGAN preset whose CSGM stage is ILO's own (super-resolution): rounds without
the perceptual term, the stage with half the restarts, the CSGM method that challenges the choice
with all of them; the other tasks and the paper's ILO keep theirs."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import Inpainting, SuperResolution
from ilo.solvers import default_config, preset_for
from ilo.solvers.ilo import csgm_stage
from ilo.solvers.presets import PERCEPTUAL_WEIGHT, self_tuned_own_stage

SHAPE = (3, 16, 16)


@pytest.mark.parametrize("restarts,expected", [(4, 2), (2, 1), (1, 1)])
def test_superres_rounds_lose_the_perceptual_term_and_half_the_restarts(tiny_dcgan, restarts, expected):
    op = SuperResolution(SHAPE, 4)
    paper = default_config("ilo", tiny_dcgan, "superres", total_steps=60, restarts=restarts, level=op.level)
    cfg = preset_for("ilo", tiny_dcgan, op, total_steps=60, restarts=restarts)
    assert cfg.selection is not None and cfg.deviation is not None  # self-tuned
    assert paper.loss.perceptual == PERCEPTUAL_WEIGHT and cfg.loss.perceptual == 0
    assert cfg.loss.mse == paper.loss.mse and cfg.csgm.loss == replace(paper.csgm.loss, perceptual=0.0)  # nor ILO's CSGM stage
    assert cfg.csgm.restarts == expected and cfg.csgm.steps == paper.csgm.steps
    assert cfg.rounds == paper.rounds and cfg.total_steps == 60
    # the CSGM method that challenges the choice keeps the budget's restarts
    assert op.self_tuning_csgm == "challenge" and cfg.selection.csgm_restarts == restarts
    assert csgm_stage(replace(cfg, selection=replace(cfg.selection, csgm="challenge")), tiny_dcgan).restarts == restarts
    # the paper's ILO (no self-tuning) is unchanged
    assert preset_for("ilo", tiny_dcgan, op, total_steps=60, restarts=restarts, extend=False) == paper


def test_other_tasks_and_families_are_unchanged(tiny_dcgan):
    op = Inpainting.random(SHAPE, 0.3, torch.Generator().manual_seed(0))
    cfg = preset_for("ilo", tiny_dcgan, op, total_steps=60)
    assert cfg.csgm.restarts == 4  # the CSGM-method stage's tasks: half the round steps only
    paper = default_config("ilo", tiny_dcgan, "superres", total_steps=60)
    assert self_tuned_own_stage(paper, "stylegan2") is paper
    assert self_tuned_own_stage(replace(paper, loss=replace(paper.loss, perceptual=0.0)), "dcgan").loss.perceptual == 0


def test_the_cost_benchmark_switches_the_csgm_stage(tiny_dcgan):
    from ilo.bench.solve_cost import variant

    cfg = preset_for("ilo", tiny_dcgan, SuperResolution(SHAPE, 4), total_steps=60)
    on_ilo, _ = variant("csgm:own+csgm-z:1.5")
    changed = on_ilo(cfg)
    assert (changed.selection.csgm, changed.selection.csgm_z) == ("own", 1.5)
    assert replace(changed, selection=cfg.selection) == cfg
