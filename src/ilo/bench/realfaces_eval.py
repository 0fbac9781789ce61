"""Real faces against the classical methods (issue 15's targets): one table, JSON, a grid per task.

    python -m ilo.bench.realfaces_eval --split eval --steps 200 --restarts 2 --json realfaces-eval.json

For every paper task and level (:data:`~ilo.bench.classical_tuning.SPECS`: random inpainting
5 / 10 / 30 %, a central box of a third of the side, super-resolution x4 / x8 / x16, denoising
sigma 10 / 25 / 50, compressed sensing 5 / 10 %) on the real faces of a split
(:func:`ilo.data.realfaces.real_faces`; report on ``eval``, decide on ``tuning``): mean PSNR,
SSIM and the offline perceptual distance (per image in the JSON) of the task's classical methods (tuned weights), CSGM
(its tuned MSE preset), PULSE (super-resolution), the generator's Gaussian prior alone
(inpainting and super-resolution, ``--method gaussian``), ILO as shipped before issue 15 (no deviation,
no self-tuning: the ``ilo_choice`` candidate of the self-tuned run, the same computation),
ILO self-tuned (:func:`ilo.solvers.config.self_tuned`) and the oracle choice among the same
candidates (lowest true MSE). With ``--grids DIR``, one picture per cell (:func:`save_grid`):
truth, observation and every method on the first three faces, PSNR / SSIM under each image.
Resumable: tasks already in ``--json`` are skipped. The held-out cells store each candidate's
``estimated_se`` and the ``reference`` beside ``estimated_mse`` / ``true_mse``, so
``--rescore JSON --margins 0,1,1.5`` prints the choice's PSNR under other margins
(:attr:`~ilo.solvers.config.SelectionConfig.z`, :func:`rescore_table`) without running anything.
The self-tuned ILO's candidates include the convex blends of
:attr:`~ilo.solvers.config.SelectionConfig.blend` (the library's default; ``--blend 0.25,0.5``
and ``--blend-pairs`` change them, ``--blend ""`` turns them off), and so does the oracle's;
``--rescore JSON --exclude blend`` recomputes the choice and the oracle without them (blends
add candidates only, so this is the run without blends).
``--crops aligned`` measures the same faces aligned to the generator's template, as ``ilo solve
--align`` frames them (:func:`ilo.bench.faces.aligned_real_faces`: faces whose aligned frame leaves
their photo are dropped and listed in the JSON's ``meta.crop_records``), with the framing
``"generator"`` (:func:`ilo.pipeline.for_framing`: the Gaussian prior fitted to plain samples).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import metrics as M
from ..operators import SuperResolution
from .classical_tuning import SPECS, _run, make_problem, methods_for, operator_for


def scores(image: torch.Tensor, truth: torch.Tensor) -> dict:
    """Per-image ``psnr``, ``ssim`` and ``perceptual`` (offline MobileNet distance) lists."""
    from ..pipeline import perceptual_scores

    out = {"psnr": M.psnr(image, truth).tolist(), "ssim": M.ssim(image, truth).tolist()}
    out.update({k: v.tolist() for k, v in perceptual_scores(image, truth).items() if k == "perceptual"})
    return out


def _gaussian_config(op, framing: str):
    """The ``gaussian`` method's config for ``op`` and images framed so (:func:`ilo.pipeline.for_framing`)."""
    from ..pipeline import for_framing
    from ..solvers.gaussian import GaussianConfig, remainder_for

    return for_framing(GaussianConfig(remainder=remainder_for(op)), framing)


def _ilo_config(G, op, steps: int, restarts: int, framing: str):
    """The default (self-tuned) ILO's config for ``op`` at the budget, for images framed so."""
    from ..pipeline import for_framing
    from ..solvers import preset_for

    return for_framing(preset_for("ilo", G, op, total_steps=steps, restarts=restarts), framing)


