"""``ilo demo``: the four inverse problems, the classical baselines, CSGM and ILO, on generated
faces and two real photos.

Every task at its default level (the operators' ``default_level``), through the pipeline's one
path (:func:`ilo.pipeline.build_problem`, :func:`~ilo.pipeline.run_method`, :func:`~ilo.pipeline.record`).
The classical methods of a task are those of :data:`ilo.solvers.CLASSICAL_METHODS` that solve its
operator, at their tuned weights; the grid shows the best of them on the demo's images (by mean
PSNR against the truth: the baseline at its best), the summary every one, with its lead over ILO.

ILO runs before CSGM: its self-tuning runs the CSGM method on all measurements anyway (the
challenger of its choice, or denoising's CSGM stage), and where that run's configuration is the
one the CSGM row would use, the CSGM row is that run (:func:`shared_csgm`; the summary marks its
seconds as inside ILO's). Random inpainting and CS run it in one batch with the self-tuning's
stage, so it equals a CSGM run of its own up to float rounding; super-resolution and denoising
run it alone.

The tasks run side by side in worker processes (``ilo demo --jobs N``, by default one per usable
core: :func:`solve_tasks` on :func:`ilo.workers.imap`), the longest first; ``jobs=1`` solves them
one after another in this process. Each task's numbers are the sequential ones at the workers'
thread count.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import runtime, workers
from .generators.base import LayeredGenerator
from .images import grid, photo
from .operators import TASKS
from .operators.base import Operator
from .pipeline import Problem, ProblemSpec, build_problem, method_config, record, run_method, score, truth_from_seeds
from .solvers import CLASSICAL_METHODS, BM3DUnavailable, Result, prepare

#: held-out seeds of the demo's generated faces (tests use seeds < 1000, tuning 10_000-10_999)
DEMO_SEED0 = 900_000
#: the generative methods, after the classical ones
METHODS = ("csgm", "ilo")
#: the column labels of the generative methods in the grids
LABELS = {"csgm": "CSGM", "ilo": "ILO"}


def classical_methods(operator: Operator) -> list[str]:
    """The classical methods (:data:`~ilo.solvers.CLASSICAL_METHODS`) that solve ``operator``.

    >>> from ilo.operators import Denoising
    >>> classical_methods(Denoising((3, 8, 8), sigma255=25))
    ['bm3d', 'bm3d-free', 'nlmeans', 'tv-denoise']
    """
    return [m for m, cls in CLASSICAL_METHODS.items() if isinstance(operator, cls)]


def shared_csgm(ilo_result: Result | None, problem: Problem, G: LayeredGenerator, steps: int, restarts: int
                ) -> Result | None:
    """The CSGM method's run that a self-tuned ILO made on all of ``problem``'s measurements
    (:attr:`ilo.solvers.Result.csgm_method`), where its configuration is exactly the one the CSGM
    row would run with (:func:`~ilo.pipeline.method_config` at ``steps`` and ``restarts``); else None."""
    run = None if ilo_result is None else ilo_result.csgm_method
    if run is None or run.config != method_config(problem, G, "csgm", total_steps=steps, restarts=restarts).to_dict():
        return None
    return run


def demo_images(G: LayeredGenerator, faces: int) -> tuple[torch.Tensor, list[str]]:
    """Held-out generated faces and the two real photos at the generator's size."""
    size = G.image_shape[-1]
    seeds = [DEMO_SEED0 + i for i in range(faces)]
    parts, names = [], []
    if seeds:
        parts.append(truth_from_seeds(G, seeds).cpu())
        names += [f"face {s}" for s in seeds]
    for name in ("astronaut", "grace_hopper"):
        img = photo(name, size)
        if G.image_shape[0] == 1:
            img = img.mean(1, keepdim=True)
        parts.append(img)
        names.append(name)
    return torch.cat(parts).to(G.device), names


@dataclass
class TaskRun:
    """One task of the demo solved by every method: its problem, each method's result, scores
    (:func:`~ilo.pipeline.score`) and wall seconds, the methods whose run was ILO's own
    (:func:`shared_csgm`), a line per method skipped, and the process that solved it (its id,
    threads and :mod:`ilo.runtime` record)."""

    task: str
    problem: Problem
    results: dict[str, Result] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)
    walls: dict[str, float] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    runtime: dict = field(default_factory=dict)


