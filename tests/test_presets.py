"""The preset table: ``solve(config=None)`` uses the operator's level, so the library default
equals the CLI default for every task and method."""

from __future__ import annotations

import pytest
import torch

import ilo.solvers as solvers
from ilo.operators import TASKS
from ilo.pipeline import ProblemSpec, build_problem, method_config
from ilo.solvers import PRESETS, preset_for
from ilo.solvers.presets import TaskPreset


def cli_defaults() -> dict:
    from ilo.cli.solve import solve

    return {p.name: p.default for p in solve.params}


def captured_config(monkeypatch, method, prob, G):
    """The config ``solve(..., config=None)`` hands to its solver (the solver itself is not run)."""
    seen = {}

    def fake(y, op, gen, config, **kw):
        seen["config"] = config
        raise StopIteration

    monkeypatch.setattr(solvers, "ilo" if method == "ilo" else "csgm", fake)
    with pytest.raises(StopIteration):
        solvers.solve(prob.y, prob.operator, G, method)
    return seen["config"]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("method", ["csgm", "csgm-mse-perceptual", "pulse", "ilo"])
def test_library_default_equals_cli_default(monkeypatch, tiny_dcgan, task, method):
    G = tiny_dcgan
    if method == "csgm-mse-perceptual" and TASKS[task].perceptual_target is None:
        pytest.skip("no perceptual target")
    d = cli_defaults()
    spec = ProblemSpec(task)  # the CLI's defaults: every level option unset
    prob = build_problem(spec, G, seed=d["seed"], truth=torch.zeros(1, *G.image_shape))
    cli_cfg = method_config(prob, G, method, total_steps=d["steps"], restarts=d["restarts"])
    assert captured_config(monkeypatch, method, prob, G) == cli_cfg == preset_for(method, G, prob.operator)


def test_the_level_reaches_the_preset(monkeypatch, tiny_dcgan):
    """The operator's level reaches ``TaskPreset.loss_at``: a preset with a scarce loss switches
    at its threshold (StyleGAN-2 inpainting), and DCGAN inpainting is MSE only at every level."""
    G = tiny_dcgan
    seen = []
    monkeypatch.setattr(TaskPreset, "loss_at", lambda self, level: seen.append(level) or self.loss)
    build = lambda obs: build_problem(ProblemSpec("inpaint", observed=obs), G, truth=torch.zeros(1, *G.image_shape))
    captured_config(monkeypatch, "ilo", build(0.5), G)
    captured_config(monkeypatch, "ilo", build(0.1), G)
    assert seen == pytest.approx([0.5, 0.1], abs=0.01)  # the mask's actual fraction
    monkeypatch.undo()
    sg = PRESETS["stylegan2"]["inpaint"]
    assert sg.loss_at(0.5).perceptual > 0 and sg.loss_at(0.1).perceptual == 0 and sg.loss_at(None).perceptual == 0
    assert all(PRESETS["dcgan"]["inpaint"].loss_at(level).perceptual == 0 for level in (0.05, 0.3, 1.0, None))


def test_every_family_has_every_task():
    assert all(set(table) == set(TASKS) for table in PRESETS.values())
    assert {"dcgan", "stylegan2"} <= set(PRESETS)


def test_dcgan_layout_carries_radius_and_csgm_lr(tiny_dcgan):
    """A preset's round radius and first-stage learning rate reach the ILO config."""
    from dataclasses import replace

    from ilo.losses.composite import LossConfig
    from ilo.solvers.presets import dcgan_layout

    preset = TaskPreset(LossConfig(), radius=0.17, csgm_lr=0.33)
    cfg = dcgan_layout(tiny_dcgan, preset, preset.loss, 90, 2)
    assert cfg.csgm.lr == 0.33 and {r.radius for r in cfg.rounds} == {0.17}
    assert cfg.total_steps == 90 and cfg.csgm.restarts == 2
    assert dcgan_layout(tiny_dcgan, replace(preset, csgm_lr=0.05), preset.loss, 90, 2).csgm.lr == 0.05