def run_spec(G, x: torch.Tensor, task: str, level: float, steps: int, restarts: int, framing: str = "free", **selection
             ) -> tuple[dict, dict]:
    """Every method on one (task, level): ``({method: per-image scores}, {method: images})``
    plus the selection record under ``"selection"``. ``selection``: fields of the self-tuned
    ILO's :class:`~ilo.solvers.config.SelectionConfig` other than the default's; ``framing``:
    how ``x`` is framed (:func:`ilo.pipeline.for_framing`: the Gaussian prior's fit)."""
    from ..solvers import default_config, solve
    from ..solvers.gaussian import solves, supports
    from ..solvers.selection import paste_observed

    op, y = make_problem(task, level, x)
    ptask = operator_for(task).task
    images, seconds = {}, {}
    for method in methods_for(task):
        if method == "adjoint":
            continue
        t = time.time()
        images[method] = _run(method, y, op, None)
        seconds[method] = time.time() - t
    generative = ["csgm"] + (["pulse"] if operator_for(task) is SuperResolution else [])
    for method in generative:
        t = time.time()
        cfg = default_config(method, G, ptask, total_steps=steps, restarts=restarts)
        images[method] = solve(y, op, G, method, cfg, seeds=0).image
        seconds[method] = time.time() - t
    if supports(G) and solves(op):  # the generator's Gaussian prior alone
        t = time.time()
        images["gaussian"] = solve(y, op, G, "gaussian", _gaussian_config(op, framing)).image
        seconds["gaussian"] = time.time() - t
    t = time.time()
    cfg = _ilo_config(G, op, steps, restarts, framing)  # the default: self-tuned
    selection = {k: None if v == "inherit" else v for k, v in selection.items()}  # --box-* "same" / "class"
    cfg = replace(cfg, selection=replace(cfg.selection, every_candidate=True, **selection))  # the oracle looks at all
    res = solve(y, op, G, "ilo", cfg, seeds=0)
    seconds["ilo self-tuned"] = time.time() - t
    sel, cands = res.selection, res.candidates
    assert sel is not None and cands is not None
    rows = torch.arange(x.shape[0])
    names = sel["candidates"]
    plain = torch.tensor([names.index(c) for c in sel["ilo_choice"]])
    true_mse = torch.stack([M.mse(paste_observed(c, y, op), x) for c in cands])  # [K, B]
    oracle = true_mse.nan_to_num(nan=float("inf")).argmin(0)  # NaN: a candidate not computed (a blend without its pair)
    images["ilo"] = cands[plain, rows]  # as shipped: the generator's image, nothing pasted
    images["ilo self-tuned"] = res.image
    images["oracle"] = paste_observed(cands[oracle, rows], y, op)
    per = {m: scores(im, x) for m, im in images.items()}
    selection = {"candidates": names, "choice": sel["choice"], "oracle": [names[int(k)] for k in oracle],
                 "estimated_mse": sel["estimated_mse"], "true_mse": true_mse.T.tolist(), "rule": sel["rule"],
                 "seconds": seconds}
    selection.update({k: sel[k] for k in ("estimated_se", "reference", "eligible", "z", "units", "blend", "blend_against") if k in sel})
    return {"per_image": per, "selection": selection}, {"observation": op.observation_image(y), **images}


def _cell(G, x: torch.Tensor, name: str, level: float, steps: int, restarts: int, framing: str, extra: dict
          ) -> tuple[dict, dict, float]:
    """One cell (:func:`run_spec` from the same seed), its images and seconds: in this process or a
    worker (``--jobs``)."""
    t = time.time()
    torch.manual_seed(0)
    result, images = run_spec(G, x, name, level, steps, restarts, framing, **extra)
    return result, images, time.time() - t


