"""CSGM's start screening (``CSGMConfig.screen``): the restarts start from the best of many random
starts by their measurement loss."""

from __future__ import annotations

import importlib

import pytest
import torch

from ilo.operators import Inpainting
from ilo.rng import stream
from ilo.solvers.config import CSGMConfig
from ilo.solvers.csgm import csgm, screened_starts
from ilo.solvers.tracking import stack_latents


@pytest.fixture(scope="module")
def problem(tiny_dcgan):
    torch.manual_seed(3)
    x = tiny_dcgan({"z": torch.randn(3, 8)})
    ops = [Inpainting.random((3, 16, 16), 0.3, stream(s, "operator")) for s in (0, 1, 2)]
    op = Inpainting.stack(ops)
    return x, op, op(x), ops


def test_screened_starts_are_the_lowest_scoring_candidates(tiny_dcgan, problem):
    _, op, y, ops = problem
    seeds, R, N = [5, 6, 7], 3, 40
    starts = screened_starts(tiny_dcgan, y, op, seeds, R, N)
    assert starts["z"].shape == (3 * R, 8)
    for i, s in enumerate(seeds):  # brute force: every candidate of image i scored on its own
        cands = stack_latents(tiny_dcgan, [s], N)["z"]
        with torch.no_grad():
            loss = ops[i].batch_repeat(N).measurement_loss(tiny_dcgan({"z": cands}), y[i:i + 1].repeat(N, 1, 1, 1))
        want = cands[loss.argsort()[:R]]
        torch.testing.assert_close(starts["z"][i * R:(i + 1) * R], want)
        # the chosen start scores no worse than the unscreened first restart
        assert loss[loss.argsort()[0]] <= loss[0]


def test_screening_passes_do_not_change_the_choice(tiny_dcgan, problem, monkeypatch):
    _, op, y, _ = problem
    whole = screened_starts(tiny_dcgan, y, op, [0, 1, 2], 2, 30)
    monkeypatch.setattr(importlib.import_module("ilo.solvers.csgm"), "SCREEN_ROWS", 4)  # one candidate per image per pass
    torch.testing.assert_close(screened_starts(tiny_dcgan, y, op, [0, 1, 2], 2, 30), whole)


def test_screen_not_above_restarts_is_the_unscreened_run(tiny_dcgan, problem):
    _, op, y, _ = problem
    plain = csgm(y, op, tiny_dcgan, CSGMConfig(steps=5, restarts=3), seeds=[0, 1, 2])
    same = csgm(y, op, tiny_dcgan, CSGMConfig(steps=5, restarts=3, screen=3), seeds=[0, 1, 2])
    torch.testing.assert_close(same.image, plain.image, rtol=0, atol=0)


def test_screening_lowers_the_loss_csgm_starts_from(tiny_dcgan, problem):
    # zero steps: the result is the best start itself, so screening's effect is seen alone
    x, op, y, _ = problem
    plain = csgm(y, op, tiny_dcgan, CSGMConfig(steps=0, restarts=2), seeds=[0, 1, 2])
    screened = csgm(y, op, tiny_dcgan, CSGMConfig(steps=0, restarts=2, screen=64), seeds=[0, 1, 2])
    assert (screened.measurement_loss <= plain.measurement_loss).all()
    assert (screened.measurement_loss < plain.measurement_loss).any()


def test_negative_screen_is_refused():
    with pytest.raises(ValueError, match="screen"):
        CSGMConfig(screen=-1)


def test_ilo_self_tuning_stage_screens_as_its_own_stage(digiface):
    from dataclasses import replace

    from ilo.solvers.config import self_tuned
    from ilo.solvers.ilo import csgm_stage
    from ilo.solvers.presets import dcgan_layout, task_preset

    preset = task_preset("dcgan", "inpaint")
    cfg = self_tuned(dcgan_layout(digiface, preset, preset.loss_at(0.1), 60, 2))
    assert csgm_stage(cfg, digiface).screen == 0
    cfg = replace(cfg, csgm=replace(cfg.csgm, screen=32))
    stage = csgm_stage(cfg, digiface)
    assert stage.screen == 32 and stage.steps == 60  # the CSGM method's run at the whole budget, screened


def test_method_config_sets_screening_where_there_is_a_csgm_stage(digiface):
    from ilo.pipeline import ProblemSpec, build_problem, method_config

    prob = build_problem(ProblemSpec("inpaint", observed=0.1), digiface, truth_seed=3)
    assert method_config(prob, digiface, "csgm", total_steps=20, restarts=2, screen=16).screen == 16
    assert method_config(prob, digiface, "pulse", total_steps=20, restarts=2, screen=16).screen == 16
    assert method_config(prob, digiface, "ilo", total_steps=20, restarts=2, screen=16).csgm.screen == 16
    assert method_config(prob, digiface, "csgm", total_steps=20, restarts=2).screen == 0
    with pytest.raises(ValueError, match="generative methods"):
        method_config(prob, digiface, "biharmonic", screen=16)


def test_cli_screen_is_recorded_and_refused_for_classical_methods(tmp_path, capsys):
    import json

    from ilo.cli import main

    def run(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        return e.value.code, capsys.readouterr().err

    base = ["solve", "--task", "inpaint", "--truth-seed", "1", "--quiet"]
    code, err = run(base + ["--method", "csgm", "--steps", "3", "--restarts", "2", "--screen", "8",
                            "--out", str(tmp_path / "a")])
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "config.json").read_text())["solver"]["screen"] == 8
    code, err = run(base + ["--method", "biharmonic", "--screen", "8", "--out", str(tmp_path / "b")])
    assert code == 2 and "--screen applies to the generative methods" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_batch_screen_equals_solve_and_is_refused_for_classical_methods(tmp_path, capsys):
    import json

    from ilo.cli import main

    def run(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        return e.value.code, capsys.readouterr().err

    task = ["--task", "inpaint", "--observed", "0.2", "--method", "csgm", "--steps", "4", "--restarts", "2", "--quiet"]
    code, err = run(["batch", *task, "--screen", "16", "--truth-seeds", "20-21", "--seed", "5",
                     "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["config"]["screen"] == 16
    recs = {r["item"]: r for r in map(json.loads, (tmp_path / "run" / "results.jsonl").read_text().splitlines())}
    for screen, name in ((16, "one"), (None, "plain")):
        code, err = run(["solve", *task, *(["--screen", str(screen)] if screen else []), "--truth-seed", "21",
                         "--seed", "6", "--out", str(tmp_path / name)])
        assert code == 0, err
    one, plain = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "plain"))
    assert recs["seed21"]["metrics"]["psnr"] == pytest.approx(one["psnr"], rel=1e-3)
    assert abs(one["psnr"] - plain["psnr"]) > 1e-3  # the screened run is another run
    code, err = run(["batch", "--task", "inpaint", "--method", "harmonic", "--screen", "16", "--truth-seeds", "1-2",
                     "--quiet", "--out", str(tmp_path / "classical")])
    assert code == 2 and "--screen applies" in err and not (tmp_path / "classical").exists()
