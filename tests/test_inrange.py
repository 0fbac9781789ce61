"""The in-range benchmark (issue 15, item 4): CSGM against ILO on generated faces, at a tiny budget."""

from __future__ import annotations

import json

import pytest

from ilo.bench import inrange
from ilo.bench.classical_tuning import central_box


def test_inrange_tiny_budget_writes_table_and_json(tiny_dcgan, one_thread, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = inrange.main(["--faces", "2", "--steps", "6", "--restarts", "1", "--tasks", "inpaint,cs",
                            "--json", str(path)])
    stored = json.loads(path.read_text())
    assert stored["results"] == results and set(results) == {"inpaint", "cs"}
    assert stored["meta"]["truth_seeds"] == [600_000, 600_001]
    for r in results.values():
        assert set(r["per_image"]) == {label for label, _, _ in inrange.METHODS}
        assert all(len(s["psnr"]) == 2 for s in r["per_image"].values())
        sel = r["selection"]
        assert len(sel["choice"]) == len(sel["oracle"]) == 2
        # the oracle is the lowest true MSE of the candidates, among them ILO's own CSGM stage
        assert all(o <= c + 1e-12 for o, c in zip(sel["oracle_true_mse"], sel["csgm_stage_true_mse"]))
    out = capsys.readouterr().out.splitlines()
    row = next(x for x in out if x.startswith("| compressed sensing"))
    cs = results["cs"]["per_image"]
    diff = [a - b for a, b in zip(cs["ilo self-tuned"]["psnr"], cs["csgm"]["psnr"])]
    assert row.endswith(f"| {sum(diff) / 2:+.2f} | {min(diff):+.2f} |")
    # resumable: a second call solves nothing
    monkeypatch.setattr(inrange, "run_task", lambda *a, **k: pytest.fail("solved a stored task"))
    assert inrange.main(["--faces", "2", "--tasks", "inpaint,cs", "--json", str(path)]) == results


def test_inrange_refuses_tuning_seeds_and_unknown_tasks(capsys):
    with pytest.raises(ValueError, match="tuning seeds"):
        inrange.main(["--truth-seeds", "10000-10003"])
    with pytest.raises(SystemExit):
        inrange.main(["--tasks", "deblur"])
    assert "unknown task 'deblur'" in capsys.readouterr().err


def test_inrange_box_is_the_central_square_with_the_challenger(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    spec = inrange.problem_spec("box", (3, 64, 64))
    assert spec.task == "inpaint" and spec.box == [21, 21, 42, 42]
    assert inrange.problem_spec("box", (3, 30, 30), 0.5).box == [7, 7, 22, 22]  # a 15-px side
    results = inrange.main(["--faces", "2", "--steps", "6", "--restarts", "1", "--tasks", "box",
                            "--json", str(tmp_path / "b.json")])
    r = results["box"]
    h = w = tiny_dcgan.image_shape[-1]
    x0, y0, x1, y1 = central_box(h, w)
    assert r["description"].startswith("inpainting") and r["level"] == pytest.approx(1 - (x1 - x0) * (y1 - y0) / (h * w))
    # next to a box the CSGM method on all measurements challenges the choice (SelectionConfig.box_csgm)
    assert "csgm_challenger" in r["selection"]
