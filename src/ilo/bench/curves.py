"""``ilo bench curves``: true MSE against the measurement level, one line per method.

The analogue of Figure 2 of Daras et al. (2021): for one task, every method at every level on
every image of every evaluation set, with the same budget (``steps`` in total, ``restarts``)
and the preset hyperparameters of :func:`ilo.solvers.default_config` (tuned on the tuning
seeds and LFW faces 64-99 only).

Levels (the CSV's ``level`` column) are the operator's ``level`` in its own unit
(``level_name``), swept over the operator class's ``sweep_levels``:

- inpainting: observed fraction of the pixels, 1%, 5%, 10%, 30%, 50%, 100%;
- denoising: noise sigma on the 0-255 scale, 5, 10, 25, 50, 100, 256;
- super-resolution: downsampling factor, every power of two that leaves at least 4x4 pixels
  (64x64 -> factors 2, 4, 8, 16, i.e. 32, 16, 8, 4 pixels);
- compressed sensing: measurements m/n, 1%, 5%, 10%, 25%, 50%.

Methods: CSGM with the MSE, the perceptual and the combined loss, PULSE, ILO, and the classical
baselines that solve the task's operator (:data:`ilo.solvers.CLASSICAL_METHODS`: BM3D, non-local
means and TV for denoising, biharmonic and TV inpainting, bicubic and TV super-resolution, the
scaled adjoint, TV and wavelet least squares for compressed sensing). An operator without an
image-space observation (compressed sensing) has no perceptual target, so the two perceptual
CSGM variants do not apply to it. The tables show the best classical method beside ILO (its
mean PSNR and ILO's margin over it in dB), so that a generative method that loses to a
classical one says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..operators import TASKS as OPERATORS
from ..operators import operator_class
from ..pipeline import run_method
from ..runs import Item, Job
from ..solvers import CLASSICAL_METHODS
from . import report as R
from .harness import Bench, batch_problem, image_rows, results

TASKS = tuple(OPERATORS)
CSGM_VARIANTS = ("csgm", "csgm-perceptual", "csgm-mse-perceptual")


def methods_for(task: str) -> tuple[str, ...]:
    """The methods that apply to a task: the perceptual CSGM variants need the operator's
    perceptual target, a classical method its operator class.

    >>> methods_for("cs")
    ('csgm', 'pulse', 'ilo', 'adjoint', 'tv-cs', 'wavelet-cs')
    """
    op = operator_class(task)
    variants = CSGM_VARIANTS if op.perceptual_target is not None else CSGM_VARIANTS[:1]
    return variants + ("pulse", "ilo") + classical_for(task)


def classical_for(task: str) -> tuple[str, ...]:
    """The classical methods that solve the task's operator.

    >>> classical_for("superres")
    ('bicubic', 'tv-superres')
    """
    return tuple(m for m, cls in CLASSICAL_METHODS.items() if issubclass(operator_class(task), cls))


#: the methods of every task
METHODS = {task: methods_for(task) for task in TASKS}


def default_levels(task: str, size: int, quick: bool = False) -> list[float]:
    """The operator's sweep (two levels with ``quick``) for images ``size`` pixels wide."""
    return [float(v) for v in operator_class(task).sweep_levels(size, quick)]


def check_level(task: str, level: float, size: int) -> None:
    """``ValueError`` ("<task> levels: ...") unless ``level`` is a valid level of ``task`` for images of ``size``."""
    try:
        operator_class(task).check_level(level, size)
    except ValueError as e:
        raise ValueError(f"{task} levels: {e}") from None


def level_label(task: str, level: float) -> str:
    """A short label of a level for tables and grids.

    >>> level_label("inpaint", 0.05), level_label("superres", 8.0)
    ('5%', 'x8')
    """
    return operator_class(task).level_label(level)


