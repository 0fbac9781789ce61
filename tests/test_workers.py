"""Independent solves in worker processes (:mod:`ilo.workers`): how many, their environment,
results as they finish, errors, and no call started after one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from ilo import runtime, workers
from ilo.workers import default_jobs, imap


def _touch_and_square(folder: str, i: int, fail: bool = False, wait: float = 0.0) -> tuple[int, int, str]:
    """Module level, so that a spawned worker can import it: a marker file per call started."""
    Path(folder, f"started-{i}").touch()
    time.sleep(wait)
    if fail:
        raise ValueError(f"call {i} fails")
    return i * i, os.getpid(), os.environ.get("OMP_NUM_THREADS", "")


def test_results_as_they_finish_with_their_index_from_other_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "current", lambda: _chosen("auto", 4, "default"))  # four threads here
    threads_before = os.environ.get("OMP_NUM_THREADS")
    calls = [(str(tmp_path), i, False, 2.5 if i == 0 else 0.0) for i in range(4)]
    got = list(imap(_touch_and_square, calls, 2))
    assert sorted(i for i, _ in got) == [0, 1, 2, 3]
    assert all(result[0] == i * i for i, result in got)
    pids = {result[1] for _, result in got}
    assert os.getpid() not in pids and len(pids) <= 2
    assert all(result[2] == "2" for _, result in got)  # two workers share this process's four threads
    assert got[-1][0] == 0  # the slow first call finishes last: results come as they finish
    assert os.environ.get("OMP_NUM_THREADS") == threads_before  # set for the workers only


def test_one_job_runs_in_this_process_in_order(tmp_path):
    got = list(imap(_touch_and_square, [(str(tmp_path), i) for i in range(3)], 1))
    assert [i for i, _ in got] == [0, 1, 2] and {r[1] for _, r in got} == {os.getpid()}


def test_an_error_comes_back_and_no_further_call_starts(tmp_path):
    calls = [(str(tmp_path), 0, True), (str(tmp_path), 1, False, 1.0)] + [(str(tmp_path), i) for i in range(2, 6)]
    with pytest.raises(ValueError, match="call 0 fails"):
        for _ in imap(_touch_and_square, calls, 2):
            pass
    started = {p.name for p in tmp_path.iterdir()}
    assert "started-0" in started and started <= {"started-0", "started-1"}  # none after the first two


def test_the_workers_environment_is_restored():
    before = os.environ.get("OMP_NUM_THREADS")
    with workers._environment(OMP_NUM_THREADS="3", ILO_TEST_ONLY="x"):
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["ILO_TEST_ONLY"] == "x"
    assert os.environ.get("OMP_NUM_THREADS") == before and "ILO_TEST_ONLY" not in os.environ


def _chosen(source: str, threads: int, policy: str = "PASSIVE") -> runtime.Runtime:
    return runtime.Runtime(threads=threads, wait_policy=policy, load=4.0, cpus=2, source=source, applied_before_torch=True)


def test_child_environment_shares_out_the_threads_and_passes_the_wait_policy(monkeypatch):
    monkeypatch.setattr(runtime, "current", lambda: _chosen("auto", 8, "PASSIVE"))
    assert workers.child_environment(2) == {"OMP_NUM_THREADS": "4", "OMP_WAIT_POLICY": "PASSIVE"}
    assert workers.child_environment(16) == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setattr(runtime, "current", lambda: _chosen("auto", 2, "default"))
    assert workers.child_environment(2) == {"OMP_NUM_THREADS": "1"}  # OpenMP's own policy: nothing set


def test_default_jobs_one_per_usable_core_at_most_the_calls_and_an_explicit_thread_count(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 2)
    monkeypatch.setattr(runtime, "current", lambda: _chosen("auto", 1))  # busy: one thread chosen for a solve
    assert default_jobs("cpu", 4) == 2  # processes do not wait for each other: one per core
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 16)
    assert default_jobs("cpu", 4) == 4 and default_jobs("cpu", 2) == 2 and default_jobs("cpu", 0) == 1
    monkeypatch.setattr(runtime, "current", lambda: _chosen("--threads", 1))
    assert default_jobs("cpu", 4) == 1  # --threads 1: one process
    monkeypatch.setattr(runtime, "current", lambda: _chosen("environment", 3))
    assert default_jobs("cpu", 4) == 3
    monkeypatch.setattr(runtime, "current", lambda: None)
    assert default_jobs("cpu", 4) == 4
    assert default_jobs("cuda", 4) == 1 and default_jobs(torch.device("cuda", 1), 4) == 1


def test_prepare_fits_what_a_solve_would_and_nothing_for_other_methods(tiny_dcgan, monkeypatch):
    """``ilo.solvers.prepare``: the Gaussian prior of the ``gaussian`` method and of a self-tuned
    ILO that uses it ends up in this process's memory (what the workers are handed); a classical
    method, CSGM and an operator the prior does not solve leave it empty."""
    from ilo.operators import Denoising, Inpainting
    from ilo.solvers import GaussianConfig, gaussian, prepare, preset_for

    shape = tiny_dcgan.image_shape
    sparse = Inpainting.from_options(shape, torch.Generator().manual_seed(0), observed=0.05)
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    for op, method in ((sparse, "biharmonic"), (sparse, "csgm"), (Denoising(shape, sigma255=25), "ilo")):
        prepare(op, tiny_dcgan, method)
        assert gaussian.remembered() == {}, method
    prepare(sparse, tiny_dcgan, "ilo", preset_for("ilo", tiny_dcgan, sparse))
    (key, prior), = gaussian.remembered().items()
    assert prior.shape == tuple(shape) and key[3] == gaussian.AUGMENT.tag
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    prepare(sparse, tiny_dcgan, "gaussian", GaussianConfig(augment=False))
    (key, _), = gaussian.remembered().items()
    assert key[3] == gaussian.PLAIN.tag
