"""Real faces: aligned crops vs centre crops vs the registry's box, and ``ilo restore`` vs the classical method.

Two measurements on the real-face evaluation set (:mod:`ilo.data.realfaces`, split ``eval``):

1. **Crops.** Each face's full photograph is cropped three ways to the generator's size: ``centre``
   (the central square, what ``ilo solve --image`` takes), ``box`` (the registry's hand-drawn box)
   and ``aligned`` (the detected face nearest to the box, aligned to the generator's template:
   :func:`ilo.faces.crop.aligned_face`, what ``ilo solve --image --align`` takes). For every paper
   task (inpainting 30 % random, super-resolution x4, denoising sigma 25, compressed sensing 10 %)
   each crop is degraded and reconstructed by ILO and CSGM (the pipeline's one path, seeds per
   face, so the masks and noise are the same for the three crops); the score is the true MSE and
   PSNR of the reconstruction against *its own* crop. Only faces the detector finds are used, for
   all three crops alike (the count is reported).
2. **Restore.** Each distinct photograph (resized so that its registry boxes are ``--face-box`` px
   wide on average, about the generator's 64 px for the face inside the box) is degraded
   whole by each photo task (:func:`ilo.faces.restore.degrade`, as ``ilo restore --simulate``) and
   restored by :func:`ilo.faces.restore.restore_photo`; the PSNR of the result and of the task's
   classical method applied to the whole photo (the background the faces are pasted on), over the
   whole photo and inside the face regions (blending weight > 0.5).

Detection for the crops runs on the photo resized so that the registry box is ``DETECT_BOX`` px
wide (dlib's HOG detector is slow on 2-megapixel photos and finds faces of 80-300 px best); the
crop itself is taken from the full-resolution photo.

Prints tables and writes JSON::

    python -m ilo.bench.faces --steps 200 --restarts 2 --threads 1 --out docs/bench/faces/crops.json --part crops
    python -m ilo.bench.faces --steps 200 --restarts 2 --threads 1 --out docs/bench/faces/restore.json --part restore

and, with ``--part figure``, the README's before/after picture of an ``ilo restore --simulate`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: the paper tasks at the levels of the issue (ProblemSpec fields)
CROP_PROBLEMS = ({"task": "inpaint", "observed": 0.3}, {"task": "superres", "factor": 4},
                 {"task": "denoise", "sigma": 25.0}, {"task": "cs", "measurements": 0.1})
#: ilo restore's tasks (RestoreConfig fields); ``observed``: the random mask's observed fraction
RESTORE_PROBLEMS = ({"task": "inpaint", "observed": 0.3}, {"task": "superres", "factor": 4},
                    {"task": "denoise", "sigma255": 25.0})
#: the summaries' order (one level per task in a run)
TASK_ORDER = tuple({"task": p["task"]} for p in RESTORE_PROBLEMS)
CROPS = ("centre", "box", "aligned")
METHODS = ("ilo", "csgm")
#: registry box width (px) the photo is resized to for detection
DETECT_BOX = 200


def _photo(path: Path) -> Image.Image:
    from ..images import read_image

    return read_image(path).convert("RGB")


def aligned_real_face(f, G, im: Image.Image | None = None) -> tuple[torch.Tensor, dict]:
    """The registry face ``f`` (:class:`ilo.data.realfaces.Face`) aligned to ``G``'s template, as
    ``ilo solve --image --align`` frames it: ``[1, 3, S, S]`` in [-1, 1] and a record (the
    alignment's fit, its scale, and ``outside``: the fraction of the aligned frame that lies outside
    the photo, filled with 0 there). Detection runs on the photo resized so that the registry box
    is :data:`DETECT_BOX` px wide; the crop is taken from the full-resolution photo (``im``, read
    from the registry when not given).

    Raises:
        ilo.faces.detect.NoFaceFound: no face inside the registry box.
    """
    from ..data.realfaces import locate
    from ..faces.align import Similarity, aligned_crop, sampling_grid
    from ..faces.crop import aligned_face
    from ..images import pil_to_tensor

    S = int(G.image_shape[-1])
    im = _photo(locate(f)) if im is None else im
    r = min(1.0, DETECT_BOX / (f.box[2] - f.box[0]))
    small = im.resize((max(1, round(im.width * r)), max(1, round(im.height * r))), Image.LANCZOS) if r < 1 else im
    _, face, al = aligned_face(pil_to_tensor(small), G, near=tuple(v * r for v in f.box))
    T = Similarity(al.transform.matrix @ np.diag([r, r, 1.0]))  # full photo -> aligned frame
    grid = sampling_grid(T.inverse(), (im.height, im.width), (0, 0, S, S))  # [1, S, S, 2] in [-1, 1] inside
    outside = float((grid.abs() > 1).any(-1).float().mean())
    record = {"face": f.name, "found": True, "landmark_fit_rms_px": al.fit_rms, "angle_deg": al.transform.angle,
              "face_px_per_aligned_px": 1.0 / T.scale, "outside": outside}
    return aligned_crop(pil_to_tensor(im), T, S).clamp(-1, 1), record


def aligned_real_faces(G, split: str = "eval", max_outside: float = 0.01) -> tuple[torch.Tensor, list[str], list[dict]]:
    """The faces of ``split`` aligned to ``G``'s template (:func:`aligned_real_face`), keeping those
    whose aligned frame lies inside the photo (at most ``max_outside`` of it outside: a tightly
    cropped photo would leave a flat border that no method has to reconstruct):
    ``[N, 3, S, S]``, their names, and a record per face of the split (kept or why not)."""
    from ..data.realfaces import faces
    from ..faces.detect import NoFaceFound

    out, kept, records = [], [], []
    for f in faces(split):
        try:
            crop, rec = aligned_real_face(f, G)
        except NoFaceFound as e:
            records.append({"face": f.name, "found": False, "kept": False, "why": str(e)})
            continue
        rec["kept"] = rec["outside"] <= max_outside
        if not rec["kept"]:
            rec["why"] = f"{rec['outside']:.1%} of the aligned frame lies outside the photo"
        else:
            out.append(crop)
            kept.append(f.name)
        records.append(rec)
    if not out:
        raise ValueError(f"no face of the {split!r} split aligns inside its photo")
    return torch.cat(out), kept, records


def crops(G, names: list[str] | None = None) -> tuple[dict[str, torch.Tensor], list[str], list[dict]]:
    """The three crops ``{kind: [N, 3, S, S]}`` of the eval faces the detector finds, their names, and
    a record per face (found or why not, the alignment's fit)."""
    from ..data.realfaces import faces, locate
    from ..faces.detect import NoFaceFound
    from ..images import fit_to_size, pil_to_tensor

    S = int(G.image_shape[-1])
    out: dict[str, list[torch.Tensor]] = {k: [] for k in CROPS}
    kept, records = [], []
    for f in faces("eval"):
        if names and f.name not in names:
            continue
        im = _photo(locate(f))
        try:
            crop, record = aligned_real_face(f, G, im)
        except NoFaceFound as e:
            records.append({"face": f.name, "found": False, "why": str(e)})
            continue
        out["aligned"].append(crop)
        out["centre"].append(pil_to_tensor(fit_to_size(im, S)))
        out["box"].append(pil_to_tensor(fit_to_size(im, S, f.box)))
        kept.append(f.name)
        records.append(record)
    return {k: torch.cat(v) for k, v in out.items()}, kept, records


def run_crops(G, steps: int, restarts: int, names: list[str] | None, log) -> dict:
    from ..pipeline import ProblemSpec, build_problem, run_method

    x, kept, records = crops(G, names)
    log(f"crops: {len(kept)} of {len(records)} eval faces found by the detector")
    rows = []
    for prob_kw in CROP_PROBLEMS:
        spec = ProblemSpec(**prob_kw)
        for kind in CROPS:
            prob = build_problem(spec, G, seed=0, truth=x[kind].to(G.device))
            for method in METHODS:
                t0 = time.time()
                _, m = run_method(prob, G, method, total_steps=steps, restarts=restarts, seed=0)
                row = {**prob_kw, "crop": kind, "method": method, "psnr": float(np.mean(m["per_image"]["psnr"])),
                       "true_mse": float(np.mean(m["per_image"]["true_mse"])),
                       "per_image": {"psnr": m["per_image"]["psnr"], "true_mse": m["per_image"]["true_mse"]},
                       "seconds": round(time.time() - t0, 1)}
                rows.append(row)
                log(f"{spec.task:8s} {kind:8s} {method:5s} PSNR {row['psnr']:6.2f} dB  MSE {row['true_mse']:.4f}  "
                    f"({row['seconds']:.0f} s)")
    return {"faces": kept, "detection": records, "rows": rows, "summary": crop_summary(rows)}


def crop_summary(rows: list[dict]) -> list[dict]:
    """Per task and method: mean PSNR of each crop and the aligned crop's gain over the others."""
    out = []
    for prob_kw in CROP_PROBLEMS:
        for method in METHODS:
            sel = {r["crop"]: r for r in rows if r["task"] == prob_kw["task"] and r["method"] == method}
            if len(sel) < len(CROPS):
                continue
            d = {"task": prob_kw["task"], "method": method, **{f"psnr_{k}": sel[k]["psnr"] for k in CROPS},
                 **{f"mse_{k}": sel[k]["true_mse"] for k in CROPS}}
            d["gain_vs_centre_db"] = d["psnr_aligned"] - d["psnr_centre"]
            d["gain_vs_box_db"] = d["psnr_aligned"] - d["psnr_box"]
            out.append(d)
    return out


def run_restore(G, steps: int, restarts: int, face_box: int, names: list[str] | None, log,
                weight: float | None = None, split: str = "eval", residual: bool = True,
                problems: tuple[dict, ...] = RESTORE_PROBLEMS) -> dict:
    from ..data.realfaces import faces, locate
    from ..faces.detect import NoFaceFound
    from ..faces.restore import RestoreConfig, degrade, photo_operator, restoration_metrics, restore_photo
    from ..images import pil_to_tensor
    from ..operators import Inpainting

    photos: dict[Path, list] = {}
    for f in faces(split):
        if not names or f.name in names:
            photos.setdefault(locate(f), []).append(f)
    rows = []
    for path, fs in photos.items():
        im, who = _photo(path), [f.name for f in fs]
        r = min(1.0, face_box / float(np.mean([f.box[2] - f.box[0] for f in fs])))
        im = im.resize((round(im.width * r), round(im.height * r)), Image.LANCZOS) if r < 1 else im
        photo = pil_to_tensor(im)  # [1, 3, H, W]
        for i, kw in enumerate(problems):
            kw = dict(kw)
            observed = kw.pop("observed", None)
            cfg = RestoreConfig(**kw, steps=steps, restarts=restarts, seed=0, weight=weight, residual=residual)
            mask = None
            if observed is not None:
                mask = Inpainting.random(tuple(photo.shape[1:]), observed, torch.Generator().manual_seed(i)).mask
            y = degrade(photo, cfg, mask=mask, seed=0)
            truth = photo[..., : y.shape[-2] * cfg.scale, : y.shape[-1] * cfg.scale]
            t0 = time.time()
            row = {"photo": path.name, "registry_faces": who, "size": list(im.size), "task": cfg.task}
            try:
                rest = restore_photo(y, G, cfg, mask=mask)
            except NoFaceFound:
                row["faces_found"] = 0
                rows.append(row)
                log(f"{path.name:24s} {cfg.task:8s} no face found")
                continue
            m = restoration_metrics(rest, truth)
            row.update(faces_found=len(rest.faces), classical=rest.config["classical"],
                       psnr_photo=m["psnr"], psnr_photo_classical=m["psnr_background"],
                       psnr_faces=m["faces_region"]["psnr"], psnr_faces_classical=m["faces_region"]["psnr_background"],
                       face_pixels=m["faces_region"]["pixels"], seconds=round(time.time() - t0, 1),
                       weights=[fr.weight for fr in rest.faces],
                       choices=[fr.choice.choice if fr.choice is not None else "given" for fr in rest.faces])
            if weight is None:
                row["candidates"] = candidate_scores(rest, y, photo_operator(cfg, tuple(y.shape), mask), truth)
            rows.append(row)
            log(f"{path.name:24s} {cfg.task:8s} {len(rest.faces)} face(s): photo {row['psnr_photo']:.2f} "
                f"(classical {row['psnr_photo_classical']:.2f}), faces {row['psnr_faces']:.2f} "
                f"(classical {row['psnr_faces_classical']:.2f}) dB, {' '.join(row['choices'])}, {row['seconds']:.0f} s")
    return {"face_box": face_box, "split": split, "face_weight": "chosen per face" if weight is None else weight,
            "residual_candidates": residual, "problems": list(problems), "rows": rows,
            "summary": restore_summary(rows), "choice_replay": replay(rows)}


def candidate_scores(rest, y: torch.Tensor, op, truth: torch.Tensor) -> list[dict]:
    """Per face whose paste was chosen: every candidate of the choice built from all measurements
    (as the output pastes them; inpainting keeps the observed pixels) and its PSNR against the
    truth inside the face (window > 0.5), beside the choice's estimates: what an oracle would
    have taken, and what another margin would take (:func:`replay`)."""
    from ..faces import choice as fc
    from ..metrics import psnr

    out = []
    for fr in rest.faces:
        if fr.choice is None or fr.operator is None:
            continue
        wop = fr.operator
        x0, y0, x1, y1 = (v * wop.scale for v in wop.box)
        bg, t = rest.background[..., y0:y1, x0:x1], truth[..., y0:y1, x0:x1]
        y_reg = y[..., wop.box[1]:wop.box[3], wop.box[0]:wop.box[2]]
        cands = [fc.blends(bg, fr.restored, wop)]
        if any(n.startswith("residual") for n in fr.choice.candidates):
            cands.append(fc.region_blends(bg, fc.residual_image(y, op, wop, fr.restored), wop, fc.WEIGHTS[1:]))
        inside = (fr.alpha[..., y0:y1, x0:x1] > 0.5).expand_as(t)
        scores = [psnr(wop.inner.keep_observed(c.clamp(-1, 1), y_reg)[inside][None], t[inside][None]).item()
                  for c in torch.cat(cands)]
        out.append({"candidates": fr.choice.candidates, "psnr": scores, "chosen": fr.choice.choice,
                    "estimates": fr.choice.estimates, "se": fr.choice.se})
    return out


def replay(rows: list[dict], zs: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)) -> list[dict]:
    """Per task, the mean PSNR inside the faces (per face) of the candidate each margin ``z``
    would choose from the recorded estimates, of the oracle's, of the classical restoration and of
    the face pasted as drawn."""
    from ..solvers.selection import choose

    out = []
    for kw in TASK_ORDER:
        faces = [f for r in rows if r["task"] == kw["task"] for f in r.get("candidates", [])]
        if not faces:
            continue
        d = {"task": kw["task"], "faces": len(faces),
             "oracle": float(np.mean([max(f["psnr"]) for f in faces])),
             "classical": float(np.mean([f["psnr"][0] for f in faces])),
             "face@1": float(np.mean([f["psnr"][f["candidates"].index("face@1")] for f in faces]))}
        for z in zs:  # the choice's own rule (ilo.solvers.selection.choose)
            picks = [int(choose(torch.tensor(f["estimates"])[:, None], se=torch.tensor(f["se"])[:, None], z=z)[0])
                     for f in faces]
            d[f"z={z:g}"] = float(np.mean([f["psnr"][k] for f, k in zip(faces, picks)]))
        out.append(d)
    return out


