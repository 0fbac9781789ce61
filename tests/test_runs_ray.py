"""The run engine on a local Ray cluster (127.0.0.1, 2 CPUs): same numbers as in-process, and faults:
a worker killed mid-run (the task is retried), the driver killed (the rerun completes)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ilo.runs import RayExecutor, run_jobs
from ilo.runs.toy import solve_batch
from test_runs import SETTINGS, assert_same_numbers, kill_driver_mid_run, reference, stored, toy_job  # noqa: F401

# Read by Ray when it is imported: a local instance then binds 127.0.0.1, not the machine's address
# (drivers started by these tests inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")  # installed by `make install` (the [ray] extra), so CI runs these

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance owned by this test process, on the loopback address; yields its address."""
    if ray.is_initialized():
        pytest.skip("this process already uses another Ray instance")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:")
        yield address
    finally:
        ray.shutdown()


def test_ray_run_equals_in_process(cluster, tmp_path, reference):
    with RayExecutor(cluster) as ex:
        assert ex.device == "cpu" and ex.choose_batch_size(10**12) == 1
        report = run_jobs([toy_job(12)], solve_batch, tmp_path, settings=SETTINGS, batch_size=3, executor=ex,
                          progress=False)
    assert (report.solved, report.batches) == (12, 4)
    recs = stored(tmp_path)
    assert_same_numbers(recs, reference)
    assert len({r["batch"]["worker"] for r in recs}) == 2  # both CPUs worked
    assert ray.is_initialized()  # an instance this executor did not start is left running


def test_worker_killed_mid_run_is_retried(cluster, tmp_path, reference):
    trace = tmp_path / "trace"
    trace.mkdir()
    killed = []

    def kill_first_worker():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for f in trace.iterdir():
                pid = int(f.name.split(".")[0])
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, f.name.split(".", 1)[1]))
                break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    out = tmp_path / "out"
    with RayExecutor(cluster, max_retries=2) as ex:
        report = run_jobs([toy_job(12, delay=0.5, trace_dir=str(trace))], solve_batch, out, settings=SETTINGS,
                          batch_size=3, executor=ex, progress=False)
    killer.join()
    assert killed and report.solved == 12
    pid, item = killed[0]
    starts = [f.name for f in trace.iterdir() if f.name.endswith("." + item)]
    assert len(starts) == 2 and f"{pid}.{item}" in starts  # the killed batch ran again, in another worker
    recs = stored(out)
    assert pid not in {r["batch"]["worker"] for r in recs}
    assert_same_numbers(recs, reference)


def test_driver_killed_then_rerun_on_ray_completes(cluster, tmp_path, reference):
    left = kill_driver_mid_run(tmp_path, 12, delay=0.5, ray_address=cluster)
    assert 0 < left < 12
    with RayExecutor(cluster) as ex:
        report = run_jobs([toy_job(12, delay=0.5)], solve_batch, tmp_path, settings=SETTINGS, batch_size=2,
                          executor=ex, progress=False)
    assert report.solved == 12 - left
    assert_same_numbers(stored(tmp_path), reference)


def test_ilo_batch_on_ray_equals_in_process(cluster, tmp_path, capsys):
    """``ilo batch --ray ADDRESS``: the pipeline's job function on the cluster gives the in-process numbers."""
    import json

    from ilo.cli import main

    args = ["batch", "--task", "inpaint", "--observed", "0.2", "--steps", "6", "--restarts", "2", "--truth-seeds", "60-63",
            "--quiet"]
    for out, extra in (("ray", ["--ray", cluster]), ("local", ["--batch-size", "4"])):
        with pytest.raises(SystemExit) as e:
            main([*args, *extra, "--out", str(tmp_path / out)])
        assert e.value.code == 0, capsys.readouterr().err
    ray_recs, local = stored(tmp_path / "ray"), {r["item"]: r for r in stored(tmp_path / "local")}
    assert len(ray_recs) == 4 and {r["batch"]["size"] for r in ray_recs} == {2}  # 4 images over 2 CPUs
    assert len({r["batch"]["worker"] for r in ray_recs}) == 2
    for r in ray_recs:
        for k in ("true_mse", "psnr", "measurement_mse"):
            assert r["metrics"][k] == pytest.approx(local[r["item"]]["metrics"][k], rel=1e-3)
    assert json.loads((tmp_path / "ray" / "config.json").read_text())["ray"] == cluster


def test_bench_on_ray_equals_in_process(cluster, tmp_path):
    """``ilo bench curves --ray`` (batches of 1 image on 2 workers) stores the numbers of the in-process run (batches of 2)."""
    import json

    from test_bench import SEEDS, invoke

    args = ["bench", "curves", "--task", "inpaint", "--quick", "--quiet", "--methods", "csgm,ilo,biharmonic"] + SEEDS
    assert invoke(args + ["--out", str(tmp_path / "local")]) == 0
    assert invoke(args + ["--out", str(tmp_path / "ray"), "--ray", cluster, "--batch", "1"]) == 0

    def recs(name):
        return {(r["job"], r["item"]): r for r in map(json.loads, (tmp_path / name / "results.jsonl").read_text().splitlines())}

    local, on_ray = recs("local"), recs("ray")
    assert len(local) == 2 * 3 * 2 and set(on_ray) == set(local)
    for key, r in on_ray.items():
        assert r["batch"]["size"] == 1 and r["batch"]["worker"] != os.getpid()
        assert r["metrics"] == pytest.approx(local[key]["metrics"], rel=1e-4, abs=1e-7), key
    assert json.loads((tmp_path / "ray" / "config.json").read_text())["ray"] == cluster
