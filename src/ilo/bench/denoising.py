"""Benchmark: denoising with and without Stochastic Noise Addition; CSGM variants, ILO, BM3D.

    python -m ilo.bench.denoising --out docs/bench [--n 16] [--sigmas 25 30] [--steps 600]

Evaluation images: ``--n`` held-out generated faces (seeds 500_000 + i) and the two real
photos; ``--tuning`` uses the tuning images instead (generated seeds 10_000 + i, LFW faces
64-99). Every iterative method gets the same steps and restarts. Prints a table per sigma
(true MSE and PSNR per method and image set, and the ratio of the best CSGM variant's true MSE
over ILO+SNA's) and writes ``denoising.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import metrics as M
from ..generators import load_generator
from ..images import pil_to_tensor
from ..operators import Denoising
from ..pipeline import simulate, truth_from_seeds
from ..solvers import default_config, solve
from .inpainting import eval_images

#: (label, method, sna): the CSGM columns of the paper, CSGM and ILO with/without SNA, BM3D
VARIANTS = (
    ("csgm", "csgm", False),
    ("csgm+sna", "csgm", True),
    ("csgm-perceptual", "csgm-perceptual", False),
    ("csgm-mse-perceptual", "csgm-mse-perceptual", False),
    ("ilo", "ilo", False),
    ("ilo+sna", "ilo", True),
    ("bm3d", "bm3d", False),
)


def tuning_images(G, n: int) -> tuple[torch.Tensor, list[str], list[str]]:
    """Tuning set: generated seeds 10_000 + i and three LFW faces from the reserved range 64-99."""
    from PIL import Image
    from skimage.data import lfw_subset

    size = G.image_shape[-1]
    x = [truth_from_seeds(G, [10_000 + i for i in range(n)])]
    faces = lfw_subset()[[70, 80, 90]]
    x += [pil_to_tensor(Image.fromarray((f * 255).astype(np.uint8)).resize((size, size), Image.LANCZOS)).to(G.device) for f in faces]
    return torch.cat(x), [f"seed{10_000 + i}" for i in range(n)] + ["lfw70", "lfw80", "lfw90"], ["generated"] * n + ["real"] * 3


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="digiface-dcgan")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[25.0, 30.0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--variants", nargs="+", default=[v[0] for v in VARIANTS])
    ap.add_argument("--tuning", action="store_true", help="use the tuning images, not the evaluation images")
    ap.add_argument("--out", default="docs/bench")
    args = ap.parse_args(argv)
    G = load_generator(args.generator)
    X, names, sets = (tuning_images if args.tuning else eval_images)(G, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    variants = [v for v in VARIANTS if v[0] in args.variants]
    for sigma in args.sigmas:
        op = Denoising(G.image_shape, sigma)
        y = simulate(op, X, 0)
        noisy_psnr = M.psnr(y, X)
        for label, method, sna in variants:
            if method == "bm3d":
                try:
                    import bm3d  # noqa: F401
                except ImportError:
                    print("bm3d not installed: skipped")
                    continue
            cfg = default_config(method, G, "denoise", total_steps=args.steps, restarts=args.restarts, level=sigma)
            if method != "bm3d":
                loss = replace(cfg.loss, sna=sna)
                cfg = replace(cfg, loss=loss, csgm=replace(cfg.csgm, loss=loss)) if method == "ilo" else replace(cfg, loss=loss)
            t = time.perf_counter()
            res = solve(y, op, G, method, cfg, seeds=0, progress=True)
            secs = time.perf_counter() - t
            mse, psnr = M.mse(res.image, X), M.psnr(res.image, X)
            for subset in ("generated", "real"):
                idx = [i for i, s in enumerate(sets) if s == subset]
                rows.append({"sigma": sigma, "variant": label, "set": subset, "n": len(idx),
                             "true_mse": float(mse[idx].mean()), "psnr": float(psnr[idx].mean()),
                             "noisy_psnr": float(noisy_psnr[idx].mean()), "seconds": secs,
                             "per_image": {names[i]: float(mse[i]) for i in idx}})
            print(f"sigma {sigma:g} {label}: PSNR generated {rows[-2]['psnr']:.2f} real {rows[-1]['psnr']:.2f} ({secs:.0f} s)", flush=True)
    table = ["| sigma | set | " + " | ".join(v[0] for v in variants) + " | best CSGM / ILO+SNA |",
             "|---|---|" + "---|" * len(variants) + "---|"]
    for sigma in args.sigmas:
        for subset in ("generated", "real"):
            r = {x["variant"]: x for x in rows if x["sigma"] == sigma and x["set"] == subset}
            cells = [f"{r[v[0]]['true_mse']:.5f} / {r[v[0]]['psnr']:.2f} dB" if v[0] in r else "-" for v in variants]
            csgms = [r[k]["true_mse"] for k in r if k.startswith("csgm")]
            ratio = f"{min(csgms) / r['ilo+sna']['true_mse']:.2f}x" if csgms and "ilo+sna" in r else "-"
            table.append(f"| {sigma:g} | {subset} | " + " | ".join(cells) + f" | {ratio} |")
    print("\n".join(table))
    result = {"rows": rows, "table": table, "args": vars(args),
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
    (out / ("denoising_tuning.json" if args.tuning else "denoising.json")).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
