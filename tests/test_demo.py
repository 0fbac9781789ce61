"""The demo: classical baselines beside CSGM and ILO, their lead over ILO in the summary."""

from __future__ import annotations

import json

import torch
from PIL import Image

from ilo.demo import METHODS, classical_methods, run_demo, summary_table
from ilo.io import OutputFolder
from ilo.operators import CompressedSensing, Inpainting, SuperResolution
from ilo.solvers import CLASSICAL_METHODS


def test_classical_methods_solve_the_operator():
    shape = (3, 16, 16)
    assert classical_methods(Inpainting.from_options(shape, torch.Generator().manual_seed(0), observed=0.3)) == ["biharmonic", "harmonic", "tv-inpaint"]
    assert classical_methods(SuperResolution(shape, factor=2)) == ["bicubic", "tv-superres"]
    cs = classical_methods(CompressedSensing.from_options(shape, torch.Generator().manual_seed(0), measurements=0.1))
    assert cs and all(CLASSICAL_METHODS[m] is CompressedSensing for m in cs)


def row(task, method, psnr, ssim=0.5, image="a"):
    return {"task": task, "method": method, "image": image, "true_mse": 10 ** (-psnr / 10), "psnr": psnr,
            "ssim": ssim, "seconds": 1.0}


def test_summary_marks_where_a_classical_method_beats_ilo():
    rows = [row("inpaint", "biharmonic", 30.0), row("inpaint", "biharmonic", 26.0, image="b"),
            row("inpaint", "ilo", 25.0), row("inpaint", "ilo", 27.0, image="b"),
            row("inpaint", "tv-inpaint", 25.5), row("inpaint", "tv-inpaint", 26.7, image="b"),
            row("cs", "tv-cs", 20.0), row("cs", "ilo", 24.0)]
    table = summary_table(rows).splitlines()
    bih = next(x for x in table if x.startswith("| inpaint | biharmonic |"))
    assert "| 28.00 |" in bih and "+2.00 **beats ILO**" in bih  # means over the two images: 28 against 26
    tv = next(x for x in table if x.startswith("| cs | tv-cs |"))
    assert "-4.00" in tv and "beats" not in tv
    assert table[-1] == "Classical beats ILO (mean PSNR) on: inpaint (biharmonic +2.00 dB, tv-inpaint +0.10 dB)."
    assert summary_table([row("cs", "tv-cs", 20.0), row("cs", "ilo", 24.0)]).endswith("on: no task.")


def test_demo_runs_the_classical_methods_beside_csgm_and_ilo(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    from ilo.solvers import BM3DUnavailable, bm3d

    def absent():
        raise BM3DUnavailable("the bm3d baseline needs the optional package")

    monkeypatch.setattr(bm3d, "_import_bm3d", absent)  # the optional extra missing (and 3 s an image saved)
    lines: list[str] = []
    rows = run_demo(tiny_dcgan, tmp_path, steps=8, restarts=1, faces=1, progress=False, writer_cls=OutputFolder,
                    env={}, echo=lines.append)
    images = 3  # one generated face and the two photos
    for task in ("inpaint", "superres", "denoise", "cs"):
        record = json.loads((tmp_path / f"{task}.json").read_text())
        methods = {r["method"] for r in rows if r["task"] == task}
        classical = methods - set(METHODS)
        assert classical and set(METHODS) <= methods
        assert all(sum(r["method"] == m and r["task"] == task for r in rows) == images for m in methods)
        best = record["best_classical"]
        assert best in classical
        assert record["metrics"][best]["psnr"] == max(record["metrics"][m]["psnr"] for m in classical)
        with Image.open(tmp_path / f"{task}.png") as im:
            assert im.width == 90 + 5 * (128 + 4)  # row labels, then truth, observation, classical, CSGM, ILO
        assert "bm3d" not in methods
    assert lines[0] == "denoise: bm3d skipped (the bm3d baseline needs the optional package)"
    assert "Classical beats ILO (mean PSNR) on:" in lines[1]
    assert (tmp_path / "summary.md").read_text().strip() == lines[1]

