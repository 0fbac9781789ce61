"""The preset table: ``solve(config=None)`` uses the operator's level, so the library default
equals the CLI default for every task and method."""

from __future__ import annotations

import pytest
import torch

import ilo.solvers as solvers
from ilo.operators import TASKS
from ilo.pipeline import ProblemSpec, build_problem, method_config
from ilo.solvers import PRESETS, preset_for


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
    """Inpainting with plenty of pixels keeps the perceptual term; scarce pixels drop it."""
    G = tiny_dcgan
    plenty = build_problem(ProblemSpec("inpaint", observed=0.5), G, truth=torch.zeros(1, *G.image_shape))
    scarce = build_problem(ProblemSpec("inpaint", observed=0.1), G, truth=torch.zeros(1, *G.image_shape))
    assert captured_config(monkeypatch, "ilo", plenty, G).loss.perceptual > 0
    assert captured_config(monkeypatch, "ilo", scarce, G).loss.perceptual == 0


def test_every_family_has_every_task():
    assert all(set(table) == set(TASKS) for table in PRESETS.values())
    assert {"dcgan", "stylegan2"} <= set(PRESETS)
