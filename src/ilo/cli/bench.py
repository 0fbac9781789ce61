"""``ilo bench curves|sna|speed``: the paper's experiments as resumable one-command benchmarks.

Each command validates its options before any work (bad input: one line, exit code 2), then
runs its jobs on the run engine (:mod:`ilo.runs`; in this process, or on Ray with ``--ray``),
storing every image's record in ``OUT/results.jsonl``, and writes ``measurements.csv``,
``measurements.json``, ``summary.json``, ``summary.md``, ``plots/*.png``, ``grids/*.png``,
``config.json`` and ``index.html`` (static, opens offline). Rerunning the same command skips
the finished images.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..bench import curves as C
from ..bench import report as R
from ..bench import sna as S
from ..bench import speed as P
from ..bench.harness import DEFAULT_N, Bench, evaluation_sets, parse_seed_range
from ..io import environment
from .batch import ray_option, threads_per_task
from .common import (
    FiniteFloat,
    Seed,
    fail,
    first_line,
    pick_device,
    prepare_out,
    runtime_record,
    threads_option,
)

#: the budget of ``--quick`` (a CI smoke test) and of a normal run; explicit options win
QUICK = {"n": 2, "steps": 10, "restarts": 2, "batch": 2}
NORMAL = {"n": None, "steps": 600, "restarts": 4, "batch": 8}


def _common(f):
    """The options every bench command shares."""
    opts = [
        click.option("--generator", "generator_name", default="digiface-dcgan", help="Registered generator name or checkpoint path."),
        click.option("--images", type=str, default=None, help="A folder of your own photos (centre-cropped, resized): set 'images'."),
        click.option("--truth-seeds", type=str, default=None, help="Held-out generated faces with seeds A-B: set 'generated'."),
        click.option("--n", type=int, default=None,
                     help=f"Images per set (default {DEFAULT_N}: generated seeds 600000+, LFW faces 0.., 2 photos; --quick 2)."),
        click.option("--seed", type=Seed(), default=0, help="Base seed: image j gets solver/noise/mask seed SEED + j."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                     help="Output folder (default out/bench/<command>[-<task>]; out/bench-quick/... with --quick)."),
        click.option("--steps", type=int, default=None, help="Total optimisation steps of every method (default 600; --quick 10)."),
        click.option("--restarts", type=int, default=None, help="Random restarts of every method (default 4; --quick 2)."),
        click.option("--batch", type=int, default=None, help="Images solved together in one batch (default 8; --quick 2)."),
        click.option("--examples", type=int, default=2, help="Images per set shown in the example grids."),
        click.option("--quick", is_flag=True, help="Tiny configuration (CI smoke test): 2 images per set, 2 levels, 10 steps, 2 restarts."),
        ray_option,
        threads_option,
        click.option("--device", default="auto", help="auto | cpu | cuda[:N]."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--report-only", is_flag=True,
                     help="Solve nothing: rewrite the tables, plots and index.html from the records stored in --out."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group("bench", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def bench() -> None:
    """Reproduce the paper's experiments (curves, SNA table, speed plots) as resumable benchmarks."""


def _budget(o: dict) -> dict:
    base = QUICK if o["quick"] else NORMAL
    b = {k: (o[k] if o[k] is not None else base[k]) for k in ("n", "steps", "restarts", "batch")}
    for k in ("steps", "restarts", "batch", "n"):
        if b[k] is not None and b[k] < 1:
            fail(f"--{k} must be >= 1, got {b[k]}")
    if o["examples"] < 0:
        fail(f"--examples must be >= 0, got {o['examples']}")
    return b


def _prepare(o: dict, command: str, task: str | None, name: str) -> tuple[Bench, dict]:
    """Validate the common options, load the generator (for its image size) and the sets."""
    from ..generators import GeneratorUnavailable
    from ..runs.pipeline_job import cached_generator

    b = _budget(o)
    if o["truth_seeds"] is not None:
        try:
            parse_seed_range(o["truth_seeds"])
        except ValueError as e:
            fail(first_line(e))
    if o["images"] is not None:
        if not Path(o["images"]).is_dir():
            fail(f"--images folder not found: {o['images']}")
    dev = pick_device(o["device"])
    out = Path(o["out_dir"] or f"out/{'bench-quick' if o['quick'] else 'bench'}/{name}")
    if o["report_only"] and not (out / "results.jsonl").is_file():
        fail(f"--report-only: no stored results in {out}")
    try:
        G = cached_generator(o["generator_name"], str(dev))
    except GeneratorUnavailable as e:
        fail(first_line(e))
    try:
        sets = evaluation_sets(G.image_shape[-1], images=o["images"], truth_seeds=o["truth_seeds"], n=b["n"], seed=o["seed"],
                               examples=o["examples"])
    except (ValueError, OSError) as e:
        fail(first_line(e))
    bench_ = Bench(out, o["generator_name"], G.image_shape[-1], sets, steps=b["steps"], restarts=b["restarts"], seed=o["seed"],
                   batch=b["batch"], progress=not o["quiet"])
    run = {"command": command, "settings": bench_.settings(command, task), "batch": b["batch"], "device": str(dev),
           "ray": o["ray_address"], "runtime": runtime_record(), "environment": environment(), "quick": o["quick"],
           "report_only": o["report_only"],
           "sets": {s.name: {"n": len(s), "description": s.description, "images": list(s.ids)} for s in sets}}
    if o["report_only"]:  # keep the device and versions of the run that solved the images
        old = R.read_json(out / "config.json") or {}
        run.update({k: old[k] for k in ("batch", "device", "ray", "runtime", "environment") if k in old})
    return bench_, run


