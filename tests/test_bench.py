"""``ilo bench``: quick smoke runs write every output; reruns do no solver work; one-line errors."""

from __future__ import annotations

import csv
import doctest
import importlib
import json
import re

import pytest
import torch

from ilo.bench import curves, harness, sna
from ilo.bench.harness import COLUMNS
from ilo.cli import main

SEEDS = ["--truth-seeds", "600000-600001"]  # one small set keeps the smoke runs fast
#: the methods of the shared quick curves run: two CSGM variants, PULSE, ILO and a classical one
METHODS = ["csgm", "csgm-perceptual", "pulse", "ilo", "biharmonic"]
CURVES = ["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--methods", ",".join(METHODS)] + SEEDS


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
    assert invoke(CURVES + ["--out", str(out)]) == 0
    return out


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def jobs_of(out) -> dict[str, dict]:
    return json.loads((out / "run.json").read_text())["jobs"]


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_curves_quick_smoke(quick_curves):
    rows = check_outputs(quick_curves, 2 * 2 * 5, ["plots/curves_inpaint_generated.png"], ["grids/inpaint_generated.png"])
    assert {r["method"] for r in rows} == set(METHODS)
    assert {float(r["level"]) for r in rows} == set(curves.default_levels("inpaint", 64, quick=True))
    assert {r["image"] for r in rows} == {"seed600000", "seed600001"}
    assert {r["seed"] for r in rows} == {"0", "1"}
    # one engine job per (set, method, level), one record per job and image, each exactly once
    recs, jobs = records(quick_curves), jobs_of(quick_curves)
    # the self-tuned ILO's steps: its CSGM stage (the CSGM method at the whole budget, 10) then its rounds
    ilo_solver = [r["info"]["solver"] for r in recs if jobs[r["job"]]["method"] == "ilo" and "solver" in r["info"]]
    assert ilo_solver and all(s["selection"]["csgm_steps"] == 10 for s in ilo_solver)
    expected = {str(10 + sum(rc["steps"] for rc in s["rounds"])) for s in ilo_solver}
    assert {r["steps"] for r in rows if r["method"] == "ilo"} == expected and expected != {"10"}
    assert len(jobs) == 2 * 5 and len(recs) == 2 * 2 * 5 == len({(r["job"], r["item"]) for r in recs})
    spec = jobs[recs[0]["job"]]
    assert spec["problem"] == {"task": "inpaint", "level": 0.1} and spec["config"]["set"] == "generated"
    assert recs[0]["info"]["rows"][0]["psnr"] == recs[0]["metrics"]["psnr"]
    summary = json.loads((quick_curves / "summary.json").read_text())
    assert {"CSGM / ILO", "best CSGM / ILO", "PULSE / ILO", "best classical", "ILO − classical dB"} <= set(summary["ratios"][0])


def test_classical_margin_is_read_from_the_rows():
    """The best classical method is the one with the highest mean PSNR; ILO's margin is signed."""
    summary = [{"set": "s", "method": m, "level": 0.1, "psnr": {"mean": v}} for m, v in
               (("ilo", 25.0), ("biharmonic", 27.5), ("tv-inpaint", 26.0))]
    assert curves.best_classical(summary, "s", 0.1, ("biharmonic", "tv-inpaint")) == ["biharmonic", "27.50", "25.00", "-2.50"]
    head, rows = curves.ratio_rows(summary, "inpaint", ["s"], [0.1], ("ilo", "biharmonic", "tv-inpaint"))
    assert curves.classical_wins(head, rows) == rows
    summary[0]["psnr"]["mean"] = 28.0
    head, rows = curves.ratio_rows(summary, "inpaint", ["s"], [0.1], ("ilo", "biharmonic", "tv-inpaint"))
    assert rows[0][-1] == "0.50" and curves.classical_wins(head, rows) == []


def test_methods_include_the_classical_ones_that_apply():
    from ilo.operators import operator_class
    from ilo.solvers import CLASSICAL_METHODS

    for task in curves.TASKS:
        classical = [m for m in curves.METHODS[task] if m in CLASSICAL_METHODS]
        assert classical and all(issubclass(operator_class(task), CLASSICAL_METHODS[m]) for m in classical), task
    assert "bm3d" in curves.METHODS["denoise"] and "bicubic" not in curves.METHODS["denoise"]
    assert set(sna.CLASSICAL) == {"bm3d", "bm3d-free", "nlmeans", "tv-denoise"}


