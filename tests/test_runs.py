"""The run engine (ilo.runs) in this process: jobs and digests, the store, batching, resuming, summaries."""

from __future__ import annotations

import csv
import doctest
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ilo.runs import (Item, Job, RunStore, StoreBusy, StoreDamaged, StoreMismatch, choose_batch_size, read_run,
                      run_jobs)
from ilo.runs import executors
from ilo.runs.toy import solve_batch

SETTINGS = {"generator": "tiny-mlp", "engine_test": 1}


def toy_job(n: int, *, first: int = 0, **config) -> Job:
    """A toy inpainting job on seeds ``first .. first + n - 1`` (items ``s<seed>``)."""
    return Job({"observed": 0.5}, "toy", {"steps": 20, **config}, [Item(f"s{s}", {"seed": s}) for s in range(first, first + n)])


def stored(out: Path) -> list[dict]:
    """Every line of ``out/results.jsonl`` as a record (a torn line would fail here)."""
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def metrics_by_item(records: list[dict]) -> dict[str, dict]:
    return {r["item"]: r["metrics"] for r in records}


def assert_same_numbers(records: list[dict], reference: list[dict]) -> None:
    """Every item exactly once, with the reference's metrics (float64 toy: equal to 1e-9)."""
    items = [r["item"] for r in records]
    assert len(items) == len(set(items)) == len(reference)
    ref = metrics_by_item(reference)
    for item, m in metrics_by_item(records).items():
        assert m == pytest.approx(ref[item], rel=1e-9)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """An uninterrupted in-process run of 12 images, batch size 4."""
    out = tmp_path_factory.mktemp("reference")
    run_jobs([toy_job(12)], solve_batch, out, settings=SETTINGS, batch_size=4, progress=False)
    return stored(out)


# ---------------------------------------------------------------------------------------------
# jobs


def test_digest_is_stable_and_covers_only_the_spec():
    a = Job({"task": "inpaint", "observed": 0.1}, "ilo", {"steps": 10, "lr": [0.1, 0.05]}, [Item("a")], label="x")
    b = Job({"observed": 0.1, "task": "inpaint"}, "ilo", {"lr": (0.1, 0.05), "steps": 10}, [Item("b"), Item("c")])
    assert a.digest == b.digest and len(a.digest) == 64 and a.short == a.digest[:12]
    assert a.digest != Job({"task": "inpaint", "observed": 0.1}, "ilo", {"steps": 11, "lr": [0.1, 0.05]}).digest
    assert a.digest != Job({"task": "inpaint", "observed": 0.1}, "csgm", {"steps": 10, "lr": [0.1, 0.05]}).digest


@pytest.mark.parametrize("bad", [
    lambda: Job({"path": Path("x")}, "ilo", {}),
    lambda: Job({}, "ilo", {"lr": float("nan")}),
    lambda: Job({}, "ilo", {}, [Item("a"), Item("a")]),
    lambda: Item("../etc"),
    lambda: Item(".hidden"),
    lambda: Item("a", {"seed": object()}),
])
def test_exception_bad_job(bad):
    with pytest.raises(ValueError) as e:
        bad()
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# batch size


def test_choose_batch_size_follows_memory(monkeypatch):
    monkeypatch.setattr(executors, "available_memory", lambda device="cpu": 10_000)
    assert choose_batch_size(1000, "cpu") == 7  # 70 % of 10 kB, 1 kB an image
    assert choose_batch_size(1000, "cpu", share=0.5) == 3
    assert choose_batch_size(10, "cpu", cap=16) == 16
    assert choose_batch_size(10**9, "cpu") == 1
    with pytest.raises(ValueError):
        choose_batch_size(0, "cpu")


def test_available_memory_reads_the_machine():
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("no /proc/meminfo")
    total = int(next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < executors.available_memory("cpu") <= total


# ---------------------------------------------------------------------------------------------
# running, resuming, the store


def test_run_stores_each_image_once_with_its_files(tmp_path):
    job = toy_job(5)
    report = run_jobs([job], solve_batch, tmp_path, settings=SETTINGS, batch_size=2, progress=False)
    assert (report.solved, report.skipped, report.batches, report.batch_size) == (5, 0, 3, 2)
    recs = stored(tmp_path)
    assert sorted(r["item"] for r in recs) == [f"s{i}" for i in range(5)]
    for r in recs:
        assert r["job"] == job.digest and set(r["metrics"]) == {"mse", "psnr", "measurement_mse"}
        for name, rel in r["files"].items():
            assert rel == f"files/{job.short}/{r['item']}/{name}" and (tmp_path / rel).stat().st_size > 0
    assert [r["batch"]["size"] for r in recs] == [2, 2, 2, 2, 1]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["settings"] == SETTINGS and run["jobs"][job.digest]["config"] == job.config
    assert not (tmp_path / ".tmp").exists()  # the private temporary folder is removed on closing


def test_toy_job_fits_the_observation():
    before, after = (solve_batch(toy_job(3, steps=s), list(toy_job(3).items)) for s in (0, 20))
    for b, a in zip(before, after):
        assert a["metrics"]["measurement_mse"] < b["metrics"]["measurement_mse"] / 4
        assert a["metrics"]["mse"] < b["metrics"]["mse"] / 4


def test_result_does_not_depend_on_batch(tmp_path, reference):
    run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=5, progress=False)
    assert_same_numbers(stored(tmp_path), reference)


