"""The DCGAN presets re-decided term by term, on tuning images only (never the evaluation sets).

    python -m ilo.bench.presets_tuning --steps 600 --restarts 4 [--json out.json] [--threads 2]

Images: the 15 real tuning faces (:func:`ilo.data.realfaces.real_faces`, ``"tuning"``) and the
generated faces with truth seeds :data:`GENERATED_SEEDS` (disjoint from the evaluation seeds of
docs/BENCHMARKS.md), solved together in one batch; image ``i`` has seed ``i``. For every task
at a representative level (:data:`SPECS`) each :data:`VARIANTS` entry changes ILO's preset in
one respect; variants whose config equals an earlier one's are not rerun. CSGM (its preset) is
the reference. Prints mean PSNR (dB) and mean perceptual distance per set (a line per run,
then a markdown table) and writes every number to ``--json`` after each run (a partial file is
usable; ``python -m ilo.bench.presets_tuning --table FILE.json`` prints its table).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable

#: generated tuning faces (the tuning seeds of :mod:`ilo.bench.tuning` and four more)
GENERATED_SEEDS = tuple(range(10000, 10008))
#: (task, level): inpainting 10% and 30% observed, super-resolution x4, denoising sigma 25, CS 10%
SPECS = (("inpaint", 0.3), ("superres", 4.0), ("denoise", 25.0), ("inpaint", 0.1), ("cs", 0.1))


def _no_perceptual(cfg):
    loss = replace(cfg.loss, perceptual=0.0)
    return replace(cfg, loss=loss, csgm=replace(cfg.csgm, loss=loss))


def _rounds_only(cfg):  # the perceptual term in the rounds, MSE in the CSGM stage
    return replace(cfg, csgm=replace(cfg.csgm, loss=replace(cfg.loss, perceptual=0.0)))


def _lr(cfg, lr: float):
    return replace(cfg, csgm=replace(cfg.csgm, lr=lr))


def _radius(cfg, r: float):
    return replace(cfg, rounds=tuple(replace(rc, radius=r) for rc in cfg.rounds))


def _stages(cfg, k: int):  # the perceptual term on the first k MobileNetV2 stages
    loss = replace(cfg.loss, perceptual_stages=k)
    return replace(cfg, loss=loss, csgm=replace(cfg.csgm, loss=replace(cfg.csgm.loss, perceptual_stages=k)))


#: name -> change of the ILO preset's config
VARIANTS: dict[str, Callable] = {
    "shipped": lambda c: c,
    "perceptual rounds only": _rounds_only,
    "perceptual 3 stages": lambda c: _stages(c, 3),
    "perceptual 3 stages rounds only": lambda c: _rounds_only(_stages(c, 3)),
    "mse": _no_perceptual,
    "mse lr0.2": lambda c: _lr(_no_perceptual(c), 0.2),
    "mse lr0.2 r0.1": lambda c: _radius(_lr(_no_perceptual(c), 0.2), 0.1),
    "mse lr0.2 r0.6": lambda c: _radius(_lr(_no_perceptual(c), 0.2), 0.6),
}


def tuning_set(G, size: int) -> tuple:
    """``[15 + 8, C, H, W]`` real then generated tuning faces, and the set name of each."""
    import torch

    from ..data.realfaces import real_faces
    from ..pipeline import truth_from_seeds

    real, _ = real_faces("tuning", size=size)
    gen = truth_from_seeds(G, list(GENERATED_SEEDS)).cpu()
    return torch.cat([real.to(gen.dtype), gen]), ["real"] * real.shape[0] + ["generated"] * len(GENERATED_SEEDS)


def _means(per: dict, sets: list[str]) -> dict:
    out = {}
    for s in dict.fromkeys(sets):
        for metric in ("psnr", "perceptual"):
            vals = [v for v, k in zip(per.get(metric, []), sets) if k == s]
            if vals:
                out[f"{metric}_{s}"] = sum(vals) / len(vals)
    return out


def run(G, steps: int, restarts: int, specs=SPECS, with_csgm: bool = True, variants=None, echo=print, on_row=None) -> list[dict]:
    from ..pipeline import ProblemSpec, build_problem, method_config, run_method

    X, sets = tuning_set(G, G.image_shape[-1])
    rows = []
    for task, level in specs:
        prob = build_problem(ProblemSpec.at_level(task, level), G, seed=0, truth=X)
        base = method_config(prob, G, "ilo", total_steps=steps, restarts=restarts)
        runs = [("csgm", "csgm", None)] if with_csgm else []
        seen = []
        for name in variants or VARIANTS:
            try:
                cfg = VARIANTS[name](base)
            except ValueError:
                continue
            if cfg in seen:
                continue
            seen.append(cfg)
            runs.append((name, "ilo", cfg))
        for name, method, cfg in runs:
            t = time.time()
            _, met = run_method(prob, G, method, config=cfg, total_steps=steps, restarts=restarts)
            row = {"task": task, "level": level, "variant": name, "steps": steps, "restarts": restarts,
                   "seconds": round(time.time() - t, 1), **_means(met["per_image"], sets),
                   "per_image": met["per_image"], "sets": sets}
            rows.append(row)
            echo(f"{task} {level:g} {name:24s} PSNR real {row['psnr_real']:.2f} gen {row['psnr_generated']:.2f}  "
                 f"perc real {row.get('perceptual_real', float('nan')):.3f} gen {row.get('perceptual_generated', float('nan')):.3f}"
                 f"  ({row['seconds']:.0f} s)")
            if on_row:
                on_row(rows)
    return rows


def table(rows: list[dict]) -> str:
    """A markdown table of :func:`run`'s rows: mean PSNR (dB) and perceptual distance per set."""
    out = ["| task | variant | PSNR real | PSNR generated | perceptual real | perceptual generated | s |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['task']} {r['level']:g} | {r['variant']} | {r['psnr_real']:.2f} | {r['psnr_generated']:.2f} | "
                   f"{r.get('perceptual_real', float('nan')):.3f} | {r.get('perceptual_generated', float('nan')):.3f} | "
                   f"{r['seconds']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--variants", default=None, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--specs", default=None, help="task:level,... (default: the five of SPECS)")
    p.add_argument("--no-csgm", action="store_true", help="skip the CSGM reference")
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="print the table of a --json file and exit")
    a = p.parse_args(argv)
    if a.table:
        rows = json.loads(a.table.read_text())["rows"]
        print(table(rows))
        return rows
    from ..runtime import configure, load_average

    rt = configure(a.threads)
    from ..generators import load_generator

    G = load_generator(a.generator)
    variants = a.variants.split(",") if a.variants else None
    head = {"argv": argv, "runtime": rt.to_dict(), "load_start": load_average()}

    def save(rows):
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps({**head, "load_now": load_average(), "rows": rows}, indent=1) + "\n")

    specs = SPECS if not a.specs else [(t, float(v)) for t, v in (item.split(":") for item in a.specs.split(","))]
    rows = run(G, a.steps, a.restarts, specs=specs, with_csgm=not a.no_csgm, variants=variants, on_row=save)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
