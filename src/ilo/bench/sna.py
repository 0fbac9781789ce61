"""``ilo bench sna``: Stochastic Noise Addition on and off, for CSGM and ILO (Table 1 of the paper).

Denoising at sigma = 30 (0-255 scale): CSGM and ILO with their presets, each run with SNA
switched off and on (``run_method(..., sna=...)``), the same budget for all four; the table
reports PSNR (dB) as the paper does, beside true MSE. The classical denoisers
(:data:`ilo.solvers.CLASSICAL_METHODS`: BM3D, non-local means, TV) run beside them, and the
table shows the best of them and ILO's margin over it in dB.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..operators import Denoising
from ..pipeline import run_method
from ..runs import Item, Job
from . import report as R
from .curves import best_classical, classical_for
from .harness import Bench, batch_problem, image_rows, results

TASK = Denoising.task
SIGMA = 30.0
#: the classical denoisers run beside the four variants
CLASSICAL = classical_for(TASK)
#: (label, method, sna): SNA off and on for CSGM and ILO, then the classical methods (no SNA)
VARIANTS = (("csgm", "csgm", False), ("csgm+sna", "csgm", True), ("ilo", "ilo", False), ("ilo+sna", "ilo", True)) + \
    tuple((m, m, None) for m in CLASSICAL)
LABELS = tuple(v[0] for v in VARIANTS)
SNA_LABELS = LABELS[:4]


def solve_batch(job: Job, items: list[Item], device: str = "cpu") -> list[dict]:
    """The job function of ``ilo bench sna`` (``job.method`` is a label of :data:`VARIANTS`)."""
    _, method, sna = next(v for v in VARIANTS if v[0] == job.method)
    b = batch_problem(job, items, device)
    res, scores = run_method(b.problem, b.G, method, total_steps=b.cfg["steps"], restarts=b.cfg["restarts"], sna=sna,
                             seed=b.seeds)
    rows = [image_rows(b, i, scores["per_image"], method=job.method, steps=res.steps, seconds=res.seconds)
            for i in range(len(b.ids))]
    obs = b.problem.operator.observation_image(b.problem.y).clamp(-1, 1)
    return results(b, rows, {"truth": b.problem.truth, "observation": obs, job.method: res.image}, {"solver": res.config})


def run_sna(bench: Bench, sigma: float = SIGMA, methods=LABELS):
    """Solve every missing (job, image) of the ``methods`` (labels of :data:`VARIANTS`)."""
    return bench.run(bench.jobs(TASK, [sigma], methods), solve_batch, "sna", TASK)


def table_rows(summary: list[dict], sets) -> tuple[list[str], list[list]]:
    """One row per set: PSNR (mean ± std) of the four variants, the SNA gains in dB, and the
    best classical denoiser with ILO+SNA's margin over it (< 0: the classical method is better)."""
    head = ["set", "n"] + [f"{R.label(m)} PSNR" for m in SNA_LABELS] + ["CSGM gain dB", "ILO gain dB", "ILO+SNA / CSGM+SNA (MSE)",
                                                                        "best classical", "its PSNR dB", "ILO+SNA − classical dB"]
    rows = []
    for s in sets:
        ps = {m: R.mean_of(summary, "psnr", set=s, method=m) for m in SNA_LABELS}
        sd = {m: R.stat_of(summary, "psnr", "std", set=s, method=m) for m in SNA_LABELS}
        n = max((e["n"] for e in summary if e["set"] == s), default=0)
        cells = [f"{ps[m]:.2f} ± {sd[m]:.2f}" if ps[m] is not None else None for m in SNA_LABELS]
        gain = lambda a, b: ps[b] - ps[a] if ps[a] is not None and ps[b] is not None else None
        mse = {m: R.mean_of(summary, "true_mse", set=s, method=m) for m in ("csgm+sna", "ilo+sna")}
        ratio = mse["csgm+sna"] / mse["ilo+sna"] if all(mse.values()) else None
        level = next((e["level"] for e in summary if e["set"] == s), None)
        best, best_psnr, _, _ = best_classical(summary, s, level, CLASSICAL)
        margin = ps["ilo+sna"] - float(best_psnr) if best_psnr is not None and ps["ilo+sna"] is not None else None
        rows.append([s, n] + cells + [R.dec(gain("csgm", "csgm+sna")), R.dec(gain("ilo", "ilo+sna")), R.dec(ratio),
                                      best, best_psnr, R.dec(margin)])
    return head, rows