def _prepare(G, x: torch.Tensor, name: str, level: float, steps: int, restarts: int, framing: str) -> None:
    """The Gaussian priors a cell's solves use, fitted or loaded here once (before ``--jobs`` workers)."""
    from ..solvers import prepare
    from ..solvers.gaussian import solves, supports

    op, _ = make_problem(name, level, x[:1])
    if supports(G) and solves(op):
        prepare(op, G, "gaussian", _gaussian_config(op, framing))
    prepare(op, G, "ilo", _ilo_config(G, op, steps, restarts, framing))


def mean(v: list[float]) -> float:
    return sum(v) / len(v)


def checkpoint(path: Path, meta: dict, results: dict, key: str, seconds: float) -> None:
    """Write ``{"meta", "results"}`` to ``path`` atomically (a rerun resumes from it) and print
    the mean PSNR of every method of ``results[key]``."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": results}))
    tmp.replace(path)
    summary = ", ".join(f"{m} {mean(s['psnr']):.2f}" for m, s in results[key]["per_image"].items())
    print(f"{key} ({seconds:.0f} s, load {os.getloadavg()[0]:.1f}): {summary}", flush=True)


def table(results: dict) -> str:
    """Markdown: per (task, level), every method's mean PSNR / SSIM / perceptual distance."""
    lines = ["| task | level | method | PSNR (dB) | SSIM | perceptual |", "|---|---|---|---|---|---|"]
    for key, r in results.items():
        task, level = key.split(" ")
        for m, s in r["per_image"].items():
            perc = f"{mean(s['perceptual']):.3f}" if "perceptual" in s else "-"
            lines.append(f"| {task} | {level} | {m} | {mean(s['psnr']):.2f} | {mean(s['ssim']):.3f} | {perc} |")
    return "\n".join(lines)


#: cells where a prior has to invent content: the target is a lead of >= 1 dB over the classical methods
INVENT = ("box", "superres 8", "superres 16", "inpaint 0.05", "cs")
#: the paper's MSE ratios of ILO over the best CSGM variant (PULSE for super-resolution) per task
RATIOS = (("inpaint", 2.0), ("box", 2.0), ("denoise", 1.8), ("cs 0.05", 2.0), ("superres 16", 1.65))


def _mse(psnr: list[float]) -> float:
    return mean([10 ** (-p / 10) for p in psnr])


def targets_table(results: dict, ours: str = "ilo self-tuned") -> str:
    """Markdown, one row per cell: PSNR / SSIM / perceptual of the best classical method, CSGM,
    PULSE, ILO as shipped, ILO self-tuned and the oracle; the targets met or missed (by how much)."""
    head = ("| cell | best classical | CSGM | PULSE | ILO (shipped) | ILO self-tuned | oracle | vs classical | "
            "MSE ratio vs CSGM/PULSE (target) |")
    lines = [head, "|" + "---|" * 9]
    for key, r in results.items():
        task = key.split(" ")[0]
        per = r["per_image"]

        def cell(m, per=per):
            if m not in per:
                return "-"
            s = per[m]
            perc = f" / {mean(s['perceptual']):.2f}" if "perceptual" in s else ""
            return f"{mean(s['psnr']):.2f} / {mean(s['ssim']):.3f}{perc}"

        classical = [m for m in methods_for(task) if m in per]
        best = max(classical, key=lambda m: mean(per[m]["psnr"]))
        gap = mean(per[ours]["psnr"]) - mean(per[best]["psnr"])
        need = 1.0 if any(key.startswith(k) for k in INVENT) else -0.3
        verdict = f"{gap:+.2f} dB ({'met' if gap >= need else 'missed'}, needs {need:+.1f})"
        rival = "pulse" if operator_for(task) is SuperResolution else "csgm"
        ratio = _mse(per[rival]["psnr"]) / _mse(per[ours]["psnr"])
        want = next((v for k, v in RATIOS if key.startswith(k)), None)
        rtxt = f"{ratio:.2f}" + (f" ({want}: {'met' if ratio >= want else 'missed'})" if want else "")
        lines.append(f"| {key} | {best} {cell(best)} | {cell('csgm')} | {cell('pulse')} | {cell('ilo')} | "
                     f"{cell(ours)} | {cell('oracle')} | {verdict} | {rtxt} |")
    return "\n".join(lines)


