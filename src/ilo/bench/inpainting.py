"""Benchmark: CSGM against ILO for random inpainting, and the cost of an ILO step.

    python -m ilo.bench.inpainting --out docs/bench [--n 16] [--levels 0.05 0.1 0.3] [--steps 600]

Evaluation images: ``--n`` held-out generated faces (seeds 500_000 + i: never used by tests,
which use seeds < 1000, nor by tuning, which used 10_000-10_999) and the two real photos.
Each image has its own random mask (seed ``level * 1e6 + i``). CSGM and ILO get the same total
number of steps and the same restarts. Prints a table and writes ``inpainting.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from .. import metrics as M
from ..generators import load_generator
from ..images import photo
from ..operators import Inpainting
from ..pipeline import simulate, truth_from_seeds
from ..solvers import default_config, solve

EVAL_SEED0 = 500_000


def eval_images(G, n: int) -> tuple[torch.Tensor, list[str], list[str]]:
    size = G.image_shape[-1]
    x = [truth_from_seeds(G, [EVAL_SEED0 + i for i in range(n)])] if n else []
    names = [f"seed{EVAL_SEED0 + i}" for i in range(n)]
    sets = ["generated"] * n
    for p in ("astronaut", "grace_hopper"):
        x.append(photo(p, size).to(G.device))
        names.append(p)
        sets.append("real")
    return torch.cat(x), names, sets


def per_image_masks(shape, level: float, n: int) -> Inpainting:
    masks = [Inpainting.random(shape, level, torch.Generator().manual_seed(int(level * 1e6) + i)).mask for i in range(n)]
    return Inpainting(shape, torch.cat(masks))


def time_steps(G, batch: int, reps: int = 20) -> dict:
    """Seconds per step: bare forward+backward of G from z, and of ``tail(k)`` from each layer,
    against ILO's full step (loss, backward, Adam, l1 projection, best-iterate tracking)."""
    from ..solvers import CSGMConfig, ILOConfig, RoundConfig
    from ..solvers.ilo import ilo

    op = Inpainting.random(G.image_shape, 0.3, torch.Generator().manual_seed(0))
    x = truth_from_seeds(G, list(range(batch)))
    y = op(x)

    def bare(k: int) -> float:
        s = G.head(k)(G.sample_latent(batch, torch.Generator().manual_seed(1)))
        key = "z" if k == 0 else "h"
        v = s[key].clone().requires_grad_(True)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                out = G.tail(k)({key: v})
                op.measurement_loss(out, y).sum().backward()
            best = min(best, (time.perf_counter() - t) / reps)
        return best

    out = {"batch": batch, "bare_full": bare(0)}
    for k in range(1, G.num_layers - 1):
        cfg = ILOConfig(csgm=CSGMConfig(steps=1, restarts=1), rounds=(RoundConfig(k, reps * 3, 0.05, 100.0),))
        res = ilo(y, op, G, cfg)
        times = [h["time"] for h in res.history if h["layer"] == k]
        step = (times[-1] - times[0]) / (len(times) - 1)
        out[f"layer{k}"] = {"bare_tail": bare(k), "ilo_step": step}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="digiface-dcgan")
    ap.add_argument("--n", type=int, default=16, help="held-out generated faces")
    ap.add_argument("--levels", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    ap.add_argument("--steps", type=int, default=600, help="total steps of each method")
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--out", default="docs/bench")
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args(argv)
    G = load_generator(args.generator)
    X, names, sets = eval_images(G, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for level in args.levels:
        op = per_image_masks(G.image_shape, level, X.shape[0])
        y = simulate(op, X, 0)
        for method in ("csgm", "ilo"):
            cfg = default_config(method, G, "inpaint", total_steps=args.steps, restarts=args.restarts, level=level)
            t = time.perf_counter()
            res = solve(y, op, G, method, cfg, seeds=0, progress=True)
            secs = time.perf_counter() - t
            mse = M.mse(res.image, X)
            for subset in ("generated", "real"):
                idx = [i for i, s in enumerate(sets) if s == subset]
                if idx:
                    rows.append({"level": level, "method": method, "set": subset, "n": len(idx),
                                 "true_mse": float(mse[idx].mean()), "psnr": float(M.psnr(res.image[idx], X[idx]).mean()),
                                 "per_image": {names[i]: float(mse[i]) for i in idx}, "seconds": secs})
            print(f"observed {level:.0%} {method}: true MSE generated {float(mse[[i for i, s in enumerate(sets) if s == 'generated']].mean()) if args.n else float('nan'):.5f}"
                  f" real {float(mse[[i for i, s in enumerate(sets) if s == 'real']].mean()):.5f} ({secs:.0f} s)", flush=True)
    table = ["| observed | set | CSGM true MSE | ILO true MSE | CSGM / ILO |", "|---|---|---|---|---|"]
    for level in args.levels:
        for subset in ("generated", "real"):
            c = [r for r in rows if r["level"] == level and r["set"] == subset and r["method"] == "csgm"]
            i = [r for r in rows if r["level"] == level and r["set"] == subset and r["method"] == "ilo"]
            if c and i:
                table.append(f"| {level:.0%} | {subset} (n={c[0]['n']}) | {c[0]['true_mse']:.5f} | {i[0]['true_mse']:.5f} | {c[0]['true_mse'] / i[0]['true_mse']:.2f}x |")
    print("\n".join(table))
    result = {"rows": rows, "table": table, "args": vars(args),
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
    if not args.skip_timing:
        timing = time_steps(G, batch=8)
        result["timing"] = timing
        print(f"\nbatch {timing['batch']}: bare forward+backward of G {timing['bare_full'] * 1e3:.1f} ms")
        print("| layer | bare tail(k) fwd+bwd ms | ILO step ms | ILO step / bare tail | ILO step / bare G |")
        print("|---|---|---|---|---|")
        for k, v in timing.items():
            if k.startswith("layer"):
                print(f"| {k[5:]} | {v['bare_tail'] * 1e3:.1f} | {v['ilo_step'] * 1e3:.1f} | {v['ilo_step'] / v['bare_tail']:.2f} | {v['ilo_step'] / timing['bare_full']:.2f} |")
    (out / "inpainting.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
