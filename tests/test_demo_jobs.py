"""The demo's tasks in worker processes (``ilo demo --jobs N``, :mod:`ilo.workers`): the
sequential results, the threads shared out, the parent's Gaussian priors handed over."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import torch

from ilo import demo, runtime, workers
from ilo.demo import run_demo, solve_task
from ilo.io import OutputFolder
from ilo.operators import TASKS
from ilo.solvers import gaussian


def _metrics(rows: list[dict]) -> list[tuple]:
    return [(r["task"], r["method"], r["image"], r["true_mse"], r["psnr"], r["ssim"], r["inside_ilo"]) for r in rows]


def _tampered_cache(G, folder) -> None:
    """A prior of ``G`` under the name the default fit has in ``folder``, but not that fit: a
    process that reads it instead of the one it was handed solves differently."""
    fitted = gaussian.prior_for(G)
    other = replace(fitted, variances=fitted.variances * 25.0, mean=fitted.mean.flip(-1))
    gaussian._save(other, gaussian.cache_path(G, gaussian.SAMPLES, gaussian.COMPONENTS))
    assert any(folder.iterdir())


@pytest.mark.usefixtures("one_thread")
def test_workers_give_the_sequential_results_with_the_priors_they_are_handed(tiny_dcgan, tmp_path, monkeypatch):
    """Two worker processes of one thread each (the parent's two threads shared out, its passive
    waiting passed on) give the rows of the sequential run on one thread (bit for bit: the same
    seeds and thread count), write every task's files, and record their own process and threads. The disk cache the workers see holds another prior under the
    default fit's name: the equal results show they used the one the parent handed them."""
    threads_before = os.environ.get("OMP_NUM_THREADS")
    seq_out, par_out = tmp_path / "seq", tmp_path / "par"
    seq_out.mkdir(), par_out.mkdir()
    seq = run_demo(tiny_dcgan, seq_out, steps=6, restarts=1, faces=1, progress=False, writer_cls=OutputFolder, env={},
                   echo=lambda _: None)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ILO_GAUSSIAN_CACHE", str(cache))
    _tampered_cache(tiny_dcgan, cache)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    parent = runtime.Runtime(threads=2, wait_policy="PASSIVE", load=4.0, cpus=2, source="auto", applied_before_torch=True)
    monkeypatch.setattr(runtime, "current", lambda: parent)  # as ilo.runtime chooses on a busy machine
    par = run_demo(tiny_dcgan, par_out, steps=6, restarts=1, faces=1, progress=False, writer_cls=OutputFolder, env={},
                   echo=lambda _: None, jobs=2)
    differ = [(a, b) for a, b in zip(_metrics(par), _metrics(seq), strict=True) if a != b]
    assert all(a[1] == "bm3d" for a, _ in differ), differ  # bm3d's own library: its threads (BLAS's) round otherwise
    for a, b in differ:
        assert a[:3] == b[:3] and a[3:6] == pytest.approx(b[3:6], rel=1e-5)
    assert [r["task"] for r in par][:1] == ["inpaint"] and {r["task"] for r in par} == set(TASKS)  # summary in TASKS order
    summary = json.loads((par_out / "summary.json").read_text())
    assert summary["jobs"] == 2
    workers = summary["task_runtimes"]
    assert set(workers) == set(TASKS)
    processes = {w["process"] for w in workers.values()}
    assert os.getpid() not in processes and 1 <= len(processes) <= 2
    for w in workers.values():
        assert w["threads"] == 1 and w["source"] == "environment" and w["applied_before_torch"]
        assert w["wait_policy"] == "PASSIVE"  # the parent's
    for task in TASKS:
        a = json.loads((seq_out / f"{task}.json").read_text())
        b = json.loads((par_out / f"{task}.json").read_text())
        assert a["metrics"].keys() == b["metrics"].keys()
        for m in set(a["metrics"]) - {"bm3d"}:
            assert a["metrics"][m]["per_image"] == b["metrics"][m]["per_image"]
        assert a["best_classical"] == b["best_classical"]
        assert (par_out / f"{task}.png").is_file()
    assert os.environ.get("OMP_NUM_THREADS") == threads_before  # the workers' count was theirs only

    def columns(folder):  # the summary without its seconds (bm3d's rounding may show in its last digit)
        return [line.split("|")[1:6] for line in (folder / "summary.md").read_text().splitlines() if "bm3d |" not in line]

    assert columns(par_out) == columns(seq_out)


@pytest.mark.usefixtures("one_thread")
def test_a_process_reads_the_cache_unless_handed_the_prior(tiny_dcgan, tmp_path, monkeypatch):
    """The counterpart of the test above: without the handed prior, a process solving a task
    that uses the prior reads the tampered cache, and its ILO differs; with it, it does not."""
    truth, _ = demo.demo_images(tiny_dcgan, 1)
    handed = solve_task("superres", tiny_dcgan, truth, steps=6, restarts=1, progress=False)
    priors = gaussian.remembered()
    assert priors
    monkeypatch.setenv("ILO_GAUSSIAN_CACHE", str(tmp_path))
    _tampered_cache(tiny_dcgan, tmp_path)
    monkeypatch.setattr(gaussian, "_MEMORY", {})  # a fresh process: nothing in memory
    again = workers._call(demo._solve_in_worker, ("superres", tiny_dcgan, truth, 6, 1), priors)
    torch.testing.assert_close(again.results["ilo"].image, handed.results["ilo"].image, rtol=0, atol=0)
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    own = workers._call(demo._solve_in_worker, ("superres", tiny_dcgan, truth, 6, 1), {})
    assert not torch.equal(own.results["ilo"].image, handed.results["ilo"].image)
