"""A default ILO solve on an idle and on a busy CPU, torch's thread defaults against :mod:`ilo.runtime`.

``python -m ilo.bench_runtime [--steps 600 --restarts 4 --loads 0,4 --out out/bench-runtime]``

For each synthetic load (``N`` busy-loop processes, each stopping by itself after
``--busy-seconds``, started afresh for every solve) and each policy, one fresh Python process solves the default problem
(random inpainting, 10 % observed, a generated face) with ILO and reports its wall time:

* ``torch``: torch's defaults (one thread per core, OpenMP's busy-waiting);
* ``ilo``: the choice of :func:`ilo.runtime.configure` (made before torch loads, as ``ilo`` does).

Prints a table and writes ``runtime.json`` (every row, the machine's load before each row,
the versions) into ``--out``. The load of other programs on the machine is recorded, not
controlled: compare rows taken together.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

BUSY = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"
POLICIES = ("torch", "ilo")


def child(policy: str, steps: int, restarts: int) -> dict:
    """Solve once in this process (which must not have loaded torch yet); the timing as a dict."""
    from . import runtime

    rt = runtime.configure() if policy == "ilo" else None
    import torch

    from .generators import load_generator
    from .pipeline import ProblemSpec, build_problem, run_method

    G = load_generator("digiface-dcgan")
    prob = build_problem(ProblemSpec("inpaint", observed=0.1), G, seed=1, truth_seed=2)
    t0 = time.perf_counter()
    _, metrics = run_method(prob, G, "ilo", total_steps=steps, restarts=restarts, seed=1)
    return {"policy": policy, "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "wait_policy": rt.wait_policy if rt else "default", "psnr": metrics.get("psnr")}


def measure(policy: str, steps: int, restarts: int, timeout: float) -> dict:
    """One fresh process's solve; a solve past ``timeout`` seconds is a row with ``seconds`` None."""
    env_code = f"import json, ilo.bench_runtime as b; print(json.dumps(b.child({policy!r}, {steps}, {restarts})))"
    try:
        p = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"policy": policy, "seconds": None, "timed_out_after": timeout, "threads": None,
                "wait_policy": "n/a", "psnr": None}
    if p.returncode != 0:
        raise RuntimeError(f"{policy} solve failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(loads: list[int], steps: int, restarts: int, busy_seconds: float,
        policies: tuple[str, ...] = POLICIES) -> list[dict]:
    from .runtime import load_average, usable_cpus

    rows = []
    for n in loads:
        for policy in policies:  # fresh busy loops per solve: a long solve must not outlive them
            busy = [subprocess.Popen([sys.executable, "-c", BUSY, str(busy_seconds)]) for _ in range(n)]
            try:
                time.sleep(1.0 if n else 0.0)  # let the busy loops start
                row = {"busy_processes": n, "cpus": usable_cpus(), "load_before": load_average(),
                       **measure(policy, steps, restarts, timeout=busy_seconds)}
                rows.append(row)
                print(_line(row), flush=True)
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    idle = {r["policy"]: r["seconds"] for r in rows if r["busy_processes"] == 0 and r["seconds"]}
    for r in rows:
        r["vs_idle"] = r["seconds"] / idle[r["policy"]] if r["policy"] in idle and r["seconds"] else None
    return rows


HEAD = f"{'busy':>4} {'load':>5} {'policy':>6} {'threads':>7} {'wait':>8} {'seconds':>8}"


def _line(r: dict) -> str:
    load = "n/a" if r["load_before"] is None else f"{r['load_before']:.1f}"
    secs = f"{r['seconds']:>8.1f}" if r["seconds"] is not None else f">{r['timed_out_after']:>7.0f}"
    return f"{r['busy_processes']:>4} {load:>5} {r['policy']:>6} {str(r['threads']):>7} {r['wait_policy']:>8} {secs}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ilo.bench_runtime", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="ILO steps (default 600, the CLI's)")
    ap.add_argument("--restarts", type=int, default=4, help="restarts (default 4, the CLI's)")
    ap.add_argument("--loads", default=None, help="busy processes per row, comma-separated (default 0 and 2 x cores)")
    ap.add_argument("--busy-seconds", type=float, default=900.0, help="upper bound on each busy loop and solve")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help=f"thread policies to compare, comma-separated (default {','.join(POLICIES)})")
    ap.add_argument("--out", default="out/bench-runtime", help="folder for runtime.json")
    a = ap.parse_args(argv)
    from .io import OutputFolder, environment, prepare_output_folder
    from .runtime import usable_cpus

    if a.steps < 1 or a.restarts < 1 or a.busy_seconds <= 0:
        ap.error("--steps and --restarts must be >= 1, --busy-seconds > 0")
    try:
        loads = [int(v) for v in a.loads.split(",")] if a.loads else [0, 2 * usable_cpus()]
    except ValueError:
        ap.error(f"--loads must be comma-separated integers, got {a.loads!r}")
    if any(n < 0 for n in loads):
        ap.error("--loads must be >= 0")
    policies = tuple(v.strip() for v in a.policies.split(","))
    if not policies or any(v not in POLICIES for v in policies):
        ap.error(f"--policies must be among {', '.join(POLICIES)}, got {a.policies!r}")
    prepare_output_folder(a.out)
    print(HEAD, flush=True)
    rows = run(loads, a.steps, a.restarts, a.busy_seconds, policies)
    print("\n" + HEAD + "  x idle\n" + "\n".join(
        _line(r) + ("" if r["vs_idle"] is None else f"  {r['vs_idle']:.2f}") for r in rows))
    with OutputFolder(a.out) as w:
        w.json("runtime.json", {"steps": a.steps, "restarts": a.restarts, "rows": rows, "environment": environment()})
    print(f"wrote {a.out}/runtime.json")


if __name__ == "__main__":  # pragma: no cover
    main()
