"""The CSGM method's run that a self-tuned ILO makes (``Result.csgm_method``), and the demo's CSGM
row taken from it where its configuration is the one that row would run with."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ilo.demo import demo_images, run_demo, shared_csgm
from ilo.io import OutputFolder
from ilo.operators import TASKS
from ilo.pipeline import ProblemSpec, build_problem, method_config, run_method
from ilo.solvers import solve


#: problems on the 16-px test generator with at least ``csgm_min_units`` (20) held-out units, so
#: the challenger runs (the demo's 64-px faces have them at the default levels)
SPECS = {"inpaint": ProblemSpec("inpaint", observed=0.6), "superres": ProblemSpec("superres", factor=2),
         "denoise": ProblemSpec("denoise"), "cs": ProblemSpec("cs", measurements=0.3)}


def _problem(G, task: str):
    truth, _ = demo_images(G, 1)
    return build_problem(SPECS[task], G, seed=0, truth=truth)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", TASKS)
def test_ilo_returns_the_csgm_methods_run_it_made(tiny_dcgan, task):
    """On every task the self-tuning runs the CSGM method on all measurements (the challenger,
    or denoising's stage): that run, with its configuration, equals the CSGM method run alone
    with that configuration and the same seeds (up to float rounding where it ran in a batch)."""
    prob = _problem(tiny_dcgan, task)
    cfg = method_config(prob, tiny_dcgan, "ilo", total_steps=8, restarts=2)
    if task == "superres":  # 8 x 8 low-resolution pixels: 10 held out, fewer than the challenger needs
        cfg = replace(cfg, selection=replace(cfg.selection, csgm_min_units=1))
    ilo_res = solve(prob.y, prob.operator, tiny_dcgan, "ilo", cfg, seeds=prob.seed)
    run = ilo_res.csgm_method
    assert run is not None and run.method == "csgm"
    cfg = method_config(prob, tiny_dcgan, "csgm", total_steps=8, restarts=2)
    assert run.config == cfg.to_dict()  # the CSGM method's preset at ILO's budget and restarts
    alone = solve(prob.y, prob.operator, tiny_dcgan, "csgm", cfg, seeds=prob.seed)
    torch.testing.assert_close(run.image, alone.image, rtol=0, atol=1e-5)
    assert run.steps == alone.steps == 8
    assert not torch.equal(run.image, ilo_res.image)  # not ILO's own output


@pytest.mark.usefixtures("one_thread")
def test_no_csgm_method_run_without_self_tuning_or_with_ilos_own_stage(tiny_dcgan):
    prob = _problem(tiny_dcgan, "denoise")
    plain, _ = run_method(prob, tiny_dcgan, "ilo", total_steps=8, restarts=1, extend=False)
    assert plain.csgm_method is None
    cfg = method_config(prob, tiny_dcgan, "ilo", total_steps=8, restarts=1)
    own = replace(cfg, selection=replace(cfg.selection, csgm="own"))
    res = solve(prob.y, prob.operator, tiny_dcgan, "ilo", own, seeds=prob.seed)
    assert res.csgm_method is None


@pytest.mark.usefixtures("one_thread")
def test_shared_csgm_only_where_the_configuration_is_the_rows(tiny_dcgan):
    prob = _problem(tiny_dcgan, "denoise")
    ilo_res, _ = run_method(prob, tiny_dcgan, "ilo", total_steps=8, restarts=2)
    assert shared_csgm(ilo_res, prob, tiny_dcgan, 8, 2) is ilo_res.csgm_method
    assert shared_csgm(ilo_res, prob, tiny_dcgan, 8, 1) is None  # the row would run 1 restart
    assert shared_csgm(ilo_res, prob, tiny_dcgan, 9, 2) is None  # or another budget
    assert shared_csgm(None, prob, tiny_dcgan, 8, 2) is None  # no ILO result


def test_the_demos_csgm_rows_are_ilos_run_and_score_as_the_csgm_method_alone(tiny_dcgan, one_thread, tmp_path,
                                                                            monkeypatch):
    from ilo.solvers import BM3DUnavailable, bm3d

    def absent():
        raise BM3DUnavailable("the bm3d baseline needs the optional package")

    monkeypatch.setattr(bm3d, "_import_bm3d", absent)
    rows = run_demo(tiny_dcgan, tmp_path, steps=8, restarts=2, faces=1, progress=False, writer_cls=OutputFolder,
                    env={}, echo=lambda s: None)
    truth, _ = demo_images(tiny_dcgan, 1)
    table = (tmp_path / "summary.md").read_text()
    shared = set()
    for task in TASKS:
        csgm_rows = [r for r in rows if r["task"] == task and r["method"] == "csgm"]
        prob = build_problem(ProblemSpec(task), tiny_dcgan, seed=0, truth=truth)
        _, alone = run_method(prob, tiny_dcgan, "csgm", total_steps=8, restarts=2)
        assert [r["psnr"] for r in csgm_rows] == pytest.approx(alone["per_image"]["psnr"], abs=1e-3)
        line = next(x for x in table.splitlines() if x.startswith(f"| {task} | csgm |"))
        inside = {r["inside_ilo"] for r in csgm_rows}
        assert len(inside) == 1 and line.endswith("(inside ILO's) |") == inside.pop()
        shared |= {task} if csgm_rows[0]["inside_ilo"] else set()
    # at 16 px only denoising's self-tuning runs the CSGM method (the others hold out fewer than
    # 20 units, so their challenger is not run): there the row is ILO's run, elsewhere its own
    assert shared == {"denoise"}
    methods = [r["method"] for r in rows if r["task"] == "cs" and r["image"] == rows[0]["image"]]
    assert methods[-2:] == ["csgm", "ilo"]  # shown in the usual order although ILO ran first
