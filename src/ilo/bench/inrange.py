"""Never worse than CSGM in range (issue 15, item 4): CSGM against ILO on faces drawn from the generator.

    python -m ilo.bench.inrange --faces 4 --steps 300 --restarts 2 --threads 1 --json inrange.json

On held-out generated faces (truth seeds ``600_000 + i``, the harness's ``generated`` set;
``--tuning-seeds`` instead runs on tuning seeds 10 000-10 999, to decide a setting on) and every task at its default level (the operators'
``default_level``: inpainting 10 %, super-resolution x4, denoising sigma 25, compressed sensing
10 %; ``--level`` sets one level for every task; ``box``: inpainting of the central square of a third of
the side, or ``--level`` of it), each problem built and scored by :mod:`ilo.pipeline`:

- ``csgm``: CSGM at its preset;
- ``ilo``: the default ILO, range-extended and self-tuned (``run_method(..., extend=True)``);
- ``ilo paper``: the paper's ILO (``extend=False``).

Every method gets the same budget (``--steps`` x ``--restarts``). The self-tuned ILO's
candidates include the CSGM method's solution at that budget, computed on the fit part of the
measurements (``SelectionConfig.csgm == "method"``; on all of them for denoising; for
super-resolution the challenger of the choice, ``"challenge"``; random inpainting and CS, since
session 14, also run it on all measurements as such a challenger, ``method_challenger``), so the
JSON also keeps, per face, the choice, the oracle candidate (lowest true MSE) and the true MSE of
the CSGM candidate (``csgm_stage_true_mse``: the challenger's where there is one; also
``csgm_challenger``, its held-out
estimate against the choice's, the choice it challenged, ``against``, and that choice's true
MSE, ``against_true_mse``: whether the estimate ranked the two right): where ILO falls below
CSGM, they say whether the selection or the candidates are to blame. Prints one Markdown table; resumable (tasks in ``--json`` are
skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .. import metrics as M
from ..operators import TASKS
from ..pipeline import build_problem, run_method, truth_from_seeds
from .classical_tuning import BOX, problem_spec
from .harness import EVAL_SEED0, parse_seed_range
from .realfaces_eval import checkpoint, mean

#: (label, method, extend) of the methods compared
METHODS = (("csgm", "csgm", True), ("ilo self-tuned", "ilo", True), ("ilo paper", "ilo", False))


#: the tasks: the operators' keys and :data:`~ilo.bench.classical_tuning.BOX`
CHOICES = (*TASKS, BOX)


def run_task(G, truth: torch.Tensor, task: str, *, steps: int, restarts: int, level: float | None = None) -> dict:
    """Every method of :data:`METHODS` on ``truth [B, C, H, W]`` at ``task``'s default level (or ``level``):
    per-image ``psnr``, ``ssim`` and ``true_mse`` per method, seconds, and the self-tuned
    ILO's choice, oracle and its CSGM candidate's true MSE per image."""
    from ..solvers.selection import paste_observed

    spec = problem_spec(task, tuple(truth.shape[1:]), level)
    prob = build_problem(spec, G, seed=0, truth=truth, framing="generator")
    out: dict = {"description": prob.operator.describe(), "level": prob.level, "per_image": {}, "seconds": {}}
    for label, method, extend in METHODS:
        result, sc = run_method(prob, G, method, total_steps=steps, restarts=restarts, extend=extend)
        out["per_image"][label] = {k: sc["per_image"][k] for k in ("psnr", "ssim", "true_mse")}
        out["seconds"][label] = sc["seconds"]
        if result.selection is not None and result.candidates is not None:
            names = result.selection["candidates"]
            true_mse = torch.stack([M.mse(paste_observed(c, prob.y, prob.operator), truth)
                                    for c in result.candidates]).nan_to_num(nan=float("inf"))  # [K, B]; NaN: skipped
            out["selection"] = {"choice": result.selection["choice"],
                                "oracle": [names[int(k)] for k in true_mse.argmin(0)],
                                "oracle_true_mse": true_mse.min(0).values.tolist(),
                                "csgm_stage_true_mse": true_mse[names.index(result.selection["csgm_candidate"])].tolist()}
            if "csgm_challenger" in result.selection:  # its held-out estimate against the choice's, where taken
                ch = out["selection"]["csgm_challenger"] = result.selection["csgm_challenger"]
                if "against" in ch:  # the true MSE of the choice it challenged: did its estimate rank them right?
                    ch["against_true_mse"] = [true_mse[names.index(n), i].item() for i, n in enumerate(ch["against"])]
    return out


def table(results: dict) -> str:
    """Markdown, one row per task: mean PSNR (dB) per method and ILO self-tuned minus CSGM
    (mean over the faces, and the worst face)."""
    labels = [m[0] for m in METHODS]
    lines = ["| task | " + " | ".join(labels) + " | self-tuned − CSGM: mean | worst face |",
             "|---|" + "---|" * (len(labels) + 2)]
    for r in results.values():
        psnr = {m: r["per_image"][m]["psnr"] for m in labels}
        diff = [a - b for a, b in zip(psnr["ilo self-tuned"], psnr["csgm"])]
        lines.append(f"| {r['description']} | " + " | ".join(f"{mean(psnr[m]):.2f}" for m in labels)
                     + f" | {mean(diff):+.2f} | {min(diff):+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=4, help="generated faces, truth seeds 600000, 600001, ...")
    p.add_argument("--truth-seeds", default=None, help="a seed range A-B instead of --faces (not the tuning seeds)")
    p.add_argument("--tuning-seeds", default=None,
                   help="a range A-B of the tuning seeds instead, to decide a setting on (e.g. 10000-10003)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks of {', '.join(CHOICES)}")
    p.add_argument("--level", type=float, default=None,
                   help="every task at this level (its operator's unit, e.g. 0.05 observed) instead of its default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=Path("inrange.json"))
    a = p.parse_args(argv)
    seeds = (parse_seed_range(a.tuning_seeds, tuning=True) if a.tuning_seeds
             else parse_seed_range(a.truth_seeds or f"{EVAL_SEED0}-{EVAL_SEED0 + a.faces - 1}"))
    tasks = a.tasks.split(",")
    unknown = [t for t in tasks if t not in CHOICES]
    if unknown:
        p.error(f"unknown task {unknown[0]!r}; choose from {', '.join(CHOICES)}")
    torch.set_num_threads(a.threads)
    from ..generators import load_generator

    G = load_generator(a.generator)
    truth = truth_from_seeds(G, seeds)
    meta = {"truth_seeds": seeds, "steps": a.steps, "restarts": a.restarts, "generator": a.generator,
            "threads": a.threads, **({"level": a.level} if a.level is not None else {})}
    results = json.loads(a.json.read_text())["results"] if a.json.exists() else {}
    for name in tasks:  # a task key, also the key of its results
        if name in results:
            continue
        t = time.time()
        results[name] = run_task(G, truth, name, steps=a.steps, restarts=a.restarts, level=a.level)
        results[name]["wall_seconds"] = time.time() - t
        meta["load"] = os.getloadavg()
        checkpoint(a.json, meta, results, name, time.time() - t)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