def restore_problems(levels: str | None) -> tuple[dict, ...]:
    """``--levels`` as restore problems, one ``task:field=value`` per task with the fields of
    :data:`RESTORE_PROBLEMS` (``"inpaint:observed=0.1,superres:factor=2,denoise:sigma255=50"``);
    None: the defaults.

    >>> restore_problems("superres:factor=2,denoise:sigma255=50.5")
    ({'task': 'superres', 'factor': 2}, {'task': 'denoise', 'sigma255': 50.5})
    """
    if not levels:
        return RESTORE_PROBLEMS
    known = {p["task"]: set(p) - {"task"} for p in RESTORE_PROBLEMS}
    out = []
    for part in levels.split(","):
        task, _, setting = part.strip().partition(":")
        name, _, value = setting.partition("=")
        if name not in known.get(task, ()):
            raise ValueError(f"--levels: {part.strip()!r} is not task:field=value with the fields of "
                             + ", ".join(f"{t}:{'/'.join(sorted(f))}" for t, f in known.items()))
        out.append({"task": task, name: int(value) if value.strip().isdigit() else float(value)})
    return tuple(out)


def restore_summary(rows: list[dict]) -> list[dict]:
    """Per task: mean PSNRs over the photos with a face found, and how many photos restore wins inside the faces."""
    out = []
    for kw in TASK_ORDER:
        sel = [r for r in rows if r["task"] == kw["task"] and r.get("faces_found")]
        if not sel:
            continue
        mean = {k: float(np.mean([r[k] for r in sel])) for k in
                ("psnr_photo", "psnr_photo_classical", "psnr_faces", "psnr_faces_classical")}
        out.append({"task": kw["task"], "photos": len(sel), "photos_without_face": sum(1 for r in rows if r["task"] == kw["task"]) - len(sel),
                    **mean, "faces_gain_db": mean["psnr_faces"] - mean["psnr_faces_classical"],
                    "faces_wins": sum(r["psnr_faces"] > r["psnr_faces_classical"] for r in sel)})
    return out


