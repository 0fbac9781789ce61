"""The default-solve cost benchmark at a tiny budget: variants, the CPU split, the table and JSON."""

from __future__ import annotations

import json

import pytest

from ilo.bench import solve_cost


def test_variant_names():
    from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig

    cfg = ILOConfig(csgm=CSGMConfig(steps=200), rounds=(RoundConfig(1, 133), RoundConfig(2, 133), RoundConfig(3, 134)))
    on_ilo, on_csgm = solve_cost.variant("stop:40:0.01+rounds:0.5")
    changed = on_ilo(cfg)
    assert [r.steps for r in changed.rounds] == [66, 66, 67] and changed.total_steps == cfg.total_steps
    assert (changed.csgm.patience, changed.csgm.tolerance) == (40, 0.01)
    assert on_csgm(CSGMConfig()).patience == 40
    same_ilo, same_csgm = solve_cost.variant("shipped")
    assert same_ilo(cfg) == cfg and same_csgm(CSGMConfig()) == CSGMConfig()
    with pytest.raises(ValueError):
        solve_cost.variant("stop:40")


def test_tiny_budget_writes_table_and_json(tiny_dcgan, one_thread, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "c.json"
    argv = ["--variants", "shipped,stop:2:0.5", "--tasks", "inpaint", "--real", "0", "--truth-seeds", "10000-10001",
            "--steps", "9", "--restarts", "1", "--json", str(path)]
    done = solve_cost.main(argv)
    assert json.loads(path.read_text())["solves"] == done
    # CSGM shipped, then per variant CSGM (changed by stop) and the self-tuned ILO; two faces each
    assert sorted({(r["variant"], r["method"]) for r in done.values()}) == [
        ("shipped", "csgm"), ("shipped", "ilo"), ("stop:2:0.5", "csgm"), ("stop:2:0.5", "ilo")]
    assert len(done) == 8
    for r in done.values():
        assert r["cpu"] > 0 and abs(sum(r["split"].values()) - r["cpu"]) < 1e-6
        if r["variant"] == "shipped":
            assert r["csgm_steps"] == 9  # the CSGM method, or the self-tuning's stage at ILO's whole budget
        else:
            assert r["csgm_steps"] <= 9
        if r["method"] == "ilo":
            assert r["split"]["csgm"] > 0 and r["split"]["candidates"] > 0
            assert r["ilo_choice"] in ("csgm", "round1", "round2", "round3") and 0 < r["ilo_psnr"] < 100
        else:
            assert r["ilo_psnr"] is None
    assert any(line.startswith("| inpaint | stop:2:0.5 | ilo |") for line in capsys.readouterr().out.splitlines())
    # resumable: a second call runs nothing new
    monkeypatch.setattr(solve_cost, "solve_one", lambda *a, **k: pytest.fail("solved again"))
    assert solve_cost.main(argv) == done


def test_simulated_stops_are_the_steps_an_early_stopped_run_takes(tiny_dcgan, one_thread, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from ilo.pipeline import ProblemSpec, build_problem, method_config, run_method, truth_from_seeds

    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    sim = solve_cost.main(["--simulate-stops", "3:0.2,50:0.001", "--tasks", "cs", "--real", "0",
                           "--truth-seeds", "10000-10001", "--steps", "20", "--restarts", "2",
                           "--json", str(tmp_path / "s.json")])
    rules = sim["tasks"]["cs"]["rules"]
    assert rules["50:0.001"]["steps"] == [20, 20] and rules["50:0.001"]["dpsnr"] == [0.0, 0.0]  # never fires
    x = truth_from_seeds(tiny_dcgan, [10000, 10001])
    for i in range(2):  # each face alone, stopped by the solver itself
        prob = build_problem(ProblemSpec("cs"), tiny_dcgan, seed=0, truth=x)
        cfg = replace(method_config(prob, tiny_dcgan, "csgm", total_steps=20, restarts=2), patience=3, tolerance=0.2)
        prob_i = build_problem(ProblemSpec("cs"), tiny_dcgan, seed=0, truth=x[i:i + 1])
        res, _ = run_method(prob_i, tiny_dcgan, "csgm", config=cfg)
        assert res.steps == rules["3:0.2"]["steps"][i]
    assert min(rules["3:0.2"]["steps"]) < 20  # the rule fired somewhere
    assert "| cs | 3:0.2 |" in capsys.readouterr().out


def test_no_reference_and_merged_table(tiny_dcgan, one_thread, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    common = ["--tasks", "denoise", "--real", "0", "--truth-seeds", "10000-10000", "--steps", "6", "--restarts", "1"]
    ref = solve_cost.main(["--variants", "shipped", *common, "--json", str(tmp_path / "a.json")])
    other = solve_cost.main(["--variants", "rounds:0.5", "--no-reference", *common, "--json", str(tmp_path / "b.json")])
    assert {(r["variant"], r["method"]) for r in other.values()} == {("rounds:0.5", "ilo")}
    capsys.readouterr()
    merged = solve_cost.main(["--table", "--json", str(tmp_path / "b.json"), "--with", str(tmp_path / "a.json")])
    assert merged == {**ref, **other}
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| denoise |")]
    assert len(rows) == 3 and rows[-1].split(" | ")[5] == "+0.00 / +0.00"  # the margin over CSGM shipped is computed
    ilo = [r for r in ref.values() if r["method"] == "ilo"]
    assert ilo and all(r["split"]["candidates"] > 0 for r in ilo)  # denoising's candidates without the rounds'


def test_cheaper_variants_change_what_they_name():
    from ilo.losses.composite import LossConfig
    from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig

    loss = LossConfig(mse=1.0, perceptual=0.05)
    cfg = ILOConfig(csgm=CSGMConfig(steps=200, restarts=4, loss=loss),
                    rounds=(RoundConfig(1, 133), RoundConfig(2, 133), RoundConfig(3, 134)), loss=loss)
    trimmed = solve_cost.variant("trim:0.5")[0](cfg)
    assert [r.steps for r in trimmed.rounds] == [66, 66, 67] and trimmed.csgm == cfg.csgm  # nothing reassigned
    assert solve_cost.variant("restarts:2")[0](cfg).csgm == CSGMConfig(steps=200, restarts=2, loss=loss)
    mse = solve_cost.variant("rounds-mse")[0](cfg)
    assert mse.loss.perceptual == 0 and mse.loss.mse == 1 and mse.csgm.loss == loss  # the CSGM stage keeps it
    with pytest.raises(ValueError):
        solve_cost.variant("rounds-mse:1")
