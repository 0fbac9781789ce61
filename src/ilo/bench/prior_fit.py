"""The Gaussian prior's fit: seconds and the prior alone's quality, per fitting procedure and seed.

    python -m ilo.bench.prior_fit --variants "pairs:1,flips:3" --seeds 0,1 --json prior-fit.json

Each variant ``kind:power_iterations[:views]`` fits the digiface DCGAN's augmented prior
(:func:`ilo.solvers.gaussian.fit_prior` at its default samples and components): ``pairs`` takes
each image with its mirror image (the default since session 17), ``flips`` flips a random
half of all images (sessions 13-16), ``plain`` takes the images as they are; ``views``: each
generated image's shifts and zooms (pairs only; default :data:`~ilo.solvers.gaussian.VIEWS`). For each fit: its
wall seconds and the mean PSNR of the prior alone (:func:`~ilo.solvers.gaussian.posterior_mean`,
the harmonic remainder) on the real tuning faces and on generated faces (latents from seed
:data:`GENERATED_SEED`), at random inpainting 5 / 10 %, the central box and super-resolution
x4 / x8 / x16, each face's mask or noise from its own seed (:func:`make_problem`). Two seeds
of one procedure show how much the fit's own randomness moves these numbers. The load before
each fit is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .. import metrics as M
from .classical_tuning import BOX, make_problem

#: the cells where the self-tuning uses the prior: (spec, level)
CELLS = (("inpaint", 0.05), ("inpaint", 0.1), (BOX, 1 / 3), ("superres", 4), ("superres", 8), ("superres", 16))
#: the generated faces' latents: drawn from this seed (not a truth seed of the benchmarks)
GENERATED_SEED = 10_000
KINDS = ("pairs", "flips", "plain")


def parse_variant(text: str) -> tuple[str, int, int | None]:
    """``"pairs:1:2"`` -> ``("pairs", 1, 2)``, ``"flips:3"`` -> ``("flips", 3, None)``; ValueError
    naming the problem otherwise."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or parts[0] not in KINDS or not all(p.isdigit() and int(p) > 0 for p in parts[1:]) \
            or (len(parts) == 3 and parts[0] != "pairs"):
        raise ValueError(f"variant {text!r}: expected KIND:POWER_ITERATIONS[:VIEWS] with KIND one of "
                         f"{', '.join(KINDS)} (VIEWS for pairs only)")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None


def fit(G, kind: str, power_iterations: int, seed: int, samples: int | None = None, components: int | None = None,
        views: int | None = None):
    """``(prior, seconds)`` of one fit."""
    from ..solvers import gaussian as g

    kwargs = {"samples": samples or g.SAMPLES, "components": components or g.COMPONENTS, "seed": seed,
              "power_iterations": power_iterations, "views": views}
    t = time.perf_counter()
    if kind == "plain":
        prior = g.fit_prior(G, augment=g.PLAIN, **kwargs)
    else:
        prior = g.fit_prior(G, augment=g.AUGMENT, pairs=kind == "pairs", **kwargs)
    return prior, time.perf_counter() - t


def quality(prior, faces: dict[str, torch.Tensor], cells=CELLS) -> dict[str, dict[str, float]]:
    """``{set: {"spec level": mean PSNR of the prior alone}}`` over the image sets ``faces``."""
    from ..solvers.gaussian import posterior_mean

    out: dict[str, dict[str, float]] = {}
    for name, x in faces.items():
        out[name] = {}
        for spec, level in cells:
            op, y = make_problem(spec, level, x)
            out[name][f"{spec} {level:g}"] = float(M.psnr(posterior_mean(y, op, prior), x).mean())
    return out


def table(rows: list[dict]) -> str:
    cells = list(rows[0]["psnr"]["real"])
    head = "| variant | seed | fit s | load | " + " | ".join(f"{c} real / gen" for c in cells) + " |"
    lines = [head, "|" + "---|" * (4 + len(cells))]
    for r in rows:
        vals = " | ".join(f"{r['psnr']['real'][c]:.3f} / {r['psnr']['generated'][c]:.2f}" for c in cells)
        lines.append(f"| {r['variant']} | {r['seed']} | {r['seconds']:.1f} | {r['load']:.1f} | {vals} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m ilo.bench.prior_fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="pairs:1,flips:3", help="KIND:POWER_ITERATIONS[:VIEWS], comma-separated")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--generated", type=int, default=8, help="generated faces besides the real tuning faces")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: ilo.runtime's choice)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from .. import runtime

    rt = runtime.configure(args.threads)
    from ..data.realfaces import real_faces
    from ..generators import load_generator

    variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    G = load_generator("digiface-dcgan")
    with torch.no_grad():
        generated = G(G.sample_latent(args.generated, torch.Generator().manual_seed(GENERATED_SEED)))
    faces = {"real": real_faces("tuning", 64)[0], "generated": generated}
    rows = []
    for kind, its, views in variants:
        for seed in seeds:
            load = os.getloadavg()[0]
            prior, secs = fit(G, kind, its, seed, views=views)
            name = f"{kind}:{its}" + (f":{views}" if views else "")
            rows.append({"variant": name, "seed": seed, "seconds": secs, "load": load,
                         "psnr": quality(prior, faces)})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"meta": {"runtime": rt.to_dict(), "torch": torch.__version__,
                                                  "faces": {k: len(v) for k, v in faces.items()}},
                                         "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
