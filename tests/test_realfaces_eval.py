"""The real-face benchmark at a tiny budget: every method's PSNR / SSIM / perceptual distance, one grid per cell."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ilo.bench import realfaces_eval as rfe
from ilo.images import photo


@pytest.fixture
def two_photos(tiny_dcgan, monkeypatch):
    """The benchmark on two 16-px photos and the tiny generator."""
    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: (faces, ["astronaut", "grace_hopper"]))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    return faces


def test_cells_write_scores_tables_and_a_grid_per_cell(two_photos, one_thread, tmp_path, capsys):
    path, grids = tmp_path / "r.json", tmp_path / "grids"
    results = rfe.main(["--split", "tuning", "--steps", "6", "--restarts", "1", "--keys", "box 0.333333,superres 4",
                        "--json", str(path), "--grids", str(grids)])
    assert json.loads(path.read_text())["results"] == results and set(results) == {"box 0.333333", "superres 4"}
    sr = results["superres 4"]["per_image"]
    assert {"bicubic", "tv-superres", "csgm", "pulse", "gaussian", "ilo", "ilo self-tuned", "oracle"} == set(sr)
    assert "pulse" not in results["box 0.333333"]["per_image"]  # PULSE for super-resolution only
    assert "gaussian" in results["box 0.333333"]["per_image"]  # the generator's Gaussian prior alone: a column
    for s in sr.values():
        assert len(s["psnr"]) == len(s["ssim"]) == 2 and all(0 < v <= 1 for v in s["ssim"])
    out = capsys.readouterr().out
    assert "| superres | 4 | pulse |" in out  # every method's mean PSNR / SSIM / perceptual
    assert "| box 0.333333 | " in out  # the targets table: a row per cell
    # one picture per cell: a row per face (row labels), truth + observation + every method
    with Image.open(grids / "superres-4.png") as im:
        assert im.size == (90 + (2 + len(sr)) * (96 + 4), 16 + 2 * (96 + 14 + 4))
    assert (grids / "box-0.333333.png").is_file()


def test_classical_flag_sets_the_candidates_methods(two_photos, one_thread, tmp_path):
    path = tmp_path / "c.json"
    results = rfe.main(["--split", "tuning", "--steps", "4", "--restarts", "1", "--keys", "inpaint 0.1",
                        "--classical", "biharmonic,tv-inpaint", "--json", str(path)])
    names = results["inpaint 0.1"]["selection"]["candidates"]
    assert "biharmonic" in names and "tv-inpaint" in names and not any("gaussian" in n for n in names)
    assert json.loads(path.read_text())["meta"]["classical"] == ["biharmonic", "tv-inpaint"]
    default = rfe.main(["--split", "tuning", "--steps", "4", "--restarts", "1", "--keys", "inpaint 0.1",
                        "--json", str(tmp_path / "d.json")])
    assert "gaussian" in default["inpaint 0.1"]["selection"]["candidates"]  # the default's first method
    assert "gaussian" in default["inpaint 0.1"]["per_image"]  # and a column of its own, alone


def test_cells_in_worker_processes_give_the_same_numbers(two_photos, one_thread, tmp_path):
    """``--jobs 2``: the cells solved side by side in two processes, each on ``--threads`` (one),
    give every method's per-face scores and the self-tuned choice of the run in one process."""
    args = ["--split", "tuning", "--steps", "4", "--restarts", "1", "--keys", "box 0.333333,superres 4,cs 0.1"]
    one = rfe.main([*args, "--json", str(tmp_path / "one.json")])
    two = rfe.main([*args, "--jobs", "2", "--json", str(tmp_path / "two.json")])
    assert set(one) == set(two) == {"box 0.333333", "superres 4", "cs 0.1"}
    for key in one:
        assert one[key]["per_image"] == two[key]["per_image"], key
        assert one[key]["selection"]["choice"] == two[key]["selection"]["choice"]
    assert json.loads((tmp_path / "two.json").read_text())["meta"]["jobs"] == 2