def solve_task(task: str, G: LayeredGenerator, truth: torch.Tensor, *, steps: int, restarts: int, progress: bool
               ) -> TaskRun:
    """Solve ``task`` (at its default level) on ``truth [B, C, H, W]`` with its classical methods,
    ILO and CSGM (ILO first: the CSGM row may be its run)."""
    prob = build_problem(ProblemSpec(task), G, seed=0, truth=truth)
    title = prob.operator.describe()
    rt = runtime.current()
    run = TaskRun(task, prob, runtime={"process": os.getpid(), "threads": torch.get_num_threads(),
                                       **(rt.to_dict() if rt is not None else {})})
    shown_order = classical_methods(prob.operator) + list(METHODS)
    for method in [m for m in shown_order if m != "csgm"] + ["csgm"]:
        reuse = shared_csgm(run.results.get("ilo"), prob, G, steps, restarts) if method == "csgm" else None
        if reuse is not None:
            run.results[method], run.scores[method], run.walls[method] = reuse, score(reuse, prob, method), reuse.seconds
            run.shared.add(method)
            continue
        if progress:
            print(f"{title}: {method}", file=sys.stderr)
        start = time.perf_counter()
        try:
            run.results[method], run.scores[method] = run_method(prob, G, method, total_steps=steps, restarts=restarts,
                                                                 progress=progress)
        except BM3DUnavailable as e:  # an optional extra: the other classical methods stand in
            run.skipped.append(f"{task}: {method} skipped ({e})")
            continue
        run.walls[method] = time.perf_counter() - start  # the whole call: a self-tuned ILO's candidates and scoring included
    return run


def task_rows(run: TaskRun, names: list[str]) -> list[dict]:
    """The summary's rows of one task: one per method shown and image."""
    rows = []
    for method in [m for m in classical_methods(run.problem.operator) + list(METHODS) if m in run.results]:
        per = run.scores[method]["per_image"]
        for i, name in enumerate(names):
            rows.append({"task": run.task, "method": method, "image": name, "true_mse": per["true_mse"][i],
                         "psnr": per["psnr"][i], "ssim": per["ssim"][i], "seconds": run.walls[method],
                         "inside_ilo": method in run.shared})
    return rows


def write_task(run: TaskRun, truth: torch.Tensor, names: list[str], out: Path, writer_cls) -> None:
    """``<task>.png`` (truth, observation, the best classical method, CSGM, ILO) and ``<task>.json``."""
    prob, results, scores = run.problem, run.results, run.scores
    classical = [m for m in results if m not in METHODS]
    best = max(classical, key=lambda m: scores[m]["psnr"])
    shown = [best, *METHODS]
    obs = prob.operator.observation_image(prob.y).clamp(-1, 1)
    rows, caps = [], []
    for i in range(len(names)):
        rows.append([truth[i], obs[i]] + [results[m].image[i].clamp(-1, 1) for m in shown])
        caps.append(["", ""] + [f"{scores[m]['per_image']['psnr'][i]:.1f} dB / {scores[m]['per_image']['ssim'][i]:.2f}"
                                for m in shown])
    w = writer_cls(out)
    labels = ["truth", "observation", best, *(LABELS[m] for m in METHODS)]
    grid(rows, col_labels=labels, row_labels=names, captions=caps, cell=128).save(w.path(f"{run.task}.png"))
    w.json(f"{run.task}.json", {"task": run.task, "title": prob.operator.describe(), "operator": prob.operator.config(),
                                "metrics": scores, "best_classical": best, "runtime": run.runtime,
                                "records": {m: record(prob, results[m], scores[m]) for m in results},
                                "configs": {m: results[m].config for m in results}})
    w.commit()


def _solve_in_worker(task: str, G: LayeredGenerator, truth: torch.Tensor, steps: int, restarts: int) -> TaskRun:
    return solve_task(task, G, truth, steps=steps, restarts=restarts, progress=False)


