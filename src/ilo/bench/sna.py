"""``ilo bench sna``: Stochastic Noise Addition on and off, for CSGM and ILO (Table 1 of the paper).

Denoising at sigma = 30 (0-255 scale): CSGM and ILO with their presets, each run with SNA
switched off and on (``run_method(..., sna=...)``), the same budget for all four; the table
reports PSNR (dB) as the paper does, beside true MSE.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from ..operators import Denoising
from ..pipeline import run_method
from . import report as R
from .harness import Bench, Cell, cell_problem, make_cells, measurement_rows, rows_of

TASK = Denoising.task
SIGMA = 30.0
#: (label, method, sna)
VARIANTS = (("csgm", "csgm", False), ("csgm+sna", "csgm", True), ("ilo", "ilo", False), ("ilo+sna", "ilo", True))
LABELS = tuple(v[0] for v in VARIANTS)


def solve_cell(bench: Bench, cell: Cell) -> dict:
    _, method, sna = next(v for v in VARIANTS if v[0] == cell.method)
    truth, ids = bench.truth(cell)
    prob = cell_problem(TASK, cell.level, bench.G, truth, seed=bench.seed, start=cell.start)
    res, scores = run_method(prob, bench.G, method, total_steps=bench.steps, restarts=bench.restarts, sna=sna,
                             progress=bench.progress)
    rows = measurement_rows(scores["per_image"], cell, ids, task=TASK, method=cell.method,
                            seed=bench.seed, steps=res.steps, seconds=res.seconds)
    bench.save_examples(cell, ids, {"truth": prob.truth, "observation": prob.operator.observation_image(prob.y).clamp(-1, 1),
                                    cell.method: res.image})
    return {"rows": rows, "solver_config": res.config}


def cells_for(bench: Bench, sigma: float) -> list[Cell]:
    return make_cells(bench.sets, LABELS, [sigma], bench.batch)


def run_sna(bench: Bench, sigma: float = SIGMA) -> dict:
    return bench.run(cells_for(bench, sigma), partial(solve_cell, bench), desc="sna")


def table_rows(summary: list[dict], sets) -> tuple[list[str], list[list]]:
    """One row per set: PSNR (mean ± std) of the four variants and the SNA gains in dB."""
    head = ["set", "n"] + [f"{R.label(m)} PSNR" for m in LABELS] + ["CSGM gain dB", "ILO gain dB", "ILO+SNA / CSGM+SNA (MSE)"]
    rows = []
    for s in sets:
        ps = {m: R.mean_of(summary, "psnr", set=s, method=m) for m in LABELS}
        sd = {m: R.stat_of(summary, "psnr", "std", set=s, method=m) for m in LABELS}
        n = max((e["n"] for e in summary if e["set"] == s), default=0)
        cells = [f"{ps[m]:.2f} ± {sd[m]:.2f}" if ps[m] is not None else None for m in LABELS]
        gain = lambda a, b: ps[b] - ps[a] if ps[a] is not None and ps[b] is not None else None
        mse = {m: R.mean_of(summary, "true_mse", set=s, method=m) for m in ("csgm+sna", "ilo+sna")}
        ratio = mse["csgm+sna"] / mse["ilo+sna"] if all(mse.values()) else None
        rows.append([s, n] + cells + [R.dec(gain("csgm", "csgm+sna")), R.dec(gain("ilo", "ilo+sna")), R.dec(ratio)])
    return head, rows


def report_sna(bench: Bench, sigma: float, run: dict) -> Path:
    out = bench.store.out
    rows = rows_of(bench.records_for(cells_for(bench, sigma)))
    R.write_measurements(out, rows)
    summary = R.summarize(rows)
    sets = [s.name for s in bench.sets]
    head, trows = table_rows(summary, sets)
    mhead = ["set", "method", "n", "true MSE mean", "± std", "PSNR dB", "SSIM", "perceptual", "s / image"]
    mrows = []
    for s in sets:
        for m in LABELS:
            e = next((v for v in summary if v["set"] == s and v["method"] == m), None)
            if e:
                mrows.append([s, m, e["n"], e["true_mse"]["mean"], e["true_mse"]["std"], R.dec(e["psnr"]["mean"]),
                              R.dec(e["ssim"]["mean"], 3), R.dec(e.get("perceptual", {}).get("mean"), 3), R.dec(e["seconds_per_image"], 1)])
    R.write_text(out / "summary.json", json.dumps({"sigma": sigma, "summary": summary, "table": [dict(zip(head, r)) for r in trows]},
                                                  indent=1) + "\n")
    R.write_text(out / "summary.md", f"## SNA at sigma = {sigma:g}: PSNR dB (mean ± std over images)\n\n{R.markdown_table(head, trows)}\n\n"
                                     f"## per method\n\n{R.markdown_table(mhead, mrows)}\n")
    R.plot_bars(summary, sets, LABELS, out / "plots/sna_psnr.png", title=f"denoising, sigma = {sigma:g}: SNA off / on")
    grids = []
    for s in bench.sets:
        g = f"grids/sna_{s.name}.png"
        cols = [("truth", "truth"), ("noisy", "observation")] + [(R.short(m), m) for m in LABELS]
        if R.example_grid(bench.store, s.name, bench.example_ids(s.name), cols, out / g, cell=96):
            grids.append((g, s))
    intro = (f"<p>Denoising at σ = {sigma:g} (0-255 scale), CSGM and ILO with Stochastic Noise Addition off and on; "
             f"generator <b>{run['settings']['generator']}</b>; {bench.steps} steps in total and {bench.restarts} restarts each. "
             "The analogue of Table 1 of Daras et al. (2021): the paper reports CSGM 19.89 → 21.38 dB and ILO 28.34 → 32.92 dB.</p>")
    sections = [
        ("PSNR (dB, mean ± std over images)", R.html_table(head, trows)),
        ("Plot", R.img_tag("plots/sna_psnr.png", "mean PSNR per set and method; whiskers: std over images")),
        ("Per method", R.html_table(mhead, mrows)),
        ("Examples", "".join(R.img_tag(g, f"{s.name}: truth, noisy observation, the four variants") for g, s in grids)),
        ("Files", R.files_html(["measurements.csv", "measurements.json", "summary.json", "summary.md", "results.jsonl", "run.json"])),
        ("Settings", R.settings_html(run)),
    ]
    return R.write_index(out, "ilo bench sna", sections, intro=intro)