def test_rerun_skips_done_and_extends(tmp_path, reference):
    run_jobs([toy_job(6)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    again = run_jobs([toy_job(6)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    assert (again.solved, again.skipped, again.batches) == (0, 6, 0)
    more = run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    assert (more.solved, more.skipped) == (6, 6)
    assert_same_numbers(stored(tmp_path), reference)


def test_exception_settings_mismatch(tmp_path):
    run_jobs([toy_job(1)], solve_batch, tmp_path, settings=SETTINGS, batch_size=1, progress=False)
    with pytest.raises(StoreMismatch, match="generator='tiny-mlp' \\(now 'other'\\)") as e:
        run_jobs([toy_job(1)], solve_batch, tmp_path, settings={**SETTINGS, "generator": "other"}, batch_size=1)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    assert len(stored(tmp_path)) == 1


def test_exception_second_writer(tmp_path):
    with RunStore(tmp_path, SETTINGS):
        with pytest.raises(StoreBusy):
            RunStore(tmp_path, SETTINGS)
    RunStore(tmp_path, SETTINGS).close()  # free again once the first is closed


def test_torn_last_line_is_dropped(tmp_path, reference):
    run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    path = tmp_path / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:7]) + lines[7][:40])  # a crash in the middle of writing record 8
    report = run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    assert report.solved == 5
    assert_same_numbers(stored(tmp_path), reference)


def test_batches_round_robin_over_jobs_and_read_only_reader(tmp_path):
    """Every job's first batch before any job's second, so a run stopped early has every job on
    its first images; read_run reads what was stored without the lock (torn last line left out)."""
    jobs = [toy_job(4), toy_job(4, steps=21)]
    run_jobs(jobs, solve_batch, tmp_path, settings=SETTINGS, batch_size=2, progress=False)
    order = [(r["job"], r["item"]) for r in stored(tmp_path)]
    a, b = jobs[0].digest, jobs[1].digest
    assert order == [(a, "s0"), (a, "s1"), (b, "s0"), (b, "s1"), (a, "s2"), (a, "s3"), (b, "s2"), (b, "s3")]
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"job": "torn')
    run, records = read_run(tmp_path)
    assert [(r["job"], r["item"]) for r in records] == order and set(run["jobs"]) == {a, b}
    with RunStore(tmp_path, SETTINGS.copy()) as store:  # a writer holds the lock: reading still works
        assert len(store) == 8 and len(read_run(tmp_path)[1]) == 8
    assert read_run(tmp_path / "none") == ({}, [])


def test_exception_damaged_store(tmp_path):
    run_jobs([toy_job(2)], solve_batch, tmp_path, settings=SETTINGS, batch_size=1, progress=False)
    path = tmp_path / "results.jsonl"
    path.write_text("garbage\n" + path.read_text())
    with pytest.raises(StoreDamaged, match="line 1"):
        RunStore(tmp_path, SETTINGS)


def failing_after(n_batches: int):
    calls = []

    def fn(job, items, device):
        if len(calls) == n_batches:
            raise ValueError("image 3 is unreadable")
        calls.append(items)
        return solve_batch(job, items, device)
    return fn


def test_failed_batch_keeps_finished_ones(tmp_path, reference):
    with pytest.raises(ValueError, match="unreadable"):
        run_jobs([toy_job(12)], failing_after(2), tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    assert len(stored(tmp_path)) == 8
    report = run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=4, progress=False)
    assert report.solved == 4
    assert_same_numbers(stored(tmp_path), reference)


def test_exception_job_function_breaks_contract(tmp_path):
    def one_missing(job, items, device):
        return solve_batch(job, items, device)[1:]

    with pytest.raises(RuntimeError, match="one result dict per item"):
        run_jobs([toy_job(2)], one_missing, tmp_path, settings=SETTINGS, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="batch size"):
        run_jobs([toy_job(2)], solve_batch, tmp_path, settings=SETTINGS, progress=False)
    with pytest.raises(ValueError, match="same problem, method and config"):
        run_jobs([toy_job(2), toy_job(1, first=5)], solve_batch, tmp_path, settings=SETTINGS, batch_size=1)


def test_batch_size_chosen_from_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "available_memory", lambda device="cpu": 3_000)
    report = run_jobs([toy_job(5)], solve_batch, tmp_path, settings=SETTINGS, per_image_bytes=1000, progress=False)
    assert (report.batch_size, report.batches) == (2, 3)