def report_sna(bench: Bench, sigma: float, methods, run: dict) -> Path:
    out = bench.out
    jobs = bench.jobs(TASK, [sigma], methods)
    rows = bench.rows(jobs)
    R.write_measurements(out, rows)
    summary = R.summarize(rows)
    sets = [s.name for s in bench.sets]
    head, trows = table_rows(summary, sets)
    mhead = ["set", "method", "n", "true MSE mean", "± std", "PSNR dB", "SSIM", "perceptual", "s / image"]
    mrows = []
    for s in sets:
        for m in methods:
            e = next((v for v in summary if v["set"] == s and v["method"] == m), None)
            if e:
                mrows.append([s, m, e["n"], e["true_mse"]["mean"], e["true_mse"]["std"], R.dec(e["psnr"]["mean"]),
                              R.dec(e["ssim"]["mean"], 3), R.dec(e.get("perceptual", {}).get("mean"), 3), R.dec(e["seconds_per_image"], 1)])
    R.write_text(out / "summary.json", json.dumps({"sigma": sigma, "summary": summary, "table": [dict(zip(head, r)) for r in trows]},
                                                  indent=1) + "\n")
    wins = [r for r in trows if r[-1] is not None and float(r[-1]) < 0]
    R.write_text(out / "summary.md", f"## SNA at sigma = {sigma:g}: PSNR dB (mean ± std over images)\n\n{R.markdown_table(head, trows)}\n\n"
                                     f"{R.wins_text(len(wins), len(trows), 'ILO+SNA')}\n\n"
                                     f"## per method\n\n{R.markdown_table(mhead, mrows)}\n")
    R.plot_bars(summary, sets, methods, out / "plots/sna_psnr.png", title=f"denoising, sigma = {sigma:g}: SNA off / on")
    grids = []
    pictures = bench.pictures(jobs)
    for s in bench.sets:
        g = f"grids/sna_{s.name}.png"
        cols = [("truth", "truth"), ("noisy", "observation")] + [(R.short(m), m) for m in methods]
        if R.example_grid(pictures, s.name, s.example_ids(), cols, out / g, cell=96):
            grids.append((g, s))
    intro = (f"<p>Denoising at σ = {sigma:g} (0-255 scale), CSGM and ILO with Stochastic Noise Addition off and on; "
             f"generator <b>{bench.generator}</b>; {bench.steps} steps in total and {bench.restarts} restarts each; the classical "
             f"denoisers ({', '.join(CLASSICAL)}) beside them. "
             "The analogue of Table 1 of Daras et al. (2021): the paper reports CSGM 19.89 → 21.38 dB and ILO 28.34 → 32.92 dB.</p>"
             f"<p><b>{R.wins_text(len(wins), len(trows), 'ILO+SNA')}</b></p>")
    sections = [
        ("PSNR (dB, mean ± std over images)", R.html_table(head, trows)),
        ("Plot", R.img_tag("plots/sna_psnr.png", "mean PSNR per set and method; whiskers: std over images")),
        ("Per method", R.html_table(mhead, mrows)),
        ("Examples", "".join(R.img_tag(g, f"{s.name}: truth, noisy observation, the four variants, the classical denoisers")
                              for g, s in grids)),
        ("Files", R.files_html(["measurements.csv", "measurements.json", "summary.json", "summary.md", "results.jsonl", "run.json",
                                "config.json"])),
        ("Settings", R.settings_html(run)),
    ]
    return R.write_index(out, "ilo bench sna", sections, intro=intro)
