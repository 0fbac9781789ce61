"""Learning-rate sweeps on the tuning images only (never the evaluation sets).

    python -m ilo.bench.tuning --steps 100 --restarts 2 --methods csgm --lrs 0.05,0.1,0.2,0.4 \\
        --specs inpaint:1.0,inpaint:0.1,cs:0.05,superres:4 [--json out.json]

Images: the generated faces with seeds 10000-10003 (drawn as the harness draws its faces) and
LFW faces 70, 80, 90 of ``skimage.data.lfw_subset()`` (gray in every channel), solved together
in one batch; image ``i`` has seed ``i`` (its mask, noise and solver starts from their own
streams, :mod:`ilo.rng`). For ``ilo`` the learning rate is its first (CSGM) stage's.
Prints mean PSNR (dB) per set and writes every number to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

#: the tuning images (disjoint from tests < 1000, the harness's 600 000+ and LFW 0-63)
TUNING_SEEDS = (10000, 10001, 10002, 10003)
TUNING_LFW = (70, 80, 90)


def tuning_images(G) -> tuple[torch.Tensor, list[str]]:
    """``[7, C, H, W]``: four generated tuning faces, then three LFW tuning faces."""
    from .harness import lfw_faces
    from ..pipeline import truth_from_seeds

    gen = truth_from_seeds(G, list(TUNING_SEEDS)).cpu()
    lfw = lfw_faces(G.image_shape[-1], G.image_shape[0], list(TUNING_LFW))
    return torch.cat([gen, lfw]), ["generated"] * len(TUNING_SEEDS) + ["lfw"] * len(TUNING_LFW)


def sweep(G, specs: list[tuple[str, float]], methods: list[str], lrs: list[float], steps: int, restarts: int,
          echo=print) -> list[dict]:
    from ..pipeline import method_config, run_method
    from .harness import cell_problem

    X, sets = tuning_images(G)
    rows = []
    for task, level in specs:
        prob = cell_problem(task, level, G, X, seed=0, start=0)
        for method in methods:
            for lr in lrs:
                base = method_config(prob, G, method, total_steps=steps, restarts=restarts)
                cfg = replace(base, csgm=replace(base.csgm, lr=lr)) if method == "ilo" else replace(base, lr=lr)
                t = time.time()
                _, met = run_method(prob, G, method, config=cfg)
                psnr = met["per_image"]["psnr"]
                row = {"task": task, "level": level, "method": method, "lr": lr, "steps": steps, "restarts": restarts,
                       "seconds": round(time.time() - t, 1), "psnr": psnr}
                for s in dict.fromkeys(sets):
                    vals = [p for p, k in zip(psnr, sets) if k == s]
                    row[f"psnr_{s}"] = sum(vals) / len(vals)
                rows.append(row)
                echo(f"{steps}x{restarts} {task} {level:g} {method} lr={lr:g}: PSNR generated {row['psnr_generated']:.2f} dB, "
                     f"lfw {row['psnr_lfw']:.2f} dB ({row['seconds']:.0f} s)")
    return rows


def _specs(text: str) -> list[tuple[str, float]]:
    from ..operators import TASKS

    out = []
    for item in text.split(","):
        task, _, level = item.partition(":")
        if TASKS.get(task) is None or not level:
            raise SystemExit(f"ilo.bench.tuning: error: bad --specs item {item!r} (task:level, e.g. inpaint:0.1)")
        out.append((task, float(level)))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--specs", default="inpaint:1.0,inpaint:0.1,cs:0.05,superres:4", help="task:level,...")
    p.add_argument("--methods", default="csgm", help="comma-separated methods (csgm, csgm-perceptual, ..., pulse, ilo)")
    p.add_argument("--lrs", default="0.05,0.1,0.2,0.4", help="comma-separated learning rates")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    from ..generators import load_generator

    torch.set_num_threads(a.threads)
    G = load_generator(a.generator)
    rows = sweep(G, _specs(a.specs), a.methods.split(","), [float(v) for v in a.lrs.split(",")], a.steps, a.restarts)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"argv": argv, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