def solve_batch(job: Job, items: list[Item], device: str = "cpu") -> list[dict]:
    """The job function of ``ilo bench curves``: a batch of one set's images at one level with
    one method (contract: :mod:`ilo.runs`); examples keep the truth, the observation and the
    reconstruction as ``truth``, ``observation_<level>`` and ``<method>_<level>``."""
    b = batch_problem(job, items, device)
    res, scores = run_method(b.problem, b.G, job.method, total_steps=b.cfg["steps"], restarts=b.cfg["restarts"], seed=b.seeds)
    rows = [image_rows(b, i, scores["per_image"], method=job.method, steps=res.steps, seconds=res.seconds)
            for i in range(len(b.ids))]
    lv = f"{b.level:g}"
    obs = b.problem.operator.observation_image(b.problem.y).clamp(-1, 1)
    return results(b, rows, {"truth": b.problem.truth, f"observation_{lv}": obs, f"{job.method}_{lv}": res.image},
                   {"solver": res.config})


def run_curves(bench: Bench, task: str, levels, methods):
    """Solve every missing (job, image) of ``task``; returns the engine's :class:`~ilo.runs.RunReport`."""
    return bench.run(bench.jobs(task, levels, methods), solve_batch, "curves", task)


# ---------------------------------------------------------------------------------------------
def ratio_rows(summary: list[dict], task: str, sets, levels, methods) -> tuple[list[str], list[list]]:
    """The paper's targets as ratios of mean true MSE, other method over ILO (> 1: ILO better),
    and the best classical method (by mean PSNR) with ILO's margin over it in dB (< 0: the
    classical method is better)."""
    cols = []
    if "csgm" in methods:
        cols.append(("CSGM / ILO", ("csgm",)))
    variants = [m for m in CSGM_VARIANTS if m in methods]
    if len(variants) > 1:
        cols.append(("best CSGM / ILO", tuple(variants)))
    for m, name in (("pulse", "PULSE / ILO"), ("bm3d", "BM3D / ILO")):
        if m in methods:
            cols.append((name, (m,)))
    classical = [m for m in methods if m in CLASSICAL_METHODS]
    rows = []
    for s in sets:
        for lv in levels:
            ilo = R.mean_of(summary, set=s, method="ilo", level=lv)
            row = [s, level_label(task, lv)]
            for _, ms in cols:
                vals = [v for v in (R.mean_of(summary, set=s, method=m, level=lv) for m in ms) if v is not None]
                row.append(R.dec(min(vals) / ilo) if vals and ilo else None)
            if classical:
                row += best_classical(summary, s, lv, classical)
            rows.append(row)
    head = ["set", "level"] + [c[0] for c in cols]
    return head + (list(CLASSICAL_HEAD) if classical else []), rows


#: the columns of :func:`best_classical`
CLASSICAL_HEAD = ("best classical", "its PSNR dB", "ILO PSNR dB", "ILO − classical dB")


def best_classical(summary: list[dict], set_name: str, level: float, classical) -> list:
    """The classical method with the highest mean PSNR at a level, its PSNR, ILO's, and ILO's
    margin in dB (negative: the classical method beats ILO)."""
    psnr = {m: R.mean_of(summary, "psnr", set=set_name, method=m, level=level) for m in classical}
    psnr = {m: v for m, v in psnr.items() if v is not None}
    ilo = R.mean_of(summary, "psnr", set=set_name, method="ilo", level=level)
    if not psnr:
        return [None, None, R.dec(ilo), None]
    best = max(psnr, key=psnr.get)
    return [best, R.dec(psnr[best]), R.dec(ilo), R.dec(ilo - psnr[best]) if ilo is not None else None]


def classical_wins(rhead: list[str], rrows: list[list]) -> list[list]:
    """The rows of a ratio table where a classical method beats ILO (ILO's margin below 0 dB)."""
    if "ILO − classical dB" not in rhead:
        return []
    k = rhead.index("ILO − classical dB")
    return [r for r in rrows if r[k] is not None and float(r[k]) < 0]


