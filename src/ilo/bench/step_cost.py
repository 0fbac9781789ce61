"""Milliseconds per optimisation step: ILO's stages against a bare generator forward + backward.

    python -m ilo.bench.step_cost [--images 4 --restarts 4] [--steps 30] [--repeats 5] [--json out.json]

Three tables, each figure the median over ``--repeats`` runs with the 1-minute load average
read next to it (this machine may be shared: compare figures of one run, not across runs):

- ``components``: one forward + backward at a batch size of the bare generator (reference path
  and BatchNorm folded, :attr:`~ilo.generators.dcgan.DCGANGenerator.fold_batchnorm`) and of the perceptual distance (features of the generated image, target
  features fixed, as :class:`~ilo.losses.composite.Objective` computes it) at input sizes 64
  (native), 128 and 256 (bilinear upsampling), with all five MobileNetV2 stages or the first
  three, contiguous or channels_last;
- ``solver``: ms per step of ILO's CSGM stage (batch images x its restarts) and of each round
  (batch images) with each loss (:func:`solver`), and the ratio to the bare generator forward +
  backward (its default path) at the same batch, timed beside it (``--every K``: also the term
  every k-th step; ``--solver-only``: this table alone);
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
from collections.abc import Callable


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def interleaved_ms(fns: dict[str, Callable[[], None]], repeats: int, inner: int = 3) -> dict[str, dict]:
    """Per name, the median over ``repeats`` rounds of the mean ms of ``inner`` calls of its
    function; every round times all functions one after the other (so a change of load hits
    them alike), after one warm-up call each. The load average is read at the start and the end."""
    for fn in fns.values():
        fn()
    load0, times = _load(), {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t) * 1000 / inner)
    load = [load0, _load()]
    return {k: {"ms": round(statistics.median(v), 2), "load": load} for k, v in times.items()}


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
    cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
    nets = {"all 5 stages": perceptual_net("mobilenet"), "first 3 stages": MobileNetPerceptualDistance(taps=(1, 3, 6))}
    nets_cl = {k: copy.deepcopy(d).to(memory_format=torch.channels_last) for k, d in nets.items()}
    for b in batches:
        z = G.sample_latent(b, torch.Generator().manual_seed(0))["z"]
        fns = {f"generator {name}": _fwd_bwd(lambda v, g=g: g({"z": v}), z)
               for name, g in (("reference", ref), ("folded BN", G), ("folded BN channels_last", cl))}
        x0 = torch.rand(b, 3, 64, 64) * 2 - 1
        for size, vname, chl in ((64, "all 5 stages", False), (64, "all 5 stages", True), (64, "first 3 stages", False),
                                 (64, "first 3 stages", True), (128, "all 5 stages", False), (256, "all 5 stages", False)):
            d = (nets_cl if chl else nets)[vname]
            up = (lambda x, size=size: F.interpolate(x, size=size, mode="bilinear")) if size != 64 else (lambda x: x)
            fmt = torch.channels_last if chl else torch.contiguous_format
            with torch.no_grad():
                tgt = d.features(up(x0.flip(0)).contiguous(memory_format=fmt))

            def render(x, d=d, up=up, fmt=fmt, tgt=tgt):
                return d.distance(d.features(up(x).contiguous(memory_format=fmt)), tgt).sum(dim=1)
            fns[f"perceptual {vname} {size}px{' channels_last' if chl else ''}"] = _fwd_bwd(render, x0)
        for name, r in interleaved_ms(fns, repeats).items():
            rows.append({"what": name, "batch": b, **r})
    return rows


def layers(G, batch: int, repeats: int) -> list[dict]:
    import torch

    ref = _reference_copy(G)
    with torch.no_grad():
        states = [G.sample_latent(batch, torch.Generator().manual_seed(0))]
        for k in range(G.num_layers - 1):
            states.append(G.stage(k, states[-1]))
    fns = {}
    for k in range(G.num_layers):
        key = next(iter(states[k]))
        for name, g in (("reference", ref), ("folded BN", G)):
            fns[f"stage {k} {name}"] = _fwd_bwd(lambda v, g=g, k=k, key=key: next(iter(g.stage(k, {key: v}).values())),
                                                states[k][key])
    return [{"what": name, "batch": batch, **r} for name, r in interleaved_ms(fns, repeats).items()]


def solver(G, images: int, restarts: int, steps: int, repeats: int, every: tuple[int, ...] = ()) -> list[dict]:
    """ms per step of the CSGM stage and each round of ILO (the super-resolution x4 preset's
    stages, its CSGM stage with the restarts the preset gives it, without self-tuning), per loss:
    ``ms`` the median step, ``mean ms`` the mean (what a stage costs when steps differ, as with
    the perceptual term every k-th step); ``x_bare`` / ``x_bare mean``: over a bare generator
    forward + backward at the same batch, timed in the same repeats (so at the same load).
    Losses: MSE everywhere; MSE + 0.05 perceptual everywhere; the perceptual term in the rounds
    only; the shipped self-tuned default (in ILO's CSGM stage only); and per ``every`` value that
    default with the term at every k-th step (``LossConfig.perceptual_every``)."""
    import torch

    from ..pipeline import ProblemSpec, build_problem, method_config
    from ..solvers import ilo

    prob = build_problem(ProblemSpec.at_level("superres", 4.0), G, seed=0, truth=torch.zeros(images, *G.image_shape))
    base = method_config(prob, G, "ilo", total_steps=600, restarts=restarts)
    base = replace(base, selection=None, deviation=None, csgm=replace(base.csgm, steps=steps),
                   rounds=tuple(replace(r, steps=steps) for r in base.rounds))
    perc = replace(base.csgm.loss, perceptual=0.05)
    mse = replace(base.csgm.loss, perceptual=0.0)
    losses = {"mse": (mse, mse), "mse + perceptual": (perc, perc), "perceptual in rounds only": (mse, perc),
              "shipped: perceptual in the CSGM stage only": (perc, mse)}
    for k in every:
        losses[f"perceptual in the CSGM stage only, every {k}"] = (replace(perc, perceptual_every=k), mse)
    cfgs = {name: replace(base, loss=rest, csgm=replace(base.csgm, loss=first)) for name, (first, rest) in losses.items()}
    batches = {0: images * base.csgm.restarts, **{i: images for i in range(1, len(base.rounds) + 1)}}
    bare_fns = {b: _fwd_bwd(lambda v: G({"z": v}), G.sample_latent(b, torch.Generator().manual_seed(0))["z"])
                for b in set(batches.values())}
    per_stage: dict[tuple[str, int], list[float]] = {}
    bare: dict[int, list[float]] = {b: [] for b in bare_fns}
    load0 = _load()
    for _ in range(repeats):  # every repeat runs every loss and the bare passes, so a change of load hits them alike
        for b, fn in bare_fns.items():
            for _ in range(steps):
                t = time.perf_counter()
                fn()
                bare[b].append((time.perf_counter() - t) * 1000)
        for name, cfg in cfgs.items():
            stamps: list[tuple[int, float]] = []
            ilo(prob.y, prob.operator, G, cfg, seeds=0, callback=lambda info: stamps.append((info.round, time.perf_counter())))
            for (r0, t0), (r1, t1) in zip(stamps, stamps[1:]):
                if r0 == r1:
                    per_stage.setdefault((name, r0), []).append((t1 - t0) * 1000)
    rows, load = [], [load0, _load()]
    bare_ms = {b: statistics.median(v) for b, v in bare.items()}
    for (name, r), ts in per_stage.items():
        batch = batches[r]
        ms, mean_ms = statistics.median(ts), statistics.mean(ts)
        rows.append({"loss": name, "stage": "CSGM" if r == 0 else f"round {r}", "batch": batch,
                     "ms": round(ms, 2), "mean ms": round(mean_ms, 2), "bare ms": round(bare_ms[batch], 2),
                     "x_bare": round(ms / bare_ms[batch], 2), "x_bare mean": round(mean_ms / bare_ms[batch], 2),
                     "load": load})
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
    p.add_argument("--every", default="", help="comma-separated k: the solver table also with the term every k-th step")
    p.add_argument("--solver-only", action="store_true", help="the solver table only")
    a = p.parse_args(argv)
    every = tuple(int(k) for k in a.every.split(",") if k)
    from ..runtime import configure

    rt = configure(a.threads)
    from ..generators import load_generator

    G = load_generator(a.generator)
    batches = sorted({a.images * a.restarts, a.images, a.restarts})
    out = {"argv": argv, "runtime": rt.to_dict()}
    if not a.solver_only:
        out["components"] = components(G, batches, a.repeats)
    out["solver"] = solver(G, a.images, a.restarts, a.steps, a.repeats, every)
    if not a.solver_only:
        out["layers"] = layers(G, a.images * a.restarts, a.repeats)
    for key, cols in (("components", ["what", "batch", "ms", "load"]),
                      ("solver", ["loss", "stage", "batch", "ms", "mean ms", "bare ms", "x_bare", "x_bare mean", "load"]),
                      ("layers", ["what", "batch", "ms", "load"])):
        if key in out:
            print(f"\n{key} ({rt.threads} threads, wait policy {rt.wait_policy})\n" + _table(out[key], cols))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