def _kept(selection: dict, exclude: tuple[str, ...]) -> list[bool]:
    """Per candidate of a cell: not named with a prefix of ``exclude`` (e.g. ``"blend"``)."""
    return [not name.startswith(exclude) for name in selection["candidates"]] if exclude else \
        [True] * len(selection["estimated_mse"][0])


def rescored(selection: dict, z: float, exclude: tuple[str, ...] = ()) -> list[float]:
    """Per-image PSNR (dB) of the self-tuned choice under margin ``z``
    (:attr:`~ilo.solvers.config.SelectionConfig.z`), recomputed from a cell's stored
    ``estimated_mse``, ``estimated_se``, ``eligible`` and ``true_mse`` (one list per image),
    among the candidates not named with a prefix of ``exclude`` (e.g. ``("blend",)``: the
    choice without the blends, which takes no other candidate's score into account). Blends
    scored against the choice (``blend_against == "choice"``) replace the choice among the
    others only where their score lies below its estimate; their stored standard errors are
    against the run's own choice, so that rescoring is exact at the run's ``z`` only."""
    from ..solvers.selection import challenge, choose

    est = torch.tensor(selection["estimated_mse"], dtype=torch.float64).T  # [K, B]
    se = torch.tensor(selection["estimated_se"], dtype=torch.float64).T if z else None
    ok = (torch.tensor(selection["eligible"]).T if "eligible" in selection else torch.ones_like(est, dtype=torch.bool))
    ok = ok & torch.tensor(_kept(selection, exclude))[:, None]
    blends = torch.tensor([name.startswith("blend") for name in selection.get("candidates", [])] or [False] * len(est))
    if selection.get("blend_against") == "choice" and bool(blends.any()):
        K = int((~blends).sum())  # the blends are the last rows
        base = choose(est[:K], ok[:K], None if se is None else se[:K], z)
        choice = challenge(est, se, ok, base, K, z)
    else:
        choice = choose(est, ok, se, z)
    return [10 * math.log10(1 / max(mse[int(k)], 1e-12)) for mse, k in zip(selection["true_mse"], choice)]


def oracle_psnr(selection: dict, exclude: tuple[str, ...] = ()) -> list[float]:
    """Per-image PSNR (dB) of the candidate with the lowest true MSE among those not named with a
    prefix of ``exclude``."""
    kept = _kept(selection, exclude)
    return [10 * math.log10(1 / max(min(m for m, c in zip(mse, kept) if c and m == m), 1e-12))
            for mse in selection["true_mse"]]


def rescore_table(results: dict, margins: list[float], within: float = 0.3, exclude: tuple[str, ...] = ()) -> str:
    """Markdown: per held-out cell (those with ``estimated_se``), the self-tuned ILO's mean PSNR
    minus the best classical method's under every margin of ``margins`` (:func:`rescored`), the
    oracle's, and per margin the cells within ``within`` dB and the mean difference; the
    candidates named with a prefix of ``exclude`` left out of the choice and the oracle."""
    lines = ["| cell | best classical | " + " | ".join(f"z={z:g}" for z in margins) + " | oracle |",
             "|" + "---|" * (len(margins) + 3)]
    gaps: list[list[float]] = [[] for _ in margins]
    for key, r in results.items():
        sel, per = r["selection"], r["per_image"]
        if "estimated_se" not in sel:
            continue
        classical = [m for m in methods_for(key.split(" ")[0]) if m in per]
        best = max(mean(per[m]["psnr"]) for m in classical)
        row = [mean(rescored(sel, z, exclude)) - best for z in margins]
        for g, v in zip(gaps, row):
            g.append(v)
        lines.append(f"| {key} | {best:.2f} | " + " | ".join(f"{v:+.2f}" for v in row)
                     + f" | {mean(oracle_psnr(sel, exclude)) - best:+.2f} |")
    lines.append(f"| cells within {within} dB | | " + " | ".join(str(sum(v >= -within for v in g)) for g in gaps) + " | |")
    lines.append("| mean difference | | " + " | ".join(f"{mean(g):+.2f}" if g else "-" for g in gaps) + " | |")
    return "\n".join(lines)