def _run_and_report(bench_: Bench, run: dict, solve, report) -> None:
    """Solve (unless ``--report-only``), then write ``config.json`` (how this invocation ran, once
    the store accepted it) and the report; an interrupted run writes both for what it finished."""
    from ..runs import LocalExecutor, RayExecutor, StoreBusy

    if run["report_only"]:
        click.echo(f"reported the stored records, solved none; wrote {report()}")
        return

    def write_config() -> None:
        R.write_text(bench_.out / "config.json", json.dumps(run, indent=2, default=str) + "\n")

    try:
        executor = RayExecutor(run["ray"], cpus_per_task=threads_per_task()) if run["ray"] else LocalExecutor(run["device"])
        with executor:  # a Ray address that does not answer is refused before the folder is made
            prepare_out(bench_.out)
            bench_.executor = executor
            try:
                stats = solve()
            except KeyboardInterrupt:  # keep a report of the finished images
                write_config()
                report()
                raise
    except (StoreBusy, ImportError) as e:
        fail(first_line(e))
    write_config()
    click.echo(f"solved {stats.solved} images, skipped {stats.skipped} already done ({stats.seconds:.0f} s); wrote {report()}")


def _parse_list(text: str | None, name: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        fail(f"{name} is empty")
    return items


def _check_bm3d(methods) -> None:
    if "bm3d" in methods:
        from ..solvers.bm3d import BM3DUnavailable, _import_bm3d

        try:
            _import_bm3d()
        except BM3DUnavailable as e:
            fail(f"{e} (or leave bm3d out with --methods)")


@bench.command()
@click.option("--task", type=click.Choice(C.TASKS), required=True, help="The task whose levels are swept.")
@click.option("--levels", type=str, default=None,
              help="Comma-separated levels replacing the task's (observed fraction, sigma 0-255, factor, or m/n).")
@click.option("--methods", type=str, default=None, help="Comma-separated subset of the task's methods.")
@_common
def curves(task, levels, methods, **o):
    """True MSE against the measurement level, one line per method (the paper's Figure 2)."""
    allowed = C.METHODS[task]
    methods = _parse_list(methods, "--methods") or list(allowed)
    for m in methods:
        if m not in allowed:
            fail(f"method {m!r} does not apply to task {task}; choose from {', '.join(allowed)}")
    _check_bm3d(methods)
    level_list = _parse_list(levels, "--levels")
    _budget(o)
    bench_, run = _prepare(o, "curves", task, f"curves-{task}")
    size = bench_.size
    if level_list is None:
        lv = C.default_levels(task, size, o["quick"])
    else:
        try:
            lv = [float(v) for v in level_list]
            for v in lv:
                C.check_level(task, v, size)
        except ValueError as e:
            fail(str(e) if "levels" in str(e) else f"--levels must be numbers, got {levels!r}")
    run.update(levels=lv, methods=methods)
    _run_and_report(bench_, run, lambda: C.run_curves(bench_, task, lv, methods),
                    lambda: C.report_curves(bench_, task, lv, methods, run))


@bench.command()
@click.option("--sigma", type=FiniteFloat(), default=S.SIGMA, help="Noise sigma on the 0-255 scale.")
@click.option("--methods", type=str, default=None,
              help=f"Comma-separated subset of the variants and classical denoisers ({', '.join(S.LABELS)}).")
@_common
def sna(sigma, methods, **o):
    """Denoising with and without Stochastic Noise Addition, CSGM and ILO, PSNR (the paper's Table 1), beside classical denoisers."""
    if not sigma > 0:
        fail(f"--sigma must be > 0 (SNA needs noise), got {sigma}")
    methods = _parse_list(methods, "--methods") or list(S.LABELS)
    for m in methods:
        if m not in S.LABELS:
            fail(f"--methods: {m!r} is not one of {', '.join(S.LABELS)}")
    _check_bm3d(methods)
    bench_, run = _prepare(o, "sna", "denoise", "sna")
    run.update(levels=[sigma], methods=methods)
    _run_and_report(bench_, run, lambda: S.run_sna(bench_, sigma, methods), lambda: S.report_sna(bench_, sigma, methods, run))


@bench.command()
@click.option("--task", type=click.Choice(C.TASKS), default=P.DEFAULT_TASK, help="The task.")
@click.option("--level", type=FiniteFloat(), default=None,
              help="Measurement level (default: inpaint 1.0 = inversion, denoise 25, superres 4, cs 0.1).")
@_common
def speed(task, level, **o):
    """True MSE and perceptual distance against elapsed seconds, ILO against CSGM (Figures 6 and 7)."""
    level = P.default_level(task) if level is None else level
    _budget(o)
    bench_, run = _prepare(o, "speed", task, f"speed-{task}")
    try:
        C.check_level(task, level, bench_.size)
    except ValueError as e:
        fail(str(e).replace("levels are", "--level must be"))
    run.update(levels=[level], methods=["ilo", "csgm"])
    _run_and_report(bench_, run, lambda: P.run_speed(bench_, task, level), lambda: P.report_speed(bench_, task, level, run))


@bench.command()
@click.option("--root", type=click.Path(file_okay=False), default="out/bench", help="Folder holding the runs (curves-<task>, sna, speed-<task>).")
def targets(root):
    """The paper's targets checked against the finished runs under ROOT; writes targets.md/json and index.html."""
    from ..bench.targets import write_targets

    if not Path(root).is_dir():
        fail(f"--root folder not found: {root}")
    click.echo(f"wrote {write_targets(root)}")
    click.echo((Path(root) / "targets.md").read_text().split("\n\n## SNA")[0])