def print_tables(result: dict) -> None:
    if "crops" in result:
        print(f"\nCrops ({len(result['crops']['faces'])} eval faces found): mean PSNR (dB), true MSE")
        print(f"{'task':9s} {'method':6s} " + " ".join(f"{k:>8s}" for k in CROPS) + "  aligned-centre  aligned-box")
        for d in result["crops"]["summary"]:
            print(f"{d['task']:9s} {d['method']:6s} " + " ".join(f"{d['psnr_' + k]:8.2f}" for k in CROPS)
                  + f"  {d['gain_vs_centre_db']:+14.2f}  {d['gain_vs_box_db']:+11.2f}")
    if "restore" in result:
        print(f"\nilo restore vs the classical method (photos resized to {result['restore']['face_box']}-px face boxes): "
              "mean PSNR (dB)")
        print(f"{'task':9s} {'photos':>6s} {'photo':>7s} {'classical':>9s} {'faces':>7s} {'classical':>9s} {'gain':>6s} {'wins':>5s}")
        for d in result["restore"]["summary"]:
            print(f"{d['task']:9s} {d['photos']:6d} {d['psnr_photo']:7.2f} {d['psnr_photo_classical']:9.2f} "
                  f"{d['psnr_faces']:7.2f} {d['psnr_faces_classical']:9.2f} {d['faces_gain_db']:+6.2f} {d['faces_wins']:5d}")
        if result["restore"].get("choice_replay"):
            rep = result["restore"]["choice_replay"]
            zs = [k for k in rep[0] if k.startswith("z=")]
            print("\nthe face's paste per face (mean PSNR inside each face, dB): classical, as drawn, each margin z, oracle")
            print(f"{'task':9s} {'faces':>5s} {'classical':>9s} {'face@1':>7s} " + " ".join(f"{z:>7s}" for z in zs)
                  + f" {'oracle':>7s}")
            for d in rep:
                print(f"{d['task']:9s} {d['faces']:5d} {d['classical']:9.2f} {d['face@1']:7.2f} "
                      + " ".join(f"{d[z]:7.2f}" for z in zs) + f" {d['oracle']:7.2f}")


