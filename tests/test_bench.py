"""``ilo bench``: quick smoke runs write every output; reruns do no solver work; one-line errors."""

from __future__ import annotations

import csv
import doctest
import importlib
import json
import re

import pytest
import torch

from ilo.bench import curves, harness
from ilo.bench.harness import COLUMNS
from ilo.cli import main

SEEDS = ["--truth-seeds", "600000-600001"]  # one small set keeps the smoke runs fast


def invoke(argv) -> int:
    """``ilo`` in process with one torch thread (fast on a shared machine), restoring the count."""
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            main(argv[:2] + ["--threads", "1"] + argv[2:] if argv[0] == "bench" else argv)
    finally:
        torch.set_num_threads(threads)
    return e.value.code


def run(argv, capsys):
    code = invoke(argv)
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def check_outputs(out, n_rows, plots, grids):
    header, rows = read_csv(out / "measurements.csv")
    assert header == list(COLUMNS)
    assert len(rows) == n_rows
    js = json.loads((out / "measurements.json").read_text())
    assert js["columns"] == list(COLUMNS) and len(js["rows"]) == n_rows
    for r in rows:
        for k in ("true_mse", "psnr", "ssim", "measurement_mse", "steps", "seconds"):
            assert r[k] != "", k
        assert 0 <= float(r["true_mse"]) < 1
    for p in plots + grids:
        assert (out / p).is_file() and (out / p).read_bytes()[:4] == b"\x89PNG", p
    page = (out / "index.html").read_text()
    for p in plots + grids + ["measurements.csv"]:
        assert f"'{p}'" in page, p
    assert "http" not in page.lower() and "<script" not in page  # opens offline
    assert (out / "run.json").is_file() and (out / "summary.md").is_file()
    assert not list(out.rglob(".*tmp*"))
    return rows


