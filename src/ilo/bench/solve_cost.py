"""A default solve's CPU seconds and quality under cheaper settings, on tuning faces only.

    python -m ilo.bench.solve_cost --variants shipped,stop:50:1e-3 --json cost.json [--tasks inpaint,cs]

Every image is solved alone, as ``ilo solve`` does (one 64-px image, ``--steps`` x ``--restarts``,
digiface DCGAN, one thread): the first ``--real`` real tuning faces
(:func:`ilo.data.realfaces.real_faces`, ``"tuning"``; never the evaluation faces) and the
generated faces of ``--truth-seeds`` (tuning seeds, drawn from the generator: in range), every
task at its default level (inpainting 10 %, denoising sigma 25, compressed sensing 10 %,
super-resolution x4). Per variant (:func:`variant`) the self-tuned ILO runs with the changed
config; the CSGM method runs at its shipped settings once per task (the in-range reference) and,
where a variant changes it, with the variant too. Per solve: PSNR, the CSGM steps run, and the
CPU seconds (``time.process_time``, this process only, start-up excluded) split into the CSGM
runs (``csgm``: the self-tuning's stage, or ILO's own stage for super-resolution), the
candidates (``selection.candidates``, and denoising's ``selection.sure`` or ``selection._classical_sure``) and the rest (ILO's
rounds and bookkeeping). Prints one markdown table and writes every number to ``--json`` after
each solve (resumable: solves already in the file are skipped). The 1-minute load is recorded
beside every solve.

Variants: ``shipped``; ``stop:P:T`` (the CSGM method and the self-tuning's CSGM stage stop early
with patience ``P`` and relative tolerance ``T``, :class:`~ilo.solvers.config.CSGMConfig`);
``rounds:F`` (ILO's rounds get ``F`` times their steps, the CSGM stage the rest of the budget:
:func:`~ilo.solvers.presets.self_tuned_budget`); ``trim:F`` (the rounds get ``F`` times their
steps, the freed steps are not run); ``restarts:R`` (ILO's CSGM stage, and the CSGM-method stage
taken from it, with ``R`` restarts); ``rounds-mse`` (the rounds' loss without the perceptual
term, ILO's CSGM stage keeping its own); ``csgm:MODE`` (the self-tuning's CSGM stage,
:attr:`~ilo.solvers.config.SelectionConfig.csgm`: ``own``, ``method``, ``challenge``);
``csgm-z:Z`` (the ``challenge`` candidate's margin, ``SelectionConfig.csgm_z``); ``csgm-share:F``
(the CSGM method's run under ``method`` / ``challenge`` at ``F`` of the budget,
``SelectionConfig.csgm_share``); ``csgm-challenge`` (under ``method`` the CSGM candidate also
challenges the choice, ``SelectionConfig.csgm_challenge``); ``perceptual-every:K`` (ILO's
perceptual term at every ``K``-th step only, ``LossConfig.perceptual_every``, in its CSGM stage
and its rounds; ``perceptual-every:K:scaled``: its weight times ``K`` too); ``csgm-mse`` (ILO's
own CSGM stage without the perceptual term); ``csgm-perceptual:W`` (that stage with the
perceptual term at weight ``W``: the super-resolution default before session 9 is
``csgm-perceptual:0.05``); joined with ``+``, e.g. ``stop:50:1e-3+rounds:0.5``.

``--interleave`` runs every job of a task on one face before the next face (default: every face
of one job before the next job), so variants compared side by side see the same load.

``--simulate-stops P:T,P:T,...`` instead runs the CSGM method once per task at the full budget
on all the faces (one batch; each image's iterates do not depend on the batch) and replays
each early-stopping rule per image on the recorded per-step best losses: an early-stopped run's
iterates are those of the full run up to its stop (``tests/test_early_stopping.py``), so its
result is the full run's best iterate at the stop step (give or take the one update after it).
Prints, per task and rule, the mean steps run and the PSNR change on the real and the
generated faces (mean and worst face); ``--json`` gets every curve.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable

#: every task at its default level
TASKS = ("inpaint", "denoise", "cs", "superres")
#: generated tuning faces (in range)
TRUTH_SEEDS = (10000, 10001, 10002, 10003)


def variant(name: str) -> tuple[Callable, Callable]:
    """``(change of the ILO config, change of the CSGM method's config)`` of a variant name.

    >>> from ilo.solvers import CSGMConfig
    >>> _, f = variant("stop:50:1e-3"); f(CSGMConfig()).patience, f(CSGMConfig()).tolerance
    (50, 0.001)
    """
    from ..solvers.presets import self_tuned_budget

    changes = [] if name == "shipped" else name.split("+")
    on_ilo, on_csgm = [], []
    for change in changes:
        kind, *args = change.split(":")
        if kind == "stop" and len(args) == 2:
            p, t = int(args[0]), float(args[1])
            on_csgm.append(lambda c, p=p, t=t: replace(c, patience=p, tolerance=t))
            on_ilo.append(lambda c, p=p, t=t: replace(c, csgm=replace(c.csgm, patience=p, tolerance=t)))
        elif kind == "rounds" and len(args) == 1:
            on_ilo.append(lambda c, f=float(args[0]): self_tuned_budget(c, f))
        elif kind == "trim" and len(args) == 1:
            on_ilo.append(lambda c, f=float(args[0]): replace(c, rounds=tuple(
                replace(r, steps=min(r.steps, max(1, round(r.steps * f)))) for r in c.rounds)))
        elif kind == "restarts" and len(args) == 1:
            on_ilo.append(lambda c, n=int(args[0]): replace(c, csgm=replace(c.csgm, restarts=n)))
        elif kind == "rounds-mse" and not args:
            on_ilo.append(lambda c: replace(c, loss=replace(c.loss, perceptual=0.0)))
        elif kind == "csgm" and len(args) == 1:
            on_ilo.append(lambda c, m=args[0]: replace(c, selection=replace(c.selection, csgm=m)))
        elif kind == "csgm-challenge" and not args:
            on_ilo.append(lambda c: replace(c, selection=replace(c.selection, csgm_challenge=True)))
        elif kind == "csgm-share" and len(args) == 1:
            on_ilo.append(lambda c, f=float(args[0]): replace(c, selection=replace(c.selection, csgm_share=f)))
        elif kind == "csgm-z" and len(args) == 1:
            on_ilo.append(lambda c, z=float(args[0]): replace(c, selection=replace(c.selection, csgm_z=z)))
        elif kind == "perceptual-every" and (len(args) == 1 or args[1:] == ["scaled"]):
            k, scale = int(args[0]), int(args[0]) if len(args) == 2 else 1
            every = lambda loss, k=k, scale=scale: replace(loss, perceptual_every=k, perceptual=loss.perceptual * scale)
            on_ilo.append(lambda c, f=every: replace(c, loss=f(c.loss), csgm=replace(c.csgm, loss=f(c.csgm.loss))))
        elif kind == "csgm-mse" and not args:
            on_ilo.append(lambda c: replace(c, csgm=replace(c.csgm, loss=replace(c.csgm.loss, perceptual=0.0))))
        elif kind == "csgm-perceptual" and len(args) == 1:
            on_ilo.append(lambda c, w=float(args[0]): replace(c, csgm=replace(c.csgm, loss=replace(c.csgm.loss, perceptual=w))))
        else:
            raise ValueError(f"unknown variant {change!r}: shipped, stop:P:T, rounds:F, trim:F, restarts:R, "
                             "rounds-mse, csgm:MODE, csgm-z:Z, csgm-share:F, csgm-challenge, perceptual-every:K[:scaled], "
                             "csgm-mse, csgm-perceptual:W, joined with +")

    def chain(fs):
        def apply(c):
            for f in fs:
                c = f(c)
            return c
        return apply
    return chain(on_ilo), chain(on_csgm)


class CPUSplit:
    """Process-time counters around the solvers' parts (outer calls only), installed by patching
    the module attributes the solvers look up (the self-tuning's in :mod:`ilo.solvers.selection.tuning`);
    :meth:`take` returns and resets them."""

    #: part -> the (module, function) pairs it counts (``_classical_sure``: denoising's
    #: candidates and their SURE without the excluded ones, counted as candidates)
    PARTS = {"csgm": (("ilo.solvers.ilo", "csgm"),),
             "candidates": (("ilo.solvers.selection.tuning", "candidates"), ("ilo.solvers.selection.tuning", "_classical_sure")),
             "sure": (("ilo.solvers.selection.tuning", "sure"),)}

    def __init__(self) -> None:
        import importlib

        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.depth = 0
        for part, targets in self.PARTS.items():
            for module, attr in targets:
                mod = importlib.import_module(module)
                setattr(mod, attr, self._wrap(part, getattr(mod, attr)))

    def _wrap(self, part: str, fn: Callable) -> Callable:
        def timed(*a, **k):
            if self.depth:
                return fn(*a, **k)
            self.depth += 1
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[part] += time.process_time() - t
                self.depth -= 1
        return timed

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, dict.fromkeys(self.PARTS, 0.0)
        return out


def faces(G, real: int, seeds) -> tuple:
    """``[real + len(seeds), C, H, W]`` real then generated tuning faces, and their names."""
    import torch

    from ..data.realfaces import real_faces
    from ..pipeline import truth_from_seeds

    gen = truth_from_seeds(G, list(seeds)).cpu()
    X, names = real_faces("tuning", size=G.image_shape[-1]) if real else (gen[:0], [])
    return torch.cat([X[:real].to(gen.dtype), gen]), names[:real] + [f"seed {s}" for s in seeds]


def problem_spec(task: str, level: float | None = None):
    """The task at its default level, or at ``level`` (the operator's ``level_name`` unit)."""
    from ..pipeline import ProblemSpec

    return ProblemSpec(task) if level is None else ProblemSpec.at_level(task, level)


def solve_one(G, truth, task: str, method: str, config, steps: int, restarts: int, split: CPUSplit,
              level: float | None = None) -> dict:
    """One default solve of ``truth [1, C, H, W]``: PSNR, CSGM steps, CPU seconds and their split."""
    from ..pipeline import build_problem, run_method
    from ..runtime import load_average

    prob = build_problem(problem_spec(task, level), G, seed=0, truth=truth)
    split.take()
    t, w = time.process_time(), time.perf_counter()
    res, met = run_method(prob, G, method, config=config, total_steps=steps, restarts=restarts)
    cpu, wall = time.process_time() - t, time.perf_counter() - w
    parts = split.take()
    sel = res.selection or {}
    csgm_steps = sel.get("csgm_steps", res.steps if method == "csgm" else None)
    own = None  # the self-tuned ILO's own output (its best-fitting stage, what ILO without self-tuning returns)
    if "ilo_choice" in sel and res.candidates is not None:
        from .. import metrics as M

        k = sel["candidates"].index(sel["ilo_choice"][0])
        own = float(M.psnr(res.candidates[k, :1], prob.truth.to(res.candidates))[0])
    return {"psnr": met["per_image"]["psnr"][0], "perceptual": met["per_image"].get("perceptual", [None])[0], "cpu": cpu, "wall": wall, "csgm_steps": csgm_steps,
            "rounds_steps": res.steps - csgm_steps if method == "ilo" and sel.get("csgm") == "method" else None,
            "split": {**parts, "rest": cpu - sum(parts.values())}, "load": load_average(),
            "choice": sel.get("choice", [None])[0], "ilo_choice": sel.get("ilo_choice", [None])[0], "ilo_psnr": own}


def run(G, variants: list[str], tasks, real: int, seeds, steps: int, restarts: int, done: dict,
        save: Callable[[dict], None], echo=print, reference: bool = True, level: float | None = None,
        interleave: bool = False) -> dict:
    """Every (task, variant, method, face) not in ``done`` (keyed ``task|variant|method|face``);
    ``reference=False`` leaves out the CSGM method at its shipped settings; ``level``: every
    task at this level instead of its default; ``interleave``: per face every job, face after
    face (default: per job every face)."""
    from ..pipeline import build_problem, method_config

    X, names = faces(G, real, seeds)
    split = CPUSplit()
    for task in tasks:
        prob = build_problem(problem_spec(task, level), G, seed=0, truth=X[:1])
        base_ilo = method_config(prob, G, "ilo", total_steps=steps, restarts=restarts)
        base_csgm = method_config(prob, G, "csgm", total_steps=steps, restarts=restarts)
        jobs = [("shipped", "csgm", base_csgm)] if reference else []
        for v in variants:
            on_ilo, on_csgm = variant(v)
            if on_csgm(base_csgm) != base_csgm:
                jobs.append((v, "csgm", on_csgm(base_csgm)))
            jobs.append((v, "ilo", on_ilo(base_ilo)))
        order = [(j, i) for i in range(len(names)) for j in jobs] if interleave else \
            [(j, i) for j in jobs for i in range(len(names))]
        for (v, method, cfg), i in order:
            key = f"{task}|{v}|{method}|{names[i]}"
            if key in done:
                continue
            done[key] = {"task": task, "variant": v, "method": method, "face": names[i],
                         "set": "generated" if names[i].startswith("seed ") else "real",
                         **solve_one(G, X[i:i + 1], task, method, cfg, steps, restarts, split, level)}
            r = done[key]
            echo(f"{task:8s} {v:24s} {method:4s} {names[i]:24s} {r['psnr']:6.2f} dB  cpu {r['cpu']:5.1f} s  "
                 f"csgm steps {r['csgm_steps']}  load {r['load']:.1f}")
            save(done)
    return done


def simulate_stops(G, rules: list[tuple[int, float]], tasks, real: int, seeds, steps: int, restarts: int,
                   echo=print) -> dict:
    """Per task: the CSGM method's per-step best loss and best-iterate PSNR per image (``[T][N]``),
    and per rule ``"P:T"`` the stop step and PSNR change of every image (module docstring)."""
    from .. import metrics as M
    from ..pipeline import ProblemSpec, build_problem, method_config, run_method

    X, names = faces(G, real, seeds)
    out: dict = {"faces": names, "tasks": {}}
    for task in tasks:
        prob = build_problem(ProblemSpec(task), G, seed=0, truth=X)
        cfg = method_config(prob, G, "csgm", total_steps=steps, restarts=restarts)
        best, psnr = [], []

        def on_step(info):
            best.append(info.best_loss.tolist())
            psnr.append(M.psnr(info.best_image, X).tolist())
        t = time.process_time()
        run_method(prob, G, "csgm", config=cfg, callback=on_step)
        rec = {"best_loss": best, "psnr": psnr, "cpu": time.process_time() - t, "rules": {}}
        for p, tol in rules:
            stops = [_stop_step([b[i] for b in best], p, tol) for i in range(len(names))]
            rec["rules"][f"{p}:{tol:g}"] = {"steps": [s + 1 for s in stops],
                                            "dpsnr": [psnr[s][i] - psnr[-1][i] for i, s in enumerate(stops)]}
        out["tasks"][task] = rec
        echo(f"{task}: CSGM on {len(names)} faces, {rec['cpu']:.0f} s CPU")
    return out


def _stop_step(best: list[float], patience: int, tolerance: float) -> int:
    """The step at which :class:`~ilo.solvers.optim.Plateau` stops a run with these best losses
    (the last step if it never does)."""
    for t in range(patience, len(best)):
        if best[t] >= (1 - tolerance) * best[t - patience]:
            return t
    return len(best) - 1


def stops_table(sim: dict) -> str:
    """Markdown: per task and rule, the mean steps and the PSNR change (real, generated, worst)."""
    from statistics import mean

    gen = [n.startswith("seed ") for n in sim["faces"]]
    lines = ["| task | patience:tolerance | mean steps | ΔPSNR real | ΔPSNR generated | worst face |",
             "|---|---|---|---|---|---|"]
    for task, rec in sim["tasks"].items():
        for rule, r in rec["rules"].items():
            d_real = [d for d, g in zip(r["dpsnr"], gen) if not g]
            d_gen = [d for d, g in zip(r["dpsnr"], gen) if g]
            fmt = lambda xs: f"{mean(xs):+.2f}" if xs else "–"
            lines.append(f"| {task} | {rule} | {mean(r['steps']):.0f} | {fmt(d_real)} | {fmt(d_gen)} | "
                         f"{min(r['dpsnr']):+.2f} |")
    return "\n".join(lines)


def table(done: dict) -> str:
    """Per task, variant and method: mean PSNR and mean perceptual distance (the offline MobileNetV2
    distance to the truth; "–" where not recorded) on the real and the generated faces, the worst
    generated faces' margin over CSGM at its shipped settings (mean / worst face), mean CPU seconds and
    their split (for the CSGM method all of it is ``rest``), and the mean PSNR of the self-tuned ILO's
    own output (``ilo_choice``: its best-fitting stage, before the self-tuning's choice; "–" where
    not recorded)."""
    from statistics import mean

    groups: dict[tuple, list[dict]] = {}
    for r in done.values():
        groups.setdefault((r["task"], r["variant"], r["method"]), []).append(r)
    ref = {(r["task"], r["face"]): r["psnr"] for r in done.values() if r["variant"] == "shipped" and r["method"] == "csgm"}
    own = lambda rows, kind: [r["ilo_psnr"] for r in rows if r["set"] == kind and r.get("ilo_psnr") is not None]
    lines = ["| task | variant | method | PSNR real | PSNR generated | generated − CSGM shipped: mean / worst | CSGM steps | "
             "CPU s | csgm | candidates | rest | load | ILO's own output: real / generated | perceptual real / generated |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, v, method), rows in groups.items():
        real = [r["psnr"] for r in rows if r["set"] == "real"]
        gen = [r for r in rows if r["set"] == "generated"]
        margins = [r["psnr"] - ref[(task, r["face"])] for r in gen if (task, r["face"]) in ref]
        margin = f"{mean(margins):+.2f} / {min(margins):+.2f}" if margins else "–"
        fmt = lambda xs: f"{mean(xs):.2f}" if xs else "–"
        steps = [r["csgm_steps"] for r in rows if r["csgm_steps"] is not None]
        dist = lambda kind: f"{mean(d):.4f}" if (d := [r["perceptual"] for r in rows if r["set"] == kind
                                                        and r.get("perceptual") is not None]) else "–"
        lines.append(f"| {task} | {v} | {method} | {fmt(real)} | {fmt([r['psnr'] for r in gen])} | {margin} | "
                     f"{mean(steps) if steps else float('nan'):.0f} | {mean(r['cpu'] for r in rows):.2f} | "
                     f"{mean(r['split']['csgm'] for r in rows):.2f} | "
                     f"{mean(r['split']['candidates'] + r['split']['sure'] for r in rows):.2f} | "
                     f"{mean(r['split']['rest'] for r in rows):.2f} | {mean(r['load'] for r in rows):.1f} | "
                     f"{fmt(own(rows, 'real'))} / {fmt(own(rows, 'generated'))} | {dist('real')} / {dist('generated')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="shipped", help="comma-separated (module docstring)")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--real", type=int, default=8, help="the first N real tuning faces")
    p.add_argument("--truth-seeds", default="10000-10003", help="generated tuning faces A-B (in range)")
    p.add_argument("--level", type=float, default=None, help="the tasks at this level (default: each task's own)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=Path("solve_cost.json"))
    p.add_argument("--table", action="store_true", help="print the table of --json and exit")
    p.add_argument("--with", dest="merge", type=Path, action="append", default=[],
                   help="with --table: also the solves of this JSON file (repeatable)")
    p.add_argument("--no-reference", action="store_true", help="skip the CSGM method at its shipped settings")
    p.add_argument("--interleave", action="store_true", help="every variant on one face before the next face")
    p.add_argument("--simulate-stops", default=None, help="P:T,P:T,...: replay early-stopping rules (docstring)")
    a = p.parse_args(argv)
    if a.simulate_stops:
        rules = [(int(p_), float(t_)) for p_, t_ in (r.split(":") for r in a.simulate_stops.split(","))]
        if a.table:
            print(stops_table(json.loads(a.json.read_text())))
            return {}
    else:
        rules = []
    done = json.loads(a.json.read_text())["solves"] if a.json.exists() and not rules else {}
    if a.table:
        for extra in a.merge:
            done = {**json.loads(extra.read_text())["solves"], **done}
        print(table(done))
        return done
    variants = a.variants.split(",")
    for v in variants:
        variant(v)  # bad names fail before any solve
    lo, hi = (int(s) for s in a.truth_seeds.split("-"))
    from ..runtime import configure

    rt = configure(a.threads)
    from ..generators import load_generator

    G = load_generator("digiface-dcgan")
    head = {"argv": argv, "runtime": rt.to_dict(), "steps": a.steps, "restarts": a.restarts, "level": a.level}
    if rules:
        sim = {**head, **simulate_stops(G, rules, a.tasks.split(","), a.real, range(lo, hi + 1), a.steps, a.restarts)}
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(sim) + "\n")
        print(stops_table(sim))
        return sim

    def save(d):
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({**head, "solves": d}, indent=1) + "\n")
        tmp.replace(a.json)

    run(G, variants, a.tasks.split(","), a.real, range(lo, hi + 1), a.steps, a.restarts, done, save,
        reference=not a.no_reference, level=a.level, interleave=a.interleave)
    print(table(done))
    return done


if __name__ == "__main__":
    main()
