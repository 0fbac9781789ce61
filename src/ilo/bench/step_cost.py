"""Milliseconds per optimisation step: ILO's stages against a bare generator forward + backward.

    python -m ilo.bench.step_cost [--images 4 --restarts 4] [--steps 30] [--repeats 5] [--json out.json]

Three tables, each figure the median over ``--repeats`` runs with the 1-minute load average
read next to it (this machine may be shared: compare figures of one run, not across runs):

- ``components``: one forward + backward at a batch size of the bare generator (reference path
  and BatchNorm folded, :attr:`~ilo.generators.dcgan.DCGANGenerator.fold_batchnorm`) and of the perceptual distance (features of the generated image, target
  features fixed, as :class:`~ilo.losses.composite.Objective` computes it) at input sizes 64
  (native), 128 and 256 (bilinear upsampling), with all five MobileNetV2 stages or the first
  three, contiguous or channels_last;
- ``solver``: ms per step of ILO's CSGM stage (batch images x restarts) and of each round
  (batch images) with each loss (MSE; MSE + the perceptual term; the perceptual term in the
  rounds only), and the ratio to the bare generator forward + backward at the same batch;
- ``layers``: per DCGAN stage, forward + backward ms of the reference and the folded path.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def median_ms(fn: Callable[[], None], repeats: int, inner: int = 3) -> dict:
    """Median over ``repeats`` of the mean ms of ``inner`` calls of ``fn`` (one warm-up call
    first), with the load average at the start and the end."""
    fn()
    load0, times = _load(), []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) * 1000 / inner)
    return {"ms": round(statistics.median(times), 2), "load": [load0, _load()]}


def _fwd_bwd(render, x0):
    def fn():
        x = x0.detach().clone().requires_grad_(True)
        render(x).square().mean().backward()
    return fn


def _reference_copy(G):
    """``G`` on its reference path (a DCGAN with ``fold_batchnorm`` off; others as they are)."""
    ref = copy.deepcopy(G)
    if hasattr(ref, "fold_batchnorm"):
        ref.fold_batchnorm = False
    return ref


def components(G, batches, repeats: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from ..losses.composite import perceptual_net
    from ..losses.perceptual import MobileNetPerceptualDistance

    rows = []
    ref = _reference_copy(G)
    for b in batches:
        z = G.sample_latent(b, torch.Generator().manual_seed(0))["z"]
        cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
        for name, g in (("generator reference", ref), ("generator folded BN", G), ("generator folded BN channels_last", cl)):
            rows.append({"what": name, "batch": b, **median_ms(_fwd_bwd(lambda v, g=g: g({"z": v}), z), repeats)})
        net = perceptual_net("mobilenet")
        variants = {"all 5 stages": net, "first 3 stages": MobileNetPerceptualDistance(taps=(1, 3, 6))}
        for size in (64, 128, 256):
            for vname, d in variants.items():
                for cl in (False, True):
                    if size != 64 and (vname != "all 5 stages" or cl):
                        continue
                    x0 = torch.rand(b, 3, 64, 64) * 2 - 1
                    with torch.no_grad():
                        tgt = d.features(F.interpolate(x0.flip(0), size=size, mode="bilinear") if size != 64 else x0.flip(0))
                    fmt = torch.channels_last if cl else torch.contiguous_format
                    if cl:
                        d = d.to(memory_format=torch.channels_last)

                    def render(x, d=d, size=size, fmt=fmt, tgt=tgt):
                        a = F.interpolate(x, size=size, mode="bilinear") if size != 64 else x
                        return d.distance(d.features(a.contiguous(memory_format=fmt)), tgt).sum(dim=1)
                    rows.append({"what": f"perceptual {vname} {size}px{' channels_last' if cl else ''}", "batch": b,
                                 **median_ms(_fwd_bwd(render, x0), repeats)})
                    if cl:
                        d.to(memory_format=torch.contiguous_format)
    return rows


def layers(G, batch: int, repeats: int) -> list[dict]:
    import torch

    rows = []
    ref = _reference_copy(G)
    with torch.no_grad():
        s = G.sample_latent(batch, torch.Generator().manual_seed(0))
        states = [s]
        for k in range(G.num_layers - 1):
            states.append(G.stage(k, states[-1]))
    for k in range(G.num_layers):
        key = next(iter(states[k]))
        for name, g in (("reference", ref), ("folded BN", G)):
            fn = _fwd_bwd(lambda v, g=g, k=k, key=key: next(iter(g.stage(k, {key: v}).values())), states[k][key])
            rows.append({"what": f"stage {k} {name}", "batch": batch, **median_ms(fn, repeats)})
    return rows


def solver(G, images: int, restarts: int, steps: int, repeats: int, bare: dict[int, float]) -> list[dict]:
    """ms per step of the CSGM stage and each round of ILO (superres x4 preset), per loss."""
    import torch

    from ..pipeline import ProblemSpec, build_problem, method_config
    from ..solvers import ilo

    prob = build_problem(ProblemSpec.at_level("superres", 4.0), G, seed=0, truth=torch.zeros(images, *G.image_shape))
    base = method_config(prob, G, "ilo", total_steps=600, restarts=restarts)
    base = replace(base, csgm=replace(base.csgm, steps=steps), rounds=tuple(replace(r, steps=steps) for r in base.rounds))
    perc = replace(base.loss, perceptual=0.05)
    mse = replace(base.loss, perceptual=0.0)
    losses = {"mse": (mse, mse), "mse + perceptual": (perc, perc), "perceptual in rounds only": (mse, perc)}
    rows = []
    for name, (first, rest) in losses.items():
        cfg = replace(base, loss=rest, csgm=replace(base.csgm, loss=first))
        per_stage: dict[int, list[float]] = {}
        load0 = _load()
        for _ in range(repeats):
            stamps: list[tuple[int, float]] = []
            ilo(prob.y, prob.operator, G, cfg, seeds=0, callback=lambda info: stamps.append((info.round, time.perf_counter())))
            for (r0, t0), (r1, t1) in zip(stamps, stamps[1:]):
                if r0 == r1:
                    per_stage.setdefault(r0, []).append((t1 - t0) * 1000)
        for r, ts in sorted(per_stage.items()):
            batch = images * restarts if r == 0 else images
            ms = statistics.median(ts[len(ts) // 10:])
            rows.append({"loss": name, "stage": "CSGM" if r == 0 else f"round {r}", "batch": batch,
                         "ms": round(ms, 2), "x_bare": round(ms / bare[batch], 2), "load": [load0, _load()]})
    return rows


def _table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--steps", type=int, default=30, help="steps per stage in the solver table")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    from ..runtime import configure

    rt = configure(a.threads)
    from ..generators import load_generator

    G = load_generator(a.generator)
    batches = sorted({a.images * a.restarts, a.images, a.restarts})
    comp = components(G, batches, a.repeats)
    bare = {r["batch"]: r["ms"] for r in comp if r["what"] == "generator reference"}
    out = {"argv": argv, "runtime": rt.to_dict(), "components": comp,
           "solver": solver(G, a.images, a.restarts, a.steps, a.repeats, bare),
           "layers": layers(G, a.images * a.restarts, a.repeats)}
    for key, cols in (("components", ["what", "batch", "ms", "load"]), ("solver", ["loss", "stage", "batch", "ms", "x_bare", "load"]),
                      ("layers", ["what", "batch", "ms", "load"])):
        print(f"\n{key} ({rt.threads} threads, wait policy {rt.wait_policy})\n" + _table(out[key], cols))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