#: grid column labels of the methods that are not named by their solver key
LABELS = {"csgm": "CSGM", "pulse": "PULSE", "ilo": "ILO shipped", "ilo self-tuned": "ILO self-tuned"}


def save_grid(truth: torch.Tensor, images: dict, per_image: dict, names: list[str], path: Path, rows: int = 3) -> None:
    """One picture of a cell: per face (the first ``rows``; row label its name) the truth and
    every image of ``images`` (the observation, then each method), each method's PSNR (dB) /
    SSIM under its image (``per_image[method]``, as from :func:`scores`)."""
    from ..images import grid

    n = min(rows, len(truth))
    cols = ["truth", *(LABELS.get(m, m) for m in images)]

    def caption(m: str, i: int) -> str:
        s = per_image.get(m)
        return f"{s['psnr'][i]:.1f} / {s['ssim'][i]:.2f}" if s else ""

    grid([[truth[i], *(images[m][i].clamp(-1, 1) for m in images)] for i in range(n)], col_labels=cols,
         row_labels=names[:n], captions=[["", *(caption(m, i) for m in images)] for i in range(n)], cell=96).save(path)


def _box_option(value: str | None, inherit: str, kind) -> tuple | str | None:
    """A ``--box-*`` flag: None (not given: the config's), ``"inherit"`` (the config field None:
    as away from a box) or a comma-separated tuple (``""``: empty)."""
    if value is None:
        return None
    if value == inherit:
        return "inherit"
    return tuple(kind(v) for v in value.split(",") if v)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="eval", choices=("eval", "tuning"))
    p.add_argument("--faces", type=int, default=None, help="the first N faces of the split (default: all)")
    p.add_argument("--crops", default="box", choices=("box", "aligned"),
                   help="box: the registry's boxes (default); aligned: each face aligned to the generator's "
                        "template as `ilo solve --image --align` frames it, faces whose frame leaves the photo dropped")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to keep (inpaint, box, superres, denoise, cs)")
    p.add_argument("--keys", default=None, help='comma-separated "task level" cells to keep, e.g. "box 0.333333,cs 0.1"')
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1,
                   help="cells solved side by side in worker processes, each on --threads threads (the same numbers)")
    p.add_argument("--json", type=Path, default=Path("realfaces-eval.json"))
    p.add_argument("--grids", type=Path, default=None, help="folder for one grid PNG per task")
    p.add_argument("--patch", type=int, default=None, help="side of the held-out patches next to a box (default: the config's)")
    p.add_argument("--holdout", type=float, default=None,
                   help="fraction of the observed entries held out (random masks, super-resolution, CS; default: the config's)")
    p.add_argument("--ring", type=int, default=None,
                   help="hold out the whole ring of this width around a box (default: the config's; 0: half the band's patches)")
    p.add_argument("--box-z", type=float, default=None, help="the margin next to a box (default: the config's)")
    p.add_argument("--reference", default=None, choices=("auto", "lowest", "first", "mean"),
                   help="the margin's reference (default: the config's; mean: the classical methods' and ILO's mean)")
    p.add_argument("--rescore", type=Path, default=None,
                   help="print the self-tuned choice's PSNR under each of --margins from this JSON, run nothing")
    p.add_argument("--margins", default="0,0.5,1,1.5,2,3", help="comma-separated margins z for --rescore")
    p.add_argument("--exclude", default="",
                   help='comma-separated candidate name prefixes --rescore leaves out, e.g. "blend" (the choice without blends)')
    p.add_argument("--blend", default=None,
                   help="comma-separated weights of the self-tuned ILO's convex blends, e.g. 0.25,0.5 (default: the config's; \"\" off)")
    p.add_argument("--blend-pairs", default=None, help="comma-separated pairs the blends mix (reference, classical, top)")
    p.add_argument("--box-blend", default=None,
                   help='blend weights next to a box (default: the config\'s, none; "same": those of --blend)')
    p.add_argument("--box-classical", default=None,
                   help='comma-separated classical methods next to a box (default: the config\'s, gaussian,harmonic,tv-inpaint; '
                        '"class": the inpainting ones, biharmonic,tv-inpaint)')
    p.add_argument("--classical", default=None,
                   help="comma-separated classical methods of the candidates, the box's too (default: the "
                        "config's: for random inpainting gaussian,biharmonic,tv-inpaint; '' none)")
    a = p.parse_args(argv)
    if a.rescore is not None:
        results = json.loads(a.rescore.read_text())["results"]
        exclude = tuple(v for v in a.exclude.split(",") if v)
        print(rescore_table(results, [float(v) for v in a.margins.split(",")], exclude=exclude))
        return results
    torch.set_num_threads(a.threads)
    from .. import workers
    from ..data.realfaces import real_faces
    from ..generators import load_generator

    G = load_generator(a.generator)
    crop_records, framing = None, "generator" if a.crops == "aligned" else "free"
    if a.crops == "aligned":
        from .faces import aligned_real_faces

        x, names, crop_records = aligned_real_faces(G, a.split)
    else:
        x, names = real_faces(a.split, size=64)
    if a.faces is not None:
        x, names = x[: a.faces], names[: a.faces]
    results = json.loads(a.json.read_text())["results"] if a.json.exists() else {}
    keep = set(a.tasks.split(",")) if a.tasks else None
    keys = set(a.keys.split(",")) if a.keys else None
    blends = {"blend": tuple(float(v) for v in a.blend.split(",") if v) if a.blend is not None else None,
              "blend_pairs": tuple(a.blend_pairs.split(",")) if a.blend_pairs is not None else None}
    box = {"box_blend": _box_option(a.box_blend, "same", float), "box_classical": _box_option(a.box_classical, "class", str)}
    methods = {"classical": tuple(v for v in a.classical.split(",") if v) if a.classical is not None else None}
    extra = {k: v for k, v in (("holdout", a.holdout), ("patch", a.patch), ("ring", a.ring), ("box_z", a.box_z), ("reference", a.reference), *blends.items(), *box.items(), *methods.items()) if v is not None}
    cells = [(name, level) for name, level in SPECS  # spec names: the tasks and "box"
             if not ((keep and name not in keep) or (keys and f"{name} {level:g}" not in keys) or f"{name} {level:g}" in results)]
    if a.jobs > 1:
        for name, level in cells:
            _prepare(G, x, name, level, a.steps, a.restarts, framing)
    calls = [(G, x, name, level, a.steps, a.restarts, framing, extra) for name, level in cells]
    for i, (result, images, seconds) in workers.imap(_cell, calls, a.jobs, unit="cell", threads=a.threads):
        name, level = cells[i]
        key = f"{name} {level:g}"
        results[key] = result
        results[key]["seconds"] = seconds
        if a.grids is not None:
            a.grids.mkdir(parents=True, exist_ok=True)
            save_grid(x, images, results[key]["per_image"], names, a.grids / f"{name}-{level:g}.png")
        meta = {"split": a.split, "crops": a.crops, "framing": framing, "faces": names, "steps": a.steps, "restarts": a.restarts, "generator": a.generator,
                "threads": a.threads, "jobs": a.jobs, "load": os.getloadavg(), **extra}
        if crop_records is not None:
            meta["crop_records"] = crop_records
        checkpoint(a.json, meta, results, key, seconds)
    print(table(results))
    print(targets_table(results))
    return results


if __name__ == "__main__":
    main()
