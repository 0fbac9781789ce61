"""Throughput of a job function three ways: one process per image, in-process batches, Ray.

Each configuration runs in a fresh process (so its peak memory is its own) on the same ``n``
items ``seed<s>`` (data ``{"seed": s}``, ``s = seed0 .. seed0 + n - 1``) of one job, into a
fresh temporary store; wall time includes starting the process (and Ray), as a user sees it::

    python -m ilo.runs.measure --fn ilo.runs.toy:solve_batch --job '{"problem": {"observed": 0.5},
        "method": "toy", "config": {"steps": 200}}' --n 16 --batch-sizes 1,4,16 --json out.json

``--per-image-cmd`` replaces the built-in one-image process by a command template (formatted
with ``{seed}``, ``{item}`` and ``{out}``), e.g. ``"ilo solve --truth-seed {seed} ... --out {out}"``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .engine import run_jobs
from .executors import LocalExecutor, RayExecutor
from .jobs import Item, Job


def load_function(path: str):
    """``"package.module:function"`` -> the function (a job function must be importable by name)."""
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"a job function is named 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def make_job(spec: dict, n: int, seed0: int) -> Job:
    """Items ``seed<s>`` with data ``{"seed": s, "truth_seed": s}`` (the toy reads the first, the
    pipeline's job function both: ``ilo solve --truth-seed s --seed s`` solves the same image)."""
    return Job(spec["problem"], spec["method"], spec["config"],
               [Item(f"seed{s}", {"seed": s, "truth_seed": s}) for s in range(seed0, seed0 + n)])


def _child(mode: str, fn: str, spec: dict, n: int, seed0: int, batch_size: int, ray_cpus: int) -> dict:
    """Run one configuration in this process (``mode`` local or ray) and describe it (threads and
    wait policy: :mod:`ilo.runtime`, set by :func:`main` before the job function loads torch)."""
    job = make_job(spec, n, seed0)
    with tempfile.TemporaryDirectory() as out:
        executor = RayExecutor(None, num_cpus=ray_cpus) if mode == "ray" else LocalExecutor()
        with executor as ex:
            report = run_jobs([job], load_function(fn), out, settings={}, executor=ex, batch_size=batch_size,
                              progress=False, summary=False)
            records = [json.loads(line) for line in Path(out, "results.jsonl").read_text().splitlines()]
    workers = {r["batch"]["worker"]: r["batch"]["peak_rss_mb"] for r in records}
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = driver if mode == "local" else driver + sum(workers.values())
    return {"engine_seconds": report.seconds, "workers": len(workers), "peak_rss_mb": round(total, 1)}


def _timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:6])} ... failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t, proc.stdout


def measure(fn: str, spec: dict, *, n: int, batch_sizes: list[int], ray_cpus: int = 2,
            ray_batch_sizes: list[int] | None = None, per_image_cmd: str | None = None, per_process: bool = True,
            seed0: int = 0, threads: int | None = None) -> dict:
    """Images per second of job function ``fn`` (``module:function``) on ``n`` images of job ``spec``.

    Returns ``{"fn", "job", "n", "rows": [{"mode", "batch_size", "seconds", "images_per_s", "peak_rss_mb", ...}]}``;
    ``threads``: of the in-process runs (default: :mod:`ilo.runtime`'s choice; Ray tasks use one each);
    ``ray_cpus=0`` skips Ray; Ray's batch sizes default to ``ceil(n / ray_cpus)`` (one batch per CPU).
    """
    base = [sys.executable, "-m", "ilo.runs.measure", "--fn", fn, "--job", json.dumps(spec)]
    if threads:
        base += ["--threads", str(threads)]
    rows = []

    def add(mode: str, batch: int, seconds: float, info: dict) -> None:
        rows.append({"mode": mode, "batch_size": batch, "images": n, "seconds": round(seconds, 2),
                     "images_per_s": round(n / seconds, 4), "load_avg_1min": round(os.getloadavg()[0], 2), **info})

    if per_process:
        total = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for s in range(seed0, seed0 + n):
                if per_image_cmd:
                    cmd = shlex.split(per_image_cmd.format(seed=s, item=f"seed{s}", out=os.path.join(tmp, f"seed{s}")))
                else:
                    cmd = [*base, "--seed0", str(s), "--child", "local", "--n", "1", "--batch-sizes", "1"]
                seconds, _ = _timed(cmd)
                total += seconds
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
        add("process per image", 1, total, {"peak_rss_mb": round(peak, 1), "workers": 1})
    for b in batch_sizes:
        seconds, out = _timed([*base, "--seed0", str(seed0), "--child", "local", "--n", str(n), "--batch-sizes", str(b)])
        add("in-process", b, seconds, json.loads(out.splitlines()[-1]))
    if ray_cpus:
        for b in ray_batch_sizes or [math.ceil(n / ray_cpus)]:
            seconds, out = _timed([*base, "--seed0", str(seed0), "--child", "ray", "--n", str(n), "--batch-sizes", str(b),
                                   "--ray-cpus", str(ray_cpus)])
            add(f"ray ({ray_cpus} CPUs)", b, seconds, json.loads(out.splitlines()[-1]))
    ref = rows[0]["images_per_s"] if rows else 1.0
    for r in rows:
        r["speedup"] = round(r["images_per_s"] / ref, 2)
    return {"fn": fn, "job": spec, "n": n, "cpus": os.cpu_count(), "rows": rows}


def table(result: dict) -> str:
    """The rows of :func:`measure` as a Markdown table."""
    lines = ["| mode | batch | images | seconds | images/s | speed-up | peak RSS (MiB) | load avg (1 min, after) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['batch_size']} | {r['images']} | {r['seconds']} | {r['images_per_s']:.3g} "
                     f"| {r['speedup']} | {r['peak_rss_mb']} | {r.get('load_avg_1min', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ilo.runs.measure", description=__doc__.split("\n\n")[0])
    p.add_argument("--fn", default="ilo.runs.toy:solve_batch", help="job function, module:function")
    p.add_argument("--job", required=True, help='JSON {"problem": {...}, "method": "...", "config": {...}}')
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--batch-sizes", default="1,4,16", help="in-process batch sizes, comma-separated")
    p.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (0: no Ray)")
    p.add_argument("--ray-batch-sizes", default=None, help="comma-separated (default: n / ray-cpus, rounded up)")
    p.add_argument("--per-image-cmd", default=None, help="command template for one image ({seed}, {item}, {out})")
    p.add_argument("--no-per-process", action="store_true")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--threads", type=int, default=None, help="threads of the in-process runs (default: ilo.runtime's choice)")
    p.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    spec, sizes = json.loads(a.job), [int(b) for b in a.batch_sizes.split(",")]
    if a.child:
        if a.child == "local":
            from .. import runtime

            runtime.configure(a.threads)  # before torch loads: threads and OpenMP wait policy, as `ilo` does
        print(json.dumps(_child(a.child, a.fn, spec, a.n, a.seed0, sizes[0], a.ray_cpus)))
        return
    result = measure(a.fn, spec, n=a.n, batch_sizes=sizes, ray_cpus=a.ray_cpus,
                     ray_batch_sizes=[int(b) for b in a.ray_batch_sizes.split(",")] if a.ray_batch_sizes else None,
                     per_image_cmd=a.per_image_cmd, per_process=not a.no_per_process, seed0=a.seed0,
                     threads=a.threads)
    print(table(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