def figure(restored: Path, photo: Path, out: Path, box: tuple[int, int, int, int]) -> None:
    """Observed (enlarged, nearest neighbour) | restored | original, each cropped to ``box`` of the
    output's pixels, side by side: the README's picture of an ``ilo restore --simulate`` folder."""
    from PIL import ImageDraw

    obs, rest = Image.open(restored / "observation.png"), Image.open(restored / "restored.png")
    f = rest.width // obs.width
    views = [obs.resize((obs.width * f, obs.height * f), Image.NEAREST), rest, _photo(photo)]
    w, h = box[2] - box[0], box[3] - box[1]
    fig = Image.new("RGB", (3 * w, h + 20), "white")
    labels = [f"observed (x{f} smaller, shown enlarged)" if f > 1 else "observed", "ilo restore", "original"]
    for i, (im, label) in enumerate(zip(views, labels)):
        fig.paste(im.crop(box), (i * w, 20))
        ImageDraw.Draw(fig).text((i * w + 4, 4), label, fill="black")
    fig.save(out, quality=85)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ilo.bench.faces", description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("crops", "restore", "all", "figure"), default="all")
    p.add_argument("--restored", type=Path, help="figure: an ilo restore --simulate output folder")
    p.add_argument("--photo", type=Path, help="figure: the original photo")
    p.add_argument("--box", default="280,180,820,460", help="figure: X0,Y0,X1,Y1 of the output shown")
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--face-box", type=int, default=96, help="restore: mean registry-box width the photos are resized to (px)")
    p.add_argument("--face-weight", default="auto",
                   help="restore: the weight of the generator's face (auto: chosen per face; 1: pasted as drawn)")
    p.add_argument("--faces", default=None, help="comma-separated eval face names (default: all)")
    p.add_argument("--no-residual", action="store_true",
                   help="restore: the weight's choice without the face-plus-classical-residual candidates")
    p.add_argument("--levels", default=None,
                   help='restore: one level per task instead of the defaults, e.g. '
                        '"inpaint:observed=0.1,superres:factor=2,denoise:sigma255=50"')
    p.add_argument("--split", default="eval", choices=("eval", "tuning"),
                   help="restore: the photos of these real faces (decide on tuning, report eval)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    if a.part == "figure":
        figure(a.restored, a.photo, Path(a.out), tuple(int(v) for v in a.box.split(",")))
        return 0
    from .. import runtime
    from ..generators import load_generator

    rt = runtime.configure(a.threads)
    G = load_generator(a.generator)
    names = a.faces.split(",") if a.faces else None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.time()
    result: dict = {"generator": a.generator, "steps": a.steps, "restarts": a.restarts, "runtime": rt.to_dict(),
                    "load_average_at_start": os.getloadavg()[0], "cpus": os.cpu_count()}
    if a.part in ("crops", "all"):
        result["crops"] = run_crops(G, a.steps, a.restarts, names, log)
    if a.part in ("restore", "all"):
        result["restore"] = run_restore(G, a.steps, a.restarts, a.face_box, names, log,
                                        None if a.face_weight == "auto" else float(a.face_weight), a.split,
                                        not a.no_residual, restore_problems(a.levels))
    result["seconds"] = round(time.time() - t0, 1)
    result["load_average_at_end"] = os.getloadavg()[0]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
