"""Benchmark: classifier-guided generation for the paper's six classes (section 4.3, Figure 5).

    python -m ilo.bench.classifier --out out/bench [--seeds 8] [--radii 0.05,0.1,0.2] [--steps 20]
        [--augmentations 4] [--classifier mobilenet] [--threads 1] [--grid docs/classifier_grid.png]

For each class, ``--seeds`` faces (seeds 600_000 + i: never used by the tests, which use seeds
< 10, nor by tuning, which used seeds 0-7) are guided by one classifier at every radius with
:func:`ilo.generate.generate` (its defaults unless given). Reported per class and radius: the
mean target probability under the *held-out* classifier (radius 0 = before guidance), under the
guiding one, and the MobileNet perceptual distance to the starting face. Writes
``classifier.json`` (all numbers; finished classes are reused when the run is repeated with the
same settings), ``classifier.md`` (the tables) and a grid (first seed of every class, one
column per radius).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ..generate import GuidanceConfig, generate
from ..generators import load_generator
from ..images import grid
from ..nets import class_index, class_name

#: the paper's six classes -> the closest ImageNet classes
PAPER_CLASSES = {
    "frog": "tree frog",
    "coral": "brain coral",
    "Irish wolfhound": "Irish wolfhound",
    "goldfish": "goldfish",
    "Boston terrier": "Boston bull",
    "apple": "Granny Smith",
}
EVAL_SEED0 = 600_000


def run_class(G, cls: str, seeds: list[int], radii: list[float], classifier: str, cfg: GuidanceConfig) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    gen = generate(G, cls, [0.0] + radii, seeds, classifier, cfg)
    held, guide = gen.probabilities[gen.held_out], gen.probabilities[gen.guide]  # [S, R]
    ratio = (held / held[:, :1]).log10()  # [S, R] orders of magnitude above the start
    return {
        "class": gen.target_name,
        "index": gen.target,
        "guide": gen.guide,
        "held_out": gen.held_out,
        "radii": list(gen.radii),
        "held_out_mean": held.mean(0).tolist(),
        "guide_mean": guide.mean(0).tolist(),
        "distance_mean": gen.distances.mean(0).tolist(),
        "held_out_log10_gain_mean": ratio.mean(0).tolist(),
        "held_out_rose_10x": (ratio > 1).float().mean(0).tolist(),
        "p_held_out": held.tolist(),  # [seed][radius]
        "p_guide": guide.tolist(),
        "distance": gen.distances.tolist(),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "_first_row": gen.images[0],  # not serialised
    }


def fmt(p: float) -> str:
    return f"{p:.0e}" if p < 0.001 else f"{p:.3f}"


def tables(rows: list[dict], radii: list[float]) -> str:
    head = "| class | " + " | ".join(["before"] + [f"r = {r:g}" for r in radii]) + " |"
    sep = "|---" * (len(radii) + 2) + "|"
    r0 = rows[0]
    out = [f"Held-out classifier ({r0['held_out']}): mean target probability over seeds "
           f"(in brackets: share of seeds whose probability rose at least 10x)", "", head, sep]
    for row in rows:
        cells = [fmt(row["held_out_mean"][0])] + [
            f"{fmt(row['held_out_mean'][j])} ({row['held_out_rose_10x'][j]:.0%})" for j in range(1, len(radii) + 1)]
        out.append(f"| {row['class']} | " + " | ".join(cells) + " |")
    mean = lambda key, j: sum(r[key][j] for r in rows) / len(rows)
    out.append("| **mean** | " + " | ".join(fmt(mean("held_out_mean", j)) for j in range(len(radii) + 1)) + " |")
    out += ["", f"Guiding classifier ({r0['guide']}): mean target probability", "", head, sep]
    for row in rows:
        out.append(f"| {row['class']} | " + " | ".join(fmt(v) for v in row["guide_mean"]) + " |")
    out += ["", "MobileNet perceptual distance to the starting face (mean over seeds and classes; "
            "for scale: Gaussian noise of std 0.1 gives about 1.3-2.9, two unrelated photos about 9)", "",
            "| | " + " | ".join(f"r = {r:g}" for r in radii) + " |", "|---" * (len(radii) + 1) + "|",
            "| distance | " + " | ".join(f"{mean('distance_mean', j):.2f}" for j in range(1, len(radii) + 1)) + " |"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench", help="output directory")
    ap.add_argument("--generator", default="digiface-dcgan")
    ap.add_argument("--seeds", type=int, default=8, help="faces per class")
    ap.add_argument("--radii", default="0.05,0.1,0.2", help="relative l1 radii (radius 0 is always added)")
    ap.add_argument("--steps", type=int, default=GuidanceConfig.steps)
    ap.add_argument("--augmentations", type=int, default=GuidanceConfig.augmentations,
                    help="random views per step (0: the plain, unaugmented loss; an ablation)")
    ap.add_argument("--classifier", default="mobilenet", choices=["mobilenet", "efficientnet"], help="guiding classifier")
    ap.add_argument("--classes", default=",".join(PAPER_CLASSES.values()), help="ImageNet classes, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", default=None, help="grid PNG path (default: OUT/classifier_grid.png)")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    radii = [float(r) for r in a.radii.split(",")]
    classes = [class_name(class_index(c.strip())) for c in a.classes.split(",")]
    seeds = [EVAL_SEED0 + i for i in range(a.seeds)]
    cfg = GuidanceConfig(steps=a.steps, augmentations=a.augmentations)
    settings = {"generator": a.generator, "seeds": seeds, "radii": radii, "classifier": a.classifier,
                "guidance": cfg.to_dict()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "classifier.json"
    done: dict[str, dict] = {}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("settings") == json.loads(json.dumps(settings)):
            done = {r["class"]: r for r in old["classes"]}
    G = load_generator(a.generator)
    rows, images = [], {}
    for cls in classes:
        if cls in done:
            rows.append(done[cls])
            print(f"{cls}: reused from {path}", flush=True)
            continue
        row = run_class(G, cls, seeds, radii, a.classifier, cfg)
        images[cls] = row.pop("_first_row")
        rows.append(row)
        print(f"{cls}: held-out {' '.join(fmt(v) for v in row['held_out_mean'])}; "
              f"distance {' '.join(f'{v:.2f}' for v in row['distance_mean'])}; {row['seconds']:.0f} s", flush=True)
        result = {"settings": settings, "classes": rows,
                  "environment": {"torch": torch.__version__, "threads": a.threads, "machine": platform.machine()}}
        path.write_text(json.dumps(result, indent=1) + "\n")
    md = tables(rows, radii)
    (out / "classifier.md").write_text(md)
    print(md)
    if images:
        order = [c for c in classes if c in images]
        caps = [[f"held-out p {fmt(p)}" for p in next(r for r in rows if r["class"] == c)["p_held_out"][0]]
                for c in order]
        grid([list(images[c]) for c in order], col_labels=["face"] + [f"r = {r:g}" for r in radii],
             row_labels=order, cell=128, captions=caps).save(a.grid or out / "classifier_grid.png")
    total, cpu = sum(r["seconds"] for r in rows), sum(r.get("cpu_seconds", 0.0) for r in rows)
    print(f"total {total / 60:.1f} min ({cpu / 60:.1f} min CPU) for {len(rows)} classes x {len(seeds)} seeds x {len(radii)} radii "
          f"({a.threads} thread{'s' if a.threads > 1 else ''}); mean log10 gain "
          f"{sum(sum(r['held_out_log10_gain_mean'][1:]) for r in rows) / max(1, len(rows) * len(radii)):.2f}")


if __name__ == "__main__":
    main()
