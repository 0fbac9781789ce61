"""``ilo bench speed``: true MSE and perceptual distance against elapsed seconds (Figures 6 and 7).

Per batch of images: ILO with its preset (``steps`` in total, ``restarts``) is run as its
CSGM stage followed by its rounds (``ilo(..., init=csgm_result)``); there is one point per
stage, the first being the CSGM stage, each the best iterate so far (by measurement loss, as
ILO selects its output; the solver's own best-so-far, :attr:`ilo.solvers.StepInfo.best_image`)
at the wall time the stage ended. As the reference, CSGM with the same configuration as ILO's
first stage (loss, learning rate, restarts) is run for ILO's whole wall time (its step count
estimated from the first stage's time per step), with points at eight checkpoints. Wall times
are those of the whole batch on this machine, after an untimed warm-up of both solvers (one
step each).

The paper's target: ILO reaches CSGM's final true MSE in at most half of CSGM's wall time.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..operators import Inpainting, operator_class
from ..pipeline import image_scores, method_config
from ..runs import Item, Job
from ..solvers import csgm, ilo
from . import report as R
from .harness import Bench, batch_problem, image_rows, results

#: inversion: every pixel observed (the task of the paper's speed plots)
DEFAULT_TASK, DEFAULT_LEVEL = Inpainting.task, 1.0


def default_level(task: str) -> float:
    """The level of a speed run: inversion (every pixel observed) for inpainting, else the task's default.

    >>> default_level("inpaint"), default_level("superres")
    (1.0, 4)
    """
    cls = operator_class(task)
    return DEFAULT_LEVEL if issubclass(cls, Inpainting) else cls.default_level
CELL_METHOD = "ilo-vs-csgm"
CHECKPOINTS = 8


def solve_batch(job: Job, items: list[Item], device: str = "cpu") -> list[dict]:
    """The job function of ``ilo bench speed``: ILO's stages and the reference CSGM on one batch."""
    b = batch_problem(job, items, device)
    prob, G = b.problem, b.G
    y, op, seeds = prob.y, prob.operator, b.seeds
    cfg = method_config(prob, G, "ilo", total_steps=b.cfg["steps"], restarts=b.cfg["restarts"], extend=False)

    # untimed warm-up (first calls load the perceptual network, allocate buffers, ...)
    csgm(y, op, G, replace(cfg.csgm, steps=1), seeds=seeds)
    ilo(y, op, G, replace(cfg, csgm=replace(cfg.csgm, steps=1), rounds=tuple(replace(r, steps=1) for r in cfg.rounds)), seeds=seeds)

    # ILO: its CSGM stage, then its rounds; a point at the end of every stage
    first = csgm(y, op, G, cfg.csgm, seeds=seeds)
    points = [dict(round=0, layer=0, steps=cfg.csgm.steps, seconds=first.seconds, image=first.image)]
    cur = {"round": None, "layer": 0, "time": 0.0, "steps": cfg.csgm.steps, "best": first.image}

    def on_ilo_step(info) -> None:  # a point with the solver's best-so-far when a round ends
        if cur["round"] is not None and info.round != cur["round"]:
            points.append(dict(round=cur["round"], layer=cur["layer"], steps=cur["steps"], seconds=first.seconds + cur["time"],
                               image=cur["best"]))
        cur.update(round=info.round, layer=info.layer, time=info.time, steps=cur["steps"] + 1, best=info.best_image.clone())

    res = ilo(y, op, G, cfg, seeds=seeds, init=first, callback=on_ilo_step)
    total = first.seconds + res.seconds
    points.append(dict(round=cur["round"] or 0, layer=res.layer, steps=cfg.csgm.steps + res.steps, seconds=total, image=res.image))

    # the reference: CSGM (ILO's first stage) for ILO's whole wall time
    ref_steps = max(cfg.csgm.steps, round(total / max(first.seconds / max(cfg.csgm.steps, 1), 1e-9)))
    ref_cfg = replace(cfg.csgm, steps=int(ref_steps))
    marks = {max(1, round(ref_steps * k / CHECKPOINTS)) for k in range(1, CHECKPOINTS)} - {ref_steps}
    ref_points = []

    def on_csgm_step(info) -> None:  # a point with the solver's best-so-far at every checkpoint
        if info.step + 1 in marks:
            ref_points.append(dict(round=0, layer=0, steps=info.step + 1, seconds=info.time, image=info.best_image.clone()))

    ref = csgm(y, op, G, ref_cfg, seeds=seeds, callback=on_csgm_step)
    ref_points.append(dict(round=0, layer=0, steps=ref_cfg.steps, seconds=ref.seconds, image=ref.image))

    rows: list[list[dict]] = [[] for _ in b.ids]
    for method, pts in (("csgm", ref_points), ("ilo", points)):  # a record's metrics: its last row, ILO's final point
        for k, p in enumerate(pts):
            scores = image_scores(p["image"], prob)
            for i in range(len(b.ids)):
                rows[i] += image_rows(b, i, scores, method=method, steps=p["steps"], seconds=p["seconds"],
                                      extra={"point": k, "round": p["round"], "layer": p["layer"]})
    ex = {"truth": prob.truth, "observation": op.observation_image(y).clamp(-1, 1), "csgm_final": ref.image}
    ex.update({f"ilo_p{k}": p["image"] for k, p in enumerate(points)})
    return results(b, rows, ex, {"solver": res.config, "reference_steps": int(ref_steps)})


def run_speed(bench: Bench, task: str = DEFAULT_TASK, level: float = DEFAULT_LEVEL):
    return bench.run(bench.jobs(task, [level], [CELL_METHOD]), solve_batch, "speed", task)


