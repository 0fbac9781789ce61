"""``ilo demo``: the four inverse problems, CSGM against ILO, on generated faces and two real photos.

Every task at its default level (the operators' ``default_level``), through the pipeline's one
path (:func:`ilo.pipeline.build_problem`, :func:`~ilo.pipeline.run_method`, :func:`~ilo.pipeline.record`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable

import torch

from .generators.base import LayeredGenerator
from .images import grid, photo
from .operators import TASKS
from .pipeline import ProblemSpec, build_problem, record, run_method, truth_from_seeds

#: held-out seeds of the demo's generated faces (tests use seeds < 1000, tuning 10_000-10_999)
DEMO_SEED0 = 900_000
METHODS = ("csgm", "ilo")


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


def run_demo(G: LayeredGenerator, out: Path, *, steps: int, faces: int, progress: bool, writer_cls, env: dict,
             restarts: int = 2, echo: Callable[[str], None] = print) -> list[dict]:
    """Solve every task with CSGM and ILO; write ``<task>.png``, ``<task>.json`` and a summary
    with ``writer_cls(out)`` (an atomic writer); print the summary table with ``echo``."""
    truth, names = demo_images(G, faces)
    rows_summary: list[dict] = []
    for task in TASKS:
        prob = build_problem(ProblemSpec(task), G, seed=0, truth=truth)
        title = prob.operator.describe()
        results, scores = {}, {}
        for method in METHODS:
            if progress:
                print(f"{title}: {method}", file=sys.stderr)
            results[method], scores[method] = run_method(prob, G, method, total_steps=steps, restarts=restarts,
                                                         progress=progress)
            for i, name in enumerate(names):
                rows_summary.append({
                    "task": task, "method": method, "image": name,
                    "true_mse": scores[method]["per_image"]["true_mse"][i],
                    "psnr": scores[method]["per_image"]["psnr"][i],
                    "seconds": scores[method]["seconds"],
                })
        obs = prob.operator.observation_image(prob.y).clamp(-1, 1)
        rows, caps = [], []
        for i in range(len(names)):
            rows.append([truth[i], obs[i]] + [results[m].image[i] for m in METHODS])
            caps.append(["", ""] + [f"{scores[m]['per_image']['psnr'][i]:.1f} dB" for m in METHODS])
        w = writer_cls(out)
        grid(rows, col_labels=["truth", "observation", "CSGM", "ILO"], row_labels=names, captions=caps, cell=128).save(
            w.path(f"{task}.png"))
        w.json(f"{task}.json", {"task": task, "title": title, "operator": prob.operator.config(), "metrics": scores,
                                "records": {m: record(prob, results[m], scores[m]) for m in METHODS},
                                "configs": {m: results[m].config for m in METHODS}})
        w.commit()
    table = summary_table(rows_summary)
    w = writer_cls(out)
    w.json("summary.json", {"rows": rows_summary, "steps": steps, "restarts": restarts, "environment": env})
    w.path("summary.md").write_text(table + "\n")
    w.commit()
    echo(table)
    echo(f"\nwrote {out}/{{{','.join(TASKS)}}}.png and summary.md")
    return rows_summary


def summary_table(rows: list[dict]) -> str:
    """Markdown table: one line per task and method, mean true MSE and PSNR over the images."""
    lines = ["| task | method | true MSE (mean) | PSNR dB (mean) | seconds |", "|---|---|---|---|---|"]
    order = list(TASKS)
    keys = sorted({(r["task"], r["method"]) for r in rows}, key=lambda k: (order.index(k[0]), k[1]))
    for key in keys:
        rs = [r for r in rows if (r["task"], r["method"]) == key]
        m = sum(r["true_mse"] for r in rs) / len(rs)
        p = sum(r["psnr"] for r in rs) / len(rs)
        lines.append(f"| {key[0]} | {key[1]} | {m:.5f} | {p:.2f} | {rs[0]['seconds']:.1f} |")
    return "\n".join(lines)
