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

Methods: CSGM with the MSE, the perceptual and the combined loss, PULSE, ILO, and BM3D for
denoising. An operator without an image-space observation (compressed sensing) has no
perceptual target, so the two perceptual CSGM variants do not apply to it.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from ..operators import TASKS as OPERATORS
from ..operators import Denoising, operator_class
from ..pipeline import run_method
from . import report as R
from .harness import Bench, Cell, cell_problem, make_cells, measurement_rows, rows_of

TASKS = tuple(OPERATORS)
CSGM_VARIANTS = ("csgm", "csgm-perceptual", "csgm-mse-perceptual")


def methods_for(task: str) -> tuple[str, ...]:
    """The methods that apply to a task: the perceptual CSGM variants need the operator's
    perceptual target, BM3D a denoising operator.

    >>> methods_for("cs")
    ('csgm', 'pulse', 'ilo')
    """
    op = operator_class(task)
    variants = CSGM_VARIANTS if op.perceptual_target is not None else CSGM_VARIANTS[:1]
    return variants + ("pulse", "ilo") + (("bm3d",) if issubclass(op, Denoising) else ())


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


def solve_cell(bench: Bench, task: str, cell: Cell) -> dict:
    """Solve one cell: the batch of images at one level with one method."""
    truth, ids = bench.truth(cell)
    prob = cell_problem(task, cell.level, bench.G, truth, seed=bench.seed, start=cell.start)
    res, scores = run_method(prob, bench.G, cell.method, total_steps=bench.steps, restarts=bench.restarts,
                             progress=bench.progress)
    rows = measurement_rows(scores["per_image"], cell, ids, task=task, method=cell.method, seed=bench.seed,
                            steps=res.steps, seconds=res.seconds)
    lv = f"{cell.level:g}"
    bench.save_examples(cell, ids, {"truth": prob.truth, f"observation_{lv}": prob.operator.observation_image(prob.y).clamp(-1, 1),
                                    f"{cell.method}_{lv}": res.image})
    return {"rows": rows, "solver_config": res.config}


def cells_for(bench: Bench, levels, methods) -> list[Cell]:
    return make_cells(bench.sets, methods, levels, bench.batch)


def run_curves(bench: Bench, task: str, levels, methods) -> dict:
    """Solve every missing cell of ``task``; returns the run statistics."""
    return bench.run(cells_for(bench, levels, methods), partial(solve_cell, bench, task), desc=f"curves {task}")


# ---------------------------------------------------------------------------------------------
def ratio_rows(summary: list[dict], task: str, sets, levels, methods) -> tuple[list[str], list[list]]:
    """The paper's targets as ratios of mean true MSE, other method over ILO (> 1: ILO better)."""
    cols = []
    if "csgm" in methods:
        cols.append(("CSGM / ILO", ("csgm",)))
    variants = [m for m in CSGM_VARIANTS if m in methods]
    if len(variants) > 1:
        cols.append(("best CSGM / ILO", tuple(variants)))
    for m, name in (("pulse", "PULSE / ILO"), ("bm3d", "BM3D / ILO")):
        if m in methods:
            cols.append((name, (m,)))
    rows = []
    for s in sets:
        for lv in levels:
            ilo = R.mean_of(summary, set=s, method="ilo", level=lv)
            row = [s, level_label(task, lv)]
            for _, ms in cols:
                vals = [v for v in (R.mean_of(summary, set=s, method=m, level=lv) for m in ms) if v is not None]
                row.append(R.dec(min(vals) / ilo) if vals and ilo else None)
            rows.append(row)
    return ["set", "level"] + [c[0] for c in cols], rows


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
    """Write the measurements, summary, plots, grids and ``index.html`` of the cells of this run."""
    out = bench.store.out
    rows = rows_of(bench.records_for(cells_for(bench, levels, methods)))
    R.write_measurements(out, rows)
    summary = R.summarize(rows)
    sets = [s.name for s in bench.sets]
    levels = [float(v) for v in levels]
    rhead, rrows = ratio_rows(summary, task, sets, levels, methods)
    shead, srows = summary_rows(summary, task, sets, levels, methods)
    R.write_text(out / "summary.json", json.dumps({"task": task, "summary": summary, "ratios": [dict(zip(rhead, r)) for r in rrows]},
                                                    indent=1) + "\n")
    R.write_text(out / "summary.md", f"## {task}: ratios of mean true MSE (other / ILO)\n\n{R.markdown_table(rhead, rrows)}\n\n"
                                     f"## {task}: per method and level\n\n{R.markdown_table(shead, srows)}\n")
    plots, grids = [], []
    for s in bench.sets:
        p = f"plots/curves_{task}_{s.name}.png"
        if any(r["set"] == s.name for r in rows):
            R.plot_curves(summary, s.name, methods, levels, out / p, xlabel=operator_class(task).level_name,
                          title=f"{task}: {s.description} (n={len(s)})")
            plots.append((p, s))
        g = f"grids/{task}_{s.name}.png"
        columns = [("truth", "truth"), ("observation", "observation_{level}")] + [(R.short(m), m + "_{level}") for m in methods]
        per_level = [(level_label(task, lv), {"level": f"{lv:g}"}) for lv in levels]
        if R.example_grid(bench.store, s.name, bench.example_ids(s.name), columns, out / g, rows_per_image=per_level, cell=88):
            grids.append((g, s))
    intro = (f"<p>Task <b>{task}</b> ({operator_class(task).level_name}); generator <b>{run['settings']['generator']}</b>; every method "
             f"{bench.steps} steps in total, {bench.restarts} restarts (BM3D is non-iterative); preset hyperparameters. "
             "Lower true MSE is better; ratios &gt; 1 mean ILO is better.</p>")
    sections = [
        ("Ratios of mean true MSE (other method / ILO)", R.html_table(rhead, rrows)),
        ("Plots", "".join(R.img_tag(p, f"{s.name}: mean over images, band 25-75th percentile") for p, s in plots)),
        ("Per method and level", R.html_table(shead, srows)),
        ("Examples", "".join(R.img_tag(g, f"{s.name}: truth, observation and every method, one row per level") for g, s in grids)),
        ("Files", R.files_html(["measurements.csv", "measurements.json", "summary.json", "summary.md", "results.jsonl", "run.json"])),
        ("Settings", R.settings_html(run)),
    ]
    return R.write_index(out, f"ilo bench curves --task {task}", sections, intro=intro)
