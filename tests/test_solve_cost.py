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
    assert any(line.startswith("| inpaint | stop:2:0.5 | ilo |") for line in capsys.readouterr().out.splitlines())
    # resumable: a second call runs nothing new
    monkeypatch.setattr(solve_cost, "solve_one", lambda *a, **k: pytest.fail("solved again"))
    assert solve_cost.main(argv) == done
