"""Convex blends of two candidates as candidates of the held-out choice (SelectionConfig.blend)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ilo.bench import realfaces_eval as rfe


def test_the_real_face_bench_runs_blends_and_rescores_without_them(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    from ilo.images import photo

    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: (faces, ["astronaut", "grace_hopper"]))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = rfe.main(["--split", "tuning", "--steps", "6", "--restarts", "1",
                        "--keys", "inpaint 0.3,box 0.333333,superres 4,cs 0.1", "--patch", "2",
                        "--blend", "0.25,0.5", "--blend-pairs", "reference,classical,top", "--json", str(path)])
    assert json.loads(path.read_text())["meta"]["blend"] == [0.25, 0.5]
    for r in results.values():
        sel = r["selection"]
        names = sel["candidates"]
        assert names[-6:] == ["blend@0.25", "blend@0.5", "blend-classical@0.25", "blend-classical@0.5",
                              "blend-top@0.25", "blend-top@0.5"]
        assert len(sel["true_mse"][0]) == len(names) == len(sel["estimated_se"][0]) == len(sel["estimated_mse"][0])
        assert len(sel["blend"][0]) == 6 and sel["blend"][0][1]["weights"] == [0.5, 0.5]
        assert rfe.rescored(sel, sel["z"]) == pytest.approx(r["per_image"]["ilo self-tuned"]["psnr"], abs=1e-3)
        best = [10 * math.log10(1 / min(m)) for m in sel["true_mse"]]
        assert rfe.oracle_psnr(sel) == pytest.approx(best)
        assert all(a >= b - 1e-9 for a, b in zip(rfe.oracle_psnr(sel), rfe.oracle_psnr(sel, ("blend",))))