def summary_rows(summary: list[dict], task: str, sets, levels, methods) -> tuple[list[str], list[list]]:
    head = ["set", "level", "method", "n", "true MSE mean", "± std", "PSNR dB", "SSIM", "perceptual", "s / image"]
    rows = []
    for s in sets:
        for lv in levels:
            for m in methods:
                e = [v for v in summary if v["set"] == s and v["level"] == lv and v["method"] == m]
                if e:
                    e = e[0]
                    g = lambda k, f="mean": e[k][f] if k in e else None
                    rows.append([s, level_label(task, lv), m, e["n"], g("true_mse"), g("true_mse", "std"), R.dec(g("psnr")),
                                 R.dec(g("ssim"), 3), R.dec(g("perceptual"), 3), R.dec(e["seconds_per_image"], 1)])
    return head, rows


def report_curves(bench: Bench, task: str, levels, methods, run: dict) -> Path:
    """Write the measurements, summary, plots, grids and ``index.html`` of the jobs of this run."""
    out = bench.out
    jobs = bench.jobs(task, levels, methods)
    rows = bench.rows(jobs)
    R.write_measurements(out, rows)
    summary = R.summarize(rows)
    sets = [s.name for s in bench.sets]
    levels = [float(v) for v in levels]
    rhead, rrows = ratio_rows(summary, task, sets, levels, methods)
    shead, srows = summary_rows(summary, task, sets, levels, methods)
    wins = classical_wins(rhead, rrows)
    R.write_text(out / "summary.json", json.dumps({"task": task, "summary": summary, "ratios": [dict(zip(rhead, r)) for r in rrows]},
                                                    indent=1) + "\n")
    R.write_text(out / "summary.md", f"## {task}: ratios of mean true MSE (other / ILO), best classical method\n\n"
                                     f"{R.markdown_table(rhead, rrows)}\n\n{R.wins_text(len(wins), len(rrows))}\n\n"
                                     f"## {task}: per method and level\n\n{R.markdown_table(shead, srows)}\n")
    plots, grids = [], []
    pictures = bench.pictures(jobs)
    for s in bench.sets:
        p = f"plots/curves_{task}_{s.name}.png"
        if any(r["set"] == s.name for r in rows):
            R.plot_curves(summary, s.name, methods, levels, out / p, xlabel=operator_class(task).level_name,
                          title=f"{task}: {s.description} (n={len(s)})")
            plots.append((p, s))
        g = f"grids/{task}_{s.name}.png"
        columns = [("truth", "truth"), ("observation", "observation_{level}")] + [(R.short(m), m + "_{level}") for m in methods]
        per_level = [(level_label(task, lv), {"level": f"{lv:g}"}) for lv in levels]
        if R.example_grid(pictures, s.name, s.example_ids(), columns, out / g, rows_per_image=per_level, cell=88):
            grids.append((g, s))
    intro = (f"<p>Task <b>{task}</b> ({operator_class(task).level_name}); generator <b>{bench.generator}</b>; every generative "
             f"method {bench.steps} steps in total, {bench.restarts} restarts (the classical ones are non-iterative or run "
             "their own iterations); preset hyperparameters. Lower true MSE is better; ratios &gt; 1 mean ILO is better; "
             "<b>ILO − classical dB</b> &lt; 0 means a classical method beats ILO.</p>"
             f"<p><b>{R.wins_text(len(wins), len(rrows))}</b></p>")
    sections = [
        ("Ratios of mean true MSE (other method / ILO) and the best classical method", R.html_table(rhead, rrows)),
        ("Plots", "".join(R.img_tag(p, f"{s.name}: mean over images, band 25-75th percentile") for p, s in plots)),
        ("Per method and level", R.html_table(shead, srows)),
        ("Examples", "".join(R.img_tag(g, f"{s.name}: truth, observation and every method, one row per level") for g, s in grids)),
        ("Files", R.files_html(["measurements.csv", "measurements.json", "summary.json", "summary.md", "results.jsonl", "run.json",
                                "config.json"])),
        ("Settings", R.settings_html(run)),
    ]
    return R.write_index(out, f"ilo bench curves --task {task}", sections, intro=intro)