def solve_tasks(G: LayeredGenerator, truth: torch.Tensor, tasks: list[str], *, steps: int, restarts: int,
                progress: bool, jobs: int = 1) -> Iterator[TaskRun]:
    """:func:`solve_task` for every task, as each finishes: one after another in this process
    (``jobs`` 1), or in ``jobs`` worker processes (:func:`ilo.workers.imap`: the threads shared
    out, the Gaussian priors the tasks' ILO uses fitted or loaded here first and handed over), the
    longest task first (the operators' ``typical_seconds``)."""
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield solve_task(task, G, truth, steps=steps, restarts=restarts, progress=progress)
        return
    seconds = {}
    for task in tasks:
        prob = build_problem(ProblemSpec(task), G, seed=0, truth=truth)
        prepare(prob.operator, G, "ilo", method_config(prob, G, "ilo", total_steps=steps, restarts=restarts),
                progress=progress)
        seconds[task] = prob.operator.typical_seconds
    order = sorted(tasks, key=lambda t: -seconds[t])
    for _, run in workers.imap(_solve_in_worker, [(t, G, truth, steps, restarts) for t in order], jobs,
                               progress=progress, desc="demo", unit="task"):
        yield run


def run_demo(G: LayeredGenerator, out: Path, *, steps: int, faces: int, progress: bool, writer_cls, env: dict,
             restarts: int = 2, echo: Callable[[str], None] = print, jobs: int = 1) -> list[dict]:
    """Solve every task with its classical methods, CSGM and ILO (in ``jobs`` processes:
    :func:`solve_tasks`); write ``<task>.png`` and ``<task>.json`` as each task finishes and a
    summary with ``writer_cls(out)`` (an atomic writer); print the summary table with ``echo``."""
    truth, names = demo_images(G, faces)
    rows_by_task: dict[str, list[dict]] = {}
    runtimes: dict[str, dict] = {}
    skipped: dict[str, list[str]] = {}
    for run in solve_tasks(G, truth, list(TASKS), steps=steps, restarts=restarts, progress=progress, jobs=jobs):
        write_task(run, truth, names, out, writer_cls)
        rows_by_task[run.task], runtimes[run.task], skipped[run.task] = task_rows(run, names), run.runtime, run.skipped
    for task in TASKS:
        for line in skipped[task]:
            echo(line)
    rows_summary = [r for task in TASKS for r in rows_by_task[task]]
    table = summary_table(rows_summary)
    w = writer_cls(out)
    w.json("summary.json", {"rows": rows_summary, "steps": steps, "restarts": restarts, "environment": env,
                            "jobs": jobs, "task_runtimes": runtimes})
    w.path("summary.md").write_text(table + "\n")
    w.commit()
    echo(table)
    echo(f"\nwrote {out}/{{{','.join(TASKS)}}}.png and summary.md")
    return rows_summary


def summary_table(rows: list[dict]) -> str:
    """Markdown table: one line per task and method (the classical ones first, then CSGM and
    ILO), mean true MSE, PSNR and SSIM over the images, the mean PSNR lead over ILO (marked
    where a method beats ILO), wall seconds of the method on all images (a CSGM row that is ILO's
    own run of the CSGM method, :func:`shared_csgm`: that run's seconds, marked as inside ILO's);
    then one line naming the tasks where a classical method beats ILO."""
    lines = ["| task | method | true MSE (mean) | PSNR dB (mean) | SSIM (mean) | vs ILO (dB) | seconds |",
             "|---|---|---|---|---|---|---|"]
    means: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        means.setdefault((r["task"], r["method"]), {"n": 0, "true_mse": 0.0, "psnr": 0.0, "ssim": 0.0,
                                                     "seconds": r["seconds"], "inside_ilo": r.get("inside_ilo", False)})
        m = means[(r["task"], r["method"])]
        m["n"] += 1
        for k in ("true_mse", "psnr", "ssim"):
            m[k] += (r[k] - m[k]) / m["n"]
    wins: dict[str, list[str]] = {}
    for (task, method), m in means.items():
        ilo = means.get((task, "ilo"))
        lead = m["psnr"] - ilo["psnr"] if ilo is not None and method != "ilo" else None
        mark = "-" if lead is None else f"{lead:+.2f}" + (" **beats ILO**" if lead > 0 else "")
        if lead is not None and lead > 0 and method not in METHODS:
            wins.setdefault(task, []).append(f"{method} {lead:+.2f} dB")
        inside = " (inside ILO's)" if m["inside_ilo"] else ""
        lines.append(f"| {task} | {method} | {m['true_mse']:.5f} | {m['psnr']:.2f} | {m['ssim']:.3f} | {mark} | "
                     f"{m['seconds']:.1f}{inside} |")
    found = ", ".join(f"{task} ({', '.join(ms)})" for task, ms in wins.items())
    lines.append("\nClassical beats ILO (mean PSNR) on: " + (found or "no task") + ".")
    return "\n".join(lines)
