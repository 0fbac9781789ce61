"""Offline rescoring of the real-face benchmark's self-tuned choice under other margins z."""

from __future__ import annotations

import json
import math

import pytest

from ilo.bench import realfaces_eval as rfe

# two faces, candidates [a generative one, a classical one alone, an excluded one]
SELECTION = {"candidates": ["round1", "biharmonic", "round2+biharmonic"],
             "estimated_mse": [[0.9, 1.0, 0.1], [0.5, 1.0, 0.1]],
             "estimated_se": [[0.2, 0.0, 0.0], [0.2, 0.0, 0.0]],
             "eligible": [[True, True, False], [True, True, False]],
             "true_mse": [[0.01, 0.001, 0.0001], [0.001, 0.01, 0.0001]]}


def _psnr(mse):
    return 10 * math.log10(1 / mse)


def test_rescored_takes_the_eligible_candidate_with_the_lowest_score():
    assert rfe.rescored(SELECTION, 0.0) == pytest.approx([_psnr(0.01), _psnr(0.001)])  # round1 on both
    # z = 1: face 0's round1 scores 1.1 > 1.0 (biharmonic); face 1's 0.7 still wins
    assert rfe.rescored(SELECTION, 1.0) == pytest.approx([_psnr(0.001), _psnr(0.001)])
    every = {k: v for k, v in SELECTION.items() if k != "eligible"}  # no eligibility stored: all candidates
    assert rfe.rescored(every, 1.0) == pytest.approx([_psnr(0.0001)] * 2)


def test_rescore_mode_prints_the_margin_table_and_runs_nothing(tmp_path, capsys):
    per = {"biharmonic": {"psnr": [_psnr(0.001), _psnr(0.01)]}, "tv-inpaint": {"psnr": [10.0, 10.0]},
           "oracle": {"psnr": [_psnr(0.0001)] * 2}}
    results = {"inpaint 0.05": {"per_image": per, "selection": SELECTION},
               "denoise 25": {"per_image": per, "selection": {"rule": "sure"}}}  # no SE: left out
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"meta": {}, "results": results}))
    rfe.main(["--rescore", str(path), "--margins", "0,1"])
    out = capsys.readouterr().out
    best = (_psnr(0.001) + _psnr(0.01)) / 2
    z0, z1 = (_psnr(0.01) + _psnr(0.001)) / 2 - best, _psnr(0.001) - best
    assert f"| inpaint 0.05 | {best:.2f} | {z0:+.2f} | {z1:+.2f} | {_psnr(0.0001) - best:+.2f} |" in out
    assert "denoise" not in out
    assert f"| cells within 0.3 dB | | {int(z0 >= -0.3)} | {int(z1 >= -0.3)} | |" in out


def test_a_cells_stored_estimates_reproduce_its_self_tuned_choice(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    import torch

    from ilo.images import photo

    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: (faces, ["astronaut", "grace_hopper"]))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = rfe.main(["--split", "tuning", "--steps", "6", "--restarts", "1", "--keys", "box 0.333333,cs 0.1",
                        "--patch", "2", "--json", str(path)])
    assert results["box 0.333333"]["selection"]["units"] == "2x2 patches"  # --patch reaches the box's split
    assert results["cs 0.1"]["selection"]["units"] == "measurements"
    assert json.loads(path.read_text())["meta"]["patch"] == 2
    for r in results.values():
        sel = r["selection"]
        assert {"estimated_se", "reference", "z", "units"} <= set(sel)
        assert ("eligible" in sel) == (sel is not results["box 0.333333"]["selection"])  # the box: every candidate
        assert rfe.rescored(sel, sel["z"]) == pytest.approx(r["per_image"]["ilo self-tuned"]["psnr"], abs=1e-3)
