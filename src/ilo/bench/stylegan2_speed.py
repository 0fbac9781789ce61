"""Benchmark: speed and memory of our StyleGAN-2 generator (FFHQ-1024 configuration, random weights).

Run as ``python -m ilo.bench.stylegan2_speed [--res 256 1024] [--json PATH]``.

The network is the FFHQ config-F generator (``channel_base=32768``, ``channel_max=512``, 8 mapping
layers, ``z_dim = w_dim = 512``; 30.4 M parameters at 1024 px) truncated at ``--res``, with
random weights (speed does not depend on the values). Batch 1 on CPU with ``--threads`` threads
(default 2); on CUDA, when available, batch 1 and 8 at the largest ``--res``.

What is measured, per implementation (``fast``: the default path; ``reference``: NVIDIA's
sequence of plain PyTorch ops, NCHW, per-sample weights, kept as the baseline):

* **forward**: ``G(state)`` under ``torch.no_grad()`` (state = w+ and noise maps);
* **forward+backward**: ``G(state)`` with gradients to the state (w+, noise maps), loss
  ``mean(image^2)``, ``backward()``: one step of an ILO-style optimisation;
* time: median (and min) wall-clock of ``--repeats`` calls after one warm-up call; the two
  implementations alternate call by call, so a busy machine slows both alike;
* peak memory (CPU): in a child process, the rise of the resident high-water mark (``VmHWM``,
  reset through ``/proc/self/clear_refs``) above the resident size before the call, with
  glibc's mmap threshold pinned at 128 KiB so freed buffers go back to the OS (Linux only);
  parameters and the input state are resident before and are not counted.
* CUDA: ``torch.cuda.max_memory_allocated`` above the allocation before the call, and steps
  per second (``1 / median time``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..generators.stylegan2 import StyleGAN2Generator
from .memory import status_kib as _status_kib

MiB = 2**20
IMPLS = ("fast", "reference")
MODES = ("forward", "forward+backward")


def build(res: int, impl: str = "fast", device: str = "cpu", seed: int = 0, channel_base: int = 32768) -> StyleGAN2Generator:
    """FFHQ-1024 config-F generator truncated at ``res`` px, random weights, frozen, eval mode.

    ``channel_base=16384`` gives NVIDIA's lighter 256 px configuration ("paper256").
    """
    torch.manual_seed(seed)
    g = StyleGAN2Generator(res, z_dim=512, w_dim=512, mapping_layers=8, channel_base=channel_base, channel_max=512, impl=impl)
    with torch.no_grad():  # non-zero noise strengths so that the noise inputs do real work
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return g.to(device).eval().requires_grad_(False)


def make_call(g: StyleGAN2Generator, mode: str, batch: int = 1, seed: int = 1):
    """A zero-argument function running ``mode`` once (returns the image, to keep it alive)."""
    gen = torch.Generator(device=g.device.type).manual_seed(seed)
    state = g.sample_latent(batch, gen)
    if mode == "forward":
        def call():
            with torch.no_grad():
                return g(state)
    elif mode == "forward+backward":
        def call():
            leaves = {k: v.detach().requires_grad_(True) for k, v in state.items()}
            img = g(leaves)
            img.square().mean().backward()
            return img
    else:
        raise ValueError(mode)
    return call


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(calls: dict[str, callable], repeats: int, device: str) -> dict[str, list[float]]:
    """Warm each call up once, then time them in turn ``repeats`` times."""
    for fn in calls.values():
        fn()
    _sync(device)
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def _memory_child(res: int, impl: str, mode: str, threads: int, channel_base: int = 32768) -> None:
    torch.set_num_threads(threads)
    call = make_call(build(res, impl, channel_base=channel_base), mode)
    call()  # warm-up (lazy initialisations are not counted)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    out = call()
    peak = _status_kib("VmHWM")
    del out
    print(json.dumps({"peak_extra_mib": (peak - before) / 1024}))


def peak_memory_cpu(res: int, impl: str, mode: str, threads: int, channel_base: int = 32768) -> float | None:
    """MiB of peak extra resident memory of one call, measured in a fresh child process."""
    if not sys.platform.startswith("linux"):
        return None
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    cmd = [sys.executable, "-m", "ilo.bench.stylegan2_speed", "--_memory-child", str(res), impl, mode, "--threads", str(threads),
           "--channel-base", str(channel_base)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=1800).stdout
        return json.loads(out.strip().splitlines()[-1])["peak_extra_mib"]
    except (subprocess.SubprocessError, OSError, ValueError, KeyError):
        return None


def peak_memory_cuda(call) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return (peak - base) / MiB


def run_cpu(resolutions: list[int], repeats: int, threads: int, memory: bool, channel_base: int = 32768) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for res in resolutions:
        gens = {impl: build(res, impl, channel_base=channel_base) for impl in IMPLS}
        params = sum(p.numel() for p in gens["fast"].parameters())
        for mode in MODES:
            times = time_interleaved({impl: make_call(g, mode) for impl, g in gens.items()}, repeats, "cpu")
            for impl in IMPLS:
                rows.append(dict(
                    device="cpu", threads=threads, res=res, batch=1, channel_base=channel_base, params_m=round(params / 1e6, 2),
                    impl=impl, mode=mode, median_s=statistics.median(times[impl]), min_s=min(times[impl]),
                    peak_mib=peak_memory_cpu(res, impl, mode, threads, channel_base) if memory else None,
                ))
                _print_row(rows[-1])
        del gens
    return rows


def run_cuda(res: int, batches: list[int], repeats: int, channel_base: int = 32768) -> list[dict]:
    rows = []
    gens = {impl: build(res, impl, "cuda", channel_base=channel_base) for impl in IMPLS}
    for batch in batches:
        for mode in MODES:
            calls = {impl: make_call(g, mode, batch) for impl, g in gens.items()}
            times = time_interleaved(calls, repeats, "cuda")
            for impl in IMPLS:
                med = statistics.median(times[impl])
                rows.append(dict(
                    device=torch.cuda.get_device_name(), res=res, batch=batch, impl=impl, mode=mode, median_s=med,
                    min_s=min(times[impl]), steps_per_s=1 / med, images_per_s=batch / med, peak_mib=peak_memory_cuda(calls[impl]),
                ))
                _print_row(rows[-1])
    return rows


def _print_row(r: dict) -> None:
    mem = "" if r.get("peak_mib") is None else f"  peak {r['peak_mib']:8.0f} MiB"
    sps = f"  {r['steps_per_s']:.2f} steps/s" if "steps_per_s" in r else ""
    print(f"{r['device']:>12} {r['res']:>5}px  batch {r['batch']}  {r['impl']:>9}  {r['mode']:<17} "
          f"median {r['median_s']:7.3f} s  min {r['min_s']:7.3f} s{sps}{mem}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--res", type=int, nargs="+", default=[256, 1024], help="output resolutions")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (after one warm-up)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--channel-base", type=int, default=32768, help="32768: FFHQ config-F; 16384: NVIDIA's lighter 256 px config")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto = CPU, and CUDA when available")
    p.add_argument("--cuda-batches", type=int, nargs="+", default=[1, 8], help="batch sizes on CUDA")
    p.add_argument("--no-memory", action="store_true", help="skip the (CPU) peak-memory child processes")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--_memory-child", nargs=3, metavar=("RES", "IMPL", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._memory_child:
        res, impl, mode = args._memory_child
        _memory_child(int(res), impl, mode, args.threads, args.channel_base)
        return {}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    if args.device in ("auto", "cpu"):
        rows += run_cpu(args.res, args.repeats, args.threads, not args.no_memory, args.channel_base)
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        rows += run_cuda(max(args.res), args.cuda_batches, args.repeats, args.channel_base)
    result = dict(
        command="python -m ilo.bench.stylegan2_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        torch=torch.__version__, python=platform.python_version(), cpu=platform.processor() or platform.machine(),
        loadavg_start=load, loadavg_end=os.getloadavg() if hasattr(os, "getloadavg") else None, rows=rows,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
