"""Benchmark: time and memory of the FFT partial-circulant compressed-sensing operator.

Run as ``python -m ilo.bench.circulant [--json PATH]``: applies ``A`` and ``A_adjoint`` of
:class:`ilo.operators.CompressedSensing` to one ``3 x 1024 x 1024`` float32 image with
``m = 10%`` of ``n`` measurements, prints a table and optionally writes it as JSON.

What is measured:

* **time**: wall-clock per call, median (and min) of ``--repeats`` calls after one warm-up
  call, in this process, with torch's default thread count.
* **peak extra RSS**: in a child process, the rise of the resident-set high-water mark
  (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the call) above the resident
  size just before the call. The child pins glibc's mmap threshold at 128 KiB
  (``MALLOC_MMAP_THRESHOLD_``), so every tensor buffer of the call is freshly mapped and
  returned to the OS when freed, and the number is the peak of the call's own memory
  (output, temporaries, FFT work space) in whole pages; the input image and the operator's
  buffers were resident before and are not counted. Linux only (``null`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..operators import CompressedSensing
from ..rng import stream
from .memory import status_kib as _status_kib

MiB = 2**20


def _build(channels: int, size: int, fraction: float, seed: int):
    op = CompressedSensing((channels, size, size), fraction, stream(seed, "operator"))
    x = torch.rand(1, channels, size, size, generator=stream(seed, "truth")) * 2 - 1
    y = op.A(x)
    return op, x, y


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _peak_extra_rss(fn) -> float | None:
    """MiB by which the resident high-water mark rises above the current RSS during ``fn()``."""
    try:
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        out = fn()
        peak = _status_kib("VmHWM")
        del out
    except OSError:
        return None
    return (peak - before) / 1024


def _memory_child(args: argparse.Namespace) -> None:
    op, x, y = _build(args.channels, args.size, args.fraction, args.seed)
    result = {}
    for name, fn in (("A", lambda: op.A(x)), ("A_adjoint", lambda: op.A_adjoint(y))):
        fn()  # warm-up: one-time allocations (FFT plans) are not part of a call's footprint
        result[name] = _peak_extra_rss(fn)
    print(json.dumps(result))


def _measure_memory(args: argparse.Namespace) -> dict[str, float | None]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    cmd = [sys.executable, "-m", "ilo.bench.circulant", "--memory-child",
           "--channels", str(args.channels), "--size", str(args.size),
           "--fraction", str(args.fraction), "--seed", str(args.seed)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory measurement failed: {done.stderr.strip()}", file=sys.stderr)
        return {"A": None, "A_adjoint": None}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    op, x, y = _build(args.channels, args.size, args.fraction, args.seed)
    timings = {"A": _time(lambda: op.A(x), args.repeats), "A_adjoint": _time(lambda: op.A_adjoint(y), args.repeats)}
    memory = _measure_memory(args)
    buffer_bytes = sum(b.numel() * b.element_size() for b in op.buffers())
    return {
        "input_shape": list(x.shape),
        "dtype": str(x.dtype).replace("torch.", ""),
        "n": op.n,
        "m": op.m,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "ops": {
            name: {
                "median_ms": statistics.median(ts) * 1e3,
                "min_ms": min(ts) * 1e3,
                "peak_extra_rss_mib": memory.get(name),
            }
            for name, ts in timings.items()
        },
        "input_mib": x.numel() * x.element_size() / MiB,
        "operator_buffers_mib": buffer_bytes / MiB,
        "dense_matrix_float32_gib": op.m * op.n * 4 / 2**30,
        "memory_note": "peak extra RSS: rise of VmHWM above VmRSS during one call, child process, "
        "glibc mmap threshold 128 KiB; excludes the input and the operator's buffers",
    }


def format_table(res: dict) -> str:
    lines = [
        f"CompressedSensing (partial circulant, FFT): x {res['input_shape']} {res['dtype']}, "
        f"n = {res['n']:,}, m = {res['m']:,} ({res['m'] / res['n']:.0%}); "
        f"torch {res['torch']}, {res['threads']} threads, median of {res['repeats']}",
        f"{'call':<12}{'median ms':>12}{'min ms':>10}{'peak extra RSS MiB':>21}",
    ]
    for name, r in res["ops"].items():
        mem = "n/a" if r["peak_extra_rss_mib"] is None else f"{r['peak_extra_rss_mib']:.1f}"
        lines.append(f"{name:<12}{r['median_ms']:>12.1f}{r['min_ms']:>10.1f}{mem:>21}")
    lines.append(
        f"input {res['input_mib']:.1f} MiB; operator buffers {res['operator_buffers_mib']:.1f} MiB "
        f"(signs, spectrum of g, indices); a dense m x n float32 matrix would be "
        f"{res['dense_matrix_float32_gib']:,.0f} GiB"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ilo.bench.circulant", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("--size", type=int, default=1024, help="image height and width")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.1, help="m / n")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per operation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args)
        return
    res = run(args)
    print(format_table(res))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