def test_rerun_does_no_solver_work(quick_curves, capsys, monkeypatch):
    before = (quick_curves / "measurements.csv").read_text()

    def boom(*a, **k):
        raise AssertionError("a finished image was solved again")

    monkeypatch.setattr(curves, "run_method", boom)
    code, out, err = run(CURVES + ["--out", str(quick_curves)], capsys)
    assert code == 0, err
    assert "solved 0 images, skipped 20 already done" in out
    assert (quick_curves / "measurements.csv").read_text() == before


def test_report_only_solves_nothing(quick_curves, tmp_path, capsys, monkeypatch):
    """--report-only rewrites the outputs from the records (even without their files) and keeps run.json."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quick_curves, out)
    shutil.rmtree(out / "files")  # a committed run without its example images keeps its grids
    for f in ("summary.md", "index.html", "measurements.csv"):
        (out / f).unlink()
    run_json, config = (out / "run.json").read_text(), json.loads((out / "config.json").read_text())

    def boom(*a, **k):
        raise AssertionError("--report-only solved an image")

    monkeypatch.setattr(curves, "run_method", boom)
    args = CURVES + ["--report-only"]
    code, stdout, err = run(args + ["--out", str(out)], capsys)
    assert code == 0, err
    assert "reported the stored records, solved none" in stdout
    assert len(read_csv(out / "measurements.csv")[1]) == 20 and (out / "summary.md").is_file()
    assert "grids/inpaint_generated.png" in (out / "index.html").read_text()
    assert (out / "run.json").read_text() == run_json
    assert json.loads((out / "config.json").read_text()) == config
    code, _, err = run(args + ["--out", str(tmp_path / "none")], capsys)
    assert code == 2 and err.strip() == f"ilo: error: --report-only: no stored results in {tmp_path / 'none'}"
    assert not (tmp_path / "none").exists()


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_resume_after_a_partial_run(quick_curves, tmp_path, capsys, monkeypatch):
    """A run killed after some batches (and mid-write: a torn last line) resumes: only the jobs
    without records are solved, and every image ends with one record and the same numbers."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(quick_curves, out)
    full = records(quick_curves)
    lines = [json.dumps(r) for r in full[:14]] + [json.dumps(full[14])[:40]]
    (out / "results.jsonl").write_text("\n".join(lines))
    jobs = jobs_of(quick_curves)
    lost = {jobs[r["job"]]["method"] for r in full[14:]}
    calls = []
    real = curves.run_method
    monkeypatch.setattr(curves, "run_method", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    code, stdout, err = run(CURVES + ["--out", str(out)], capsys)
    assert code == 0, err
    assert "solved 6 images, skipped 14" in stdout
    assert sorted(calls) == sorted(lost) and len(calls) == 3  # one batch of 2 images per lost job
    recs = records(out)
    assert len(recs) == 20 == len({(r["job"], r["item"]) for r in recs})
    before = {(r["job"], r["item"]): r["metrics"] for r in full}
    for r in recs:
        assert r["metrics"] == pytest.approx(before[r["job"], r["item"]], rel=1e-4), r["item"]
    assert len(read_csv(out / "measurements.csv")[1]) == 20


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
    rows = check_outputs(out, 2 * 8, ["plots/sna_psnr.png"], ["grids/sna_images.png"])
    assert {r["set"] for r in rows} == {"images"} and {r["image"] for r in rows} == {"a.jpg", "b.png"}
    assert {r["method"] for r in rows} == {"csgm", "csgm+sna", "ilo", "ilo+sna", "bm3d", "bm3d-free", "nlmeans", "tv-denoise"}
    assert {float(r["level"]) for r in rows} == {30.0}
    jobs = jobs_of(out)
    flags = {jobs[r["job"]]["method"]: r["info"]["solver"]["loss"]["sna"] for r in records(out) if "loss" in r["info"].get("solver", {})}
    assert flags == {"csgm": False, "csgm+sna": True, "ilo": False, "ilo+sna": True}
    table = json.loads((out / "summary.json").read_text())["table"][0]
    assert table["best classical"] in sna.CLASSICAL and table["ILO+SNA − classical dB"] is not None


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
        (["sna", "--methods", "ilo,pulse"], "'pulse' is not one of"),
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
    before = (quick_curves / "results.jsonl").read_bytes()
    code, _, err = run(CURVES + ["--steps", "7", "--out", str(quick_curves)], capsys)
    assert code == 2 and "steps=10" in err and len(err.strip().splitlines()) == 1
    assert (quick_curves / "results.jsonl").read_bytes() == before


def test_empty_images_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(["bench", "sna", "--quick", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no image files" in err


# ---------------------------------------------------------------------------------------------
# harness units


def test_default_evaluation_sets():
    sets = harness.evaluation_sets(64, n=3, seed=5, examples=1)
    assert [s.name for s in sets] == ["generated", "lfw", "photos"]
    assert [len(s) for s in sets] == [3, 3, 2]
    assert sets[0].ids[0] == "seed600000" and sets[1].ids == ("lfw000", "lfw001", "lfw002")
    assert [it.data["seed"] for it in sets[1].items] == [5, 6, 7] and sets[1].example_ids() == ("lfw000",)
    lfw = harness.lfw_faces(64, 3, [0, 1, 2])
    assert lfw.shape == (3, 3, 64, 64) and torch.equal(lfw[:, 0], lfw[:, 1]) and torch.equal(lfw[:, 1], lfw[:, 2])
    assert lfw.min() >= -1 and lfw.max() <= 1 and lfw.std() > 0.1
    with pytest.raises(ValueError, match="tuning"):
        harness.lfw_set(65)


def test_jobs_one_per_set_level_method():
    sets = [harness.generated_set([600000, 600001]), harness.photo_set()]
    bench = harness.Bench(None, "digiface-dcgan", 64, sets, steps=10, restarts=2)
    jobs = bench.jobs("inpaint", [0.1, 0.5], ["csgm", "ilo"])
    assert len(jobs) == 2 * 2 * 2 == len({j.digest for j in jobs})
    assert [it.id for it in jobs[0].items] == ["seed600000", "seed600001"] and jobs[-1].config["set"] == "photos"
    # more images extend a job (same digest); another budget is another job
    more = harness.Bench(None, "digiface-dcgan", 64, [harness.generated_set([600000, 600001, 600002])], steps=10, restarts=2)
    assert more.jobs("inpaint", [0.1], ["csgm"])[0].digest == jobs[0].digest
    other = harness.Bench(None, "digiface-dcgan", 64, sets, steps=11, restarts=2)
    assert other.jobs("inpaint", [0.1], ["csgm"])[0].digest != jobs[0].digest


def test_problem_of_an_image_does_not_depend_on_its_batch():
    """Image j gets its own mask and noise stream: the same observation in any batch."""
    items = harness.generated_set([600000, 600001, 600002], seed=4).items
    for task, level in (("inpaint", 0.3), ("denoise", 25.0), ("cs", 0.1)):
        job = harness.bench_job(task, level, "csgm", harness.generated_set([600000]), generator="digiface-dcgan", steps=1,
                                restarts=1, seed=4)
        both = harness.batch_problem(job, list(items), "cpu").problem
        one = harness.batch_problem(job, [items[2]], "cpu").problem
        assert torch.allclose(both.y[2:3], one.y, atol=1e-6), task
        if task == "inpaint":
            assert torch.equal(both.operator.mask[2:3], one.operator.mask)
            assert not torch.equal(both.operator.mask[0], both.operator.mask[1])


@pytest.mark.parametrize("module", ["ilo.bench.harness", "ilo.bench.curves", "ilo.bench.speed"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_index_links_are_relative(quick_curves):
    page = (quick_curves / "index.html").read_text()
    for link in re.findall(r"(?:src|href)='([^']+)'", page):
        assert not link.startswith(("/", "http", "file:")) and (quick_curves / link).is_file(), link