# ---------------------------------------------------------------------------------------------
def time_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The first time a piecewise-linear curve ``[(seconds, value), ...]`` gets down to ``target``.

    >>> time_to_reach([(1.0, 4.0), (3.0, 2.0)], 3.0)
    2.0
    """
    for k, (t, v) in enumerate(points):
        if v <= target:
            if k == 0:
                return t
            t0, v0 = points[k - 1]
            return t0 + (t - t0) * (v0 - target) / (v0 - v) if v0 != v else t
    return None


def curve(summary: list[dict], set_name: str, method: str, metric: str) -> list[tuple[float, float]]:
    pts = sorted((e["point"], e["seconds"], e[metric]["mean"]) for e in summary
                 if e["set"] == set_name and e["method"] == method and metric in e)
    return [(p[1], p[2]) for p in pts]


def report_speed(bench: Bench, task: str, level: float, run: dict) -> Path:
    out = bench.out
    jobs = bench.jobs(task, [level], [CELL_METHOD])
    rows = bench.rows(jobs)
    R.write_measurements(out, rows)
    summary = R.summarize(rows, keys=("set", "method", "point"))
    for e in summary:  # the layer and round of a point (the same in every row of the group)
        r = next(r for r in rows if r["set"] == e["set"] and r["method"] == e["method"] and r["point"] == e["point"])
        e.update(round=r["round"], layer=r["layer"])
    thead = ["set", "n", "CSGM final true MSE", "CSGM seconds", "ILO seconds to reach it", "ILO / CSGM time",
             "ILO final true MSE", "CSGM final / ILO final"]
    trows, phead, prows = [], ["set", "method", "point", "layer", "steps", "seconds", "true MSE", "perceptual", "PSNR dB"], []
    plots = []
    for s in bench.sets:
        ilo_c, csgm_c = curve(summary, s.name, "ilo", "true_mse"), curve(summary, s.name, "csgm", "true_mse")
        if not ilo_c or not csgm_c:
            continue
        n = max(e["n"] for e in summary if e["set"] == s.name)
        (tc, mc), (_, mi) = csgm_c[-1], ilo_c[-1]
        reach = time_to_reach(ilo_c, mc)
        trows.append([s.name, n, mc, R.dec(tc, 1), R.dec(reach, 1), R.dec(reach / tc) if reach is not None else None, mi,
                      R.dec(mc / mi)])
        for e in sorted((e for e in summary if e["set"] == s.name), key=lambda e: (e["method"] != "ilo", e["point"])):
            prows.append([s.name, e["method"], e["point"], e["layer"], e["steps"], R.dec(e["seconds"], 1), e["true_mse"]["mean"],
                          R.dec(e.get("perceptual", {}).get("mean"), 3), R.dec(e["psnr"]["mean"])])
        for metric, ylabel in (("true_mse", "true mse (mean over images)"), ("perceptual", "perceptual distance (mean)")):
            ic, cc = curve(summary, s.name, "ilo", metric), curve(summary, s.name, "csgm", metric)
            if ic:
                p = f"plots/speed_{metric}_{s.name}.png"
                R.plot_speed({"csgm": cc, "ilo": ic}, out / p, ylabel=ylabel, markers={"csgm": ".--", "ilo": "o-"},
                             labels={"csgm": "CSGM (ILO's first stage) for the same time", "ilo": "ILO (first point: its CSGM stage)"},
                             reference=cc[-1][1] if cc else None, title=f"{s.description} (n={n}): one ILO point per stage")
                plots.append((p, s, metric))
    R.write_text(out / "summary.json", json.dumps({"task": task, "level": level, "summary": summary,
                                                   "table": [dict(zip(thead, r)) for r in trows]}, indent=1) + "\n")
    R.write_text(out / "summary.md", f"## speed ({task}, level {level:g})\n\n{R.markdown_table(thead, trows)}\n\n"
                                     f"## points\n\n{R.markdown_table(phead, prows)}\n")
    grids = []
    pictures = bench.pictures(jobs)
    n_points = max((e["point"] for e in summary if e["method"] == "ilo"), default=0) + 1
    for s in bench.sets:
        g = f"grids/speed_{s.name}.png"
        cols = [("truth", "truth"), ("observation", "observation")] + \
               [("CSGM stage" if k == 0 else f"ILO stage {k}", f"ilo_p{k}") for k in range(n_points)] + [("CSGM, same time", "csgm_final")]
        if R.example_grid(pictures, s.name, s.example_ids(), cols, out / g, cell=96):
            grids.append((g, s))
    intro = (f"<p>Task <b>{task}</b> at {operator_class(task).level_name} {level:g}; generator <b>{bench.generator}</b>; ILO preset with "
             f"{bench.steps} steps in total and {bench.restarts} restarts; the reference CSGM (ILO's first stage) runs for ILO's "
             "whole wall time. Seconds are wall times of a batch on this machine. Target (paper): ILO reaches CSGM's final "
             "true MSE in at most half of CSGM's time (ILO / CSGM time ≤ 0.5).</p>")
    sections = [
        ("Time to CSGM's final true MSE", R.html_table(thead, trows)),
        ("Plots", "".join(R.img_tag(p, f"{s.name}: {m.replace('_', ' ')} against elapsed seconds") for p, s, m in plots)),
        ("Points (means over images)", R.html_table(phead, prows)),
        ("Examples", "".join(R.img_tag(g, f"{s.name}: after every ILO stage, and CSGM run for the same time") for g, s in grids)),
        ("Files", R.files_html(["measurements.csv", "measurements.json", "summary.json", "summary.md", "results.jsonl", "run.json",
                                "config.json"])),
        ("Settings", R.settings_html(run)),
    ]
    return R.write_index(out, f"ilo bench speed --task {task}", sections, intro=intro)