@pytest.fixture(scope="module")
def quick_curves(tmp_path_factory):
    """One quick curves run shared by the tests below (2 images, 2 levels, 5 methods)."""
    out = tmp_path_factory.mktemp("bench") / "curves"
    assert invoke(["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--out", str(out)] + SEEDS) == 0
    return out


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_curves_quick_smoke(quick_curves):
    rows = check_outputs(quick_curves, 2 * 2 * 5, ["plots/curves_inpaint_generated.png"], ["grids/inpaint_generated.png"])
    assert {r["method"] for r in rows} == set(curves.METHODS["inpaint"])
    assert {float(r["level"]) for r in rows} == set(curves.default_levels("inpaint", 64, quick=True))
    assert {r["image"] for r in rows} == {"seed600000", "seed600001"}
    assert {r["seed"] for r in rows} == {"0", "1"} and {r["steps"] for r in rows} == {"10"}
    # one stored line per (set, method, level, batch)
    lines = (quick_curves / "results.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["key"].startswith("generated/csgm/0.1/0-2/")
    summary = json.loads((quick_curves / "summary.json").read_text())
    assert {"CSGM / ILO", "best CSGM / ILO", "PULSE / ILO"} <= set(summary["ratios"][0])


def test_rerun_does_no_solver_work(quick_curves, capsys, monkeypatch):
    before = (quick_curves / "measurements.csv").read_text()

    def boom(*a, **k):
        raise AssertionError("a finished cell was solved again")

    monkeypatch.setattr(curves, "run_method", boom)
    code, out, err = run(["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--out", str(quick_curves)] + SEEDS, capsys)
    assert code == 0, err
    assert "ran 0 cells, skipped 10" in out
    assert (quick_curves / "measurements.csv").read_text() == before


def test_report_only_solves_nothing(quick_curves, tmp_path, capsys, monkeypatch):
    """--report-only rewrites the outputs from the store (even without examples/) and keeps run.json."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quick_curves, out)
    shutil.rmtree(out / "examples")  # a committed run without its example images keeps its grids
    # solved on another device: generated truths differ in the last bits, so do the keys' pixel digests
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for rec in lines:
        rec["key"] = rec["key"].rsplit("/", 1)[0] + "/0ther0ne"
    lines.append(dict(lines[0], key=lines[0]["key"].replace("0ther0ne", "0lder0ne"), rows=[]))  # an older duplicate
    (out / "results.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in [lines[-1]] + lines[:-1]))
    for f in ("summary.md", "index.html", "measurements.csv"):
        (out / f).unlink()
    run_json = (out / "run.json").read_text()

    def boom(*a, **k):
        raise AssertionError("--report-only solved a cell")

    monkeypatch.setattr(curves, "run_method", boom)
    args = ["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--report-only"] + SEEDS
    code, stdout, err = run(args + ["--out", str(out)], capsys)
    assert code == 0, err
    assert "reported 11 stored cells, solved none" in stdout
    assert len(read_csv(out / "measurements.csv")[1]) == 20  # the later of the two duplicates wins and (out / "summary.md").is_file()
    assert "grids/inpaint_generated.png" in (out / "index.html").read_text()
    assert (out / "run.json").read_text() == run_json
    code, _, err = run(args + ["--out", str(tmp_path / "none")], capsys)
    assert code == 2 and err.strip() == f"ilo: error: --report-only: no stored results in {tmp_path / 'none'}"
    assert not (tmp_path / "none").exists()


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_resume_after_a_killed_run(quick_curves, tmp_path, capsys, monkeypatch):
    """A torn last line (a run killed while writing) is ignored and only that cell is redone."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quick_curves, out)
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    calls = []
    real = curves.run_method
    monkeypatch.setattr(curves, "run_method", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    code, stdout, err = run(["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--out", str(out)] + SEEDS, capsys)
    assert code == 0, err
    assert "ran 1 cells, skipped 9" in stdout and calls == ["ilo"]  # the last cell: level 0.5, ILO
    assert len(read_csv(out / "measurements.csv")[1]) == 20
    assert len(harness.ResultStore(out, json.loads((out / "run.json").read_text())["settings"]).records()) == 10


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_sna_quick_on_user_images(tmp_path, capsys):
    from ilo.images import photo, save_image

    folder = tmp_path / "photos"
    folder.mkdir()
    save_image(photo("astronaut", 96), folder / "b.png")
    save_image(photo("grace_hopper", 80), folder / "a.jpg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "sna"
    code, stdout, err = run(["bench", "sna", "--quick", "--quiet", "--images", str(folder), "--out", str(out)], capsys)
    assert code == 0, err
    rows = check_outputs(out, 2 * 4, ["plots/sna_psnr.png"], ["grids/sna_images.png"])
    assert {r["set"] for r in rows} == {"images"} and {r["image"] for r in rows} == {"a.jpg", "b.png"}
    assert {r["method"] for r in rows} == {"csgm", "csgm+sna", "ilo", "ilo+sna"}
    assert {float(r["level"]) for r in rows} == {30.0}
    cfg = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    sna = {c["method"]: c["solver_config"]["loss"]["sna"] for c in cfg}
    assert sna == {"csgm": False, "csgm+sna": True, "ilo": False, "ilo+sna": True}


def test_speed_quick_smoke(tmp_path, capsys):
    out = tmp_path / "speed"
    code, stdout, err = run(["bench", "speed", "--quick", "--quiet", "--out", str(out)] + SEEDS, capsys)
    assert code == 0, err
    header, rows = read_csv(out / "measurements.csv")
    ilo = [r for r in rows if r["method"] == "ilo"]
    ref = [r for r in rows if r["method"] == "csgm"]
    assert len(ilo) == 2 * 4  # the CSGM stage and three rounds, per image
    assert [int(r["steps"]) for r in ilo if r["image"] == "seed600000"] == [3, 5, 7, 10]
    assert [int(r["layer"]) for r in ilo if r["image"] == "seed600000"] == [0, 1, 2, 3]
    times = [float(r["seconds"]) for r in ilo if r["image"] == "seed600000"]
    assert times == sorted(times)
    assert len(ref) >= 2 and {r["task"] for r in rows} == {"inpaint"}
    check_outputs(out, len(rows), ["plots/speed_true_mse_generated.png", "plots/speed_perceptual_generated.png"],
                  ["grids/speed_generated.png"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["curves", "--task", "deblur"], "'deblur' is not one of"),
        (["curves", "--task", "cs", "--methods", "csgm-perceptual"], "does not apply"),
        (["curves", "--task", "inpaint", "--levels", "0.1,2"], "must be in (0, 1]"),
        (["curves", "--task", "inpaint", "--truth-seeds", "700-600"], "empty"),
        (["curves", "--task", "inpaint", "--truth-seeds", "abc"], "range A-B"),
        (["sna", "--truth-seeds", "10500-10600"], "tuning seeds"),
        (["sna", "--images", "/nonexistent/folder"], "--images folder not found"),
        (["speed", "--steps", "0"], "--steps must be >= 1"),
        (["speed", "--task", "superres", "--level", "3"], "superres"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    code, stdout, err = run(["bench"] + argv + ["--out", str(out), "--quiet"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ilo: error:") and message in lines[0], err
    assert not (out / "results.jsonl").exists()


def test_other_settings_are_not_mixed_in(quick_curves, capsys):
    code, _, err = run(["bench", "curves", "--task", "inpaint", "--quick", "--steps", "7", "--quiet", "--out", str(quick_curves)] + SEEDS,
                       capsys)
    assert code == 2 and "steps=10" in err and len(err.strip().splitlines()) == 1


def test_empty_images_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["bench", "sna", "--quick", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no image files" in err


# ---------------------------------------------------------------------------------------------
# harness units


def test_default_evaluation_sets(digiface):
    sets = harness.evaluation_sets(digiface, n=3)
    assert [s.name for s in sets] == ["generated", "lfw", "photos"]
    assert [len(s) for s in sets] == [3, 3, 2]
    assert sets[0].ids[0] == "seed600000" and sets[1].ids == ("lfw000", "lfw001", "lfw002")
    lfw = sets[1].images
    assert lfw.shape == (3, 3, 64, 64) and torch.equal(lfw[:, 0], lfw[:, 1]) and torch.equal(lfw[:, 1], lfw[:, 2])
    assert lfw.min() >= -1 and lfw.max() <= 1 and lfw.std() > 0.1
    with pytest.raises(ValueError, match="tuning"):
        harness.lfw_set(64, 3, 65)


def test_cells_are_batch_major_and_keys_unique():
    sets = [harness.EvalSet("a", torch.zeros(5, 3, 4, 4), tuple("vwxyz"), ""), harness.EvalSet("b", torch.zeros(2, 3, 4, 4), ("p", "q"), "")]
    cells = harness.make_cells(sets, ["csgm", "ilo"], [0.1, 0.5], batch=2)
    assert len(cells) == (3 + 1) * 2 * 2 and len({c.key for c in cells}) == len(cells)
    assert [c.start for c in cells[:8]] == [0] * 8 and cells[-1].key.startswith("a/ilo/0.5/4-5/")
    # other images, other cells: a store never passes off results on other images as done
    other = [harness.EvalSet("a", torch.ones(5, 3, 4, 4), tuple("vwxyz"), "")]
    assert not {c.key for c in harness.make_cells(other, ["csgm"], [0.1], 2)} & {c.key for c in cells}


def test_problem_of_an_image_does_not_depend_on_its_batch(digiface):
    """Image j gets its own mask and noise stream: the same observation in any batch."""
    x = harness.generated_set(digiface, [600000, 600001, 600002]).images
    for task, level in (("inpaint", 0.3), ("denoise", 25.0), ("cs", 0.1)):
        both = harness.cell_problem(task, level, digiface, x[:3], seed=4, start=0)
        one = harness.cell_problem(task, level, digiface, x[2:3], seed=4, start=2)
        assert torch.allclose(both.y[2:3], one.y, atol=1e-6), task
        if task == "inpaint":
            assert torch.equal(both.operator.mask[2:3], one.operator.mask)
            assert not torch.equal(both.operator.mask[0], both.operator.mask[1])


def test_torn_line_is_skipped(tmp_path):
    store = harness.ResultStore(tmp_path, {"command": "t"})
    store.add({"key": "a", "rows": []})
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"key": "b", "ro')
    store = harness.ResultStore(tmp_path, {"command": "t"})
    assert "a" in store and "b" not in store
    store.add({"key": "c", "rows": []})
    assert set(harness.ResultStore(tmp_path, {"command": "t"})._records) == {"a", "c"}


@pytest.mark.parametrize("module", ["ilo.bench.harness", "ilo.bench.curves", "ilo.bench.speed"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_index_links_are_relative(quick_curves):
    page = (quick_curves / "index.html").read_text()
    for link in re.findall(r"(?:src|href)='([^']+)'", page):
        assert not link.startswith(("/", "http", "file:")) and (quick_curves / link).is_file(), link