DRIVER = """
import sys
from ilo.runs import Item, Job, run_jobs
from ilo.runs.toy import solve_batch
out, n, delay, ray_address = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
job = Job({"observed": 0.5}, "toy", {"steps": 20, "delay": delay}, [Item(f"s{s}", {"seed": s}) for s in range(n)])
settings = {"generator": "tiny-mlp", "engine_test": 1}
if ray_address == "-":
    run_jobs([job], solve_batch, out, settings=settings, batch_size=2, progress=False)
else:
    from ilo.runs import RayExecutor
    with RayExecutor(ray_address) as ex:
        run_jobs([job], solve_batch, out, settings=settings, batch_size=2, executor=ex, progress=False)
"""


def kill_driver_mid_run(out: Path, n: int, delay: float, ray_address: str = "-", timeout: float = 120) -> int:
    """Start a driver process on ``n`` toy images, SIGKILL it once a first batch is stored; returns the records left."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), str(n), str(delay), ray_address],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path, t0 = out / "results.jsonl", time.monotonic()
    try:
        while not (path.is_file() and path.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < timeout, "the driver stored nothing in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return len(stored(out))


@pytest.mark.slow
def test_driver_killed_then_rerun_completes(tmp_path, reference):
    left = kill_driver_mid_run(tmp_path, 12, delay=0.3)
    assert 0 < left < 12
    report = run_jobs([toy_job(12, delay=0.3)], solve_batch, tmp_path, settings=SETTINGS, batch_size=2, progress=False)
    assert report.solved == 12 - left
    assert_same_numbers(stored(tmp_path), reference)


# ---------------------------------------------------------------------------------------------
# summaries


def test_summary_csv_and_html(tmp_path):
    job = Job({"observed": 0.5}, "toy", {"steps": 5}, [Item(f"s{s}", {"seed": s}) for s in range(3)], label="<b>toy</b>")
    run_jobs([job], solve_batch, tmp_path, settings=SETTINGS, batch_size=2, progress=False)
    recs = stored(tmp_path)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["item"] for r in rows] == [r["item"] for r in recs]
    for row, rec in zip(rows, recs):
        assert float(row["psnr"]) == pytest.approx(rec["metrics"]["psnr"], rel=1e-3)
        assert row["recon.png"] == rec["files"]["recon.png"] and row["label"] == "<b>toy</b>"
    page = (tmp_path / "index.html").read_text()
    assert "&lt;b&gt;toy&lt;/b&gt;" in page and "<b>toy</b>" not in page
    for rec in recs:
        for rel in rec["files"].values():
            assert f"src='{rel}'" in page and (tmp_path / rel).is_file()


def test_ray_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"ilo-inverse\[ray\]"):
        executors.RayExecutor(None).__enter__()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-port"])
def test_exception_unreachable_ray_address(address):
    pytest.importorskip("ray")
    t = time.monotonic()
    with pytest.raises(executors.RayUnavailable) as e:
        executors.RayExecutor(address).__enter__()
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and time.monotonic() - t < 30


def test_ray_executor_must_be_entered():
    with pytest.raises(RuntimeError, match="enter"):
        next(executors.RayExecutor(None).map(solve_batch, []))


@pytest.mark.parametrize("module", ["ilo.runs.jobs", "ilo.runs.executors", "ilo.runs.toy"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_measure_each_mode_in_its_own_process():
    from ilo.runs.measure import measure, table

    spec = {"problem": {"observed": 0.5}, "method": "toy", "config": {"steps": 5}}
    result = measure("ilo.runs.toy:solve_batch", spec, n=2, batch_sizes=[2], ray_cpus=0)
    rows = result["rows"]
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("process per image", 1), ("in-process", 2)]
    for r in rows:
        assert r["images_per_s"] == pytest.approx(2 / r["seconds"], rel=0.01) and r["peak_rss_mb"] > 10
    assert rows[0]["speedup"] == 1.0 and rows[1]["workers"] == 1
    assert table(result).count("\n") == 3
