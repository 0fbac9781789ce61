"""``ilo restore``: restore the faces of real photographs (a thin layer over :mod:`ilo.faces.restore`).

Every input is read and checked before any work; each photo's outputs are written into a
temporary folder inside the output directory and renamed into place when complete, so a failed
run leaves nothing half-written and input files are never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..io import OutputFolder, environment
from .common import FiniteFloat, Seed, fail, load_generator, new_out, pick_device, runtime_record, threads_option

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUTS = ("restored.png", "observation.png", "mask.png", "faces.json", "config.json", "metrics.json")


def _photos(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    return [path]


def _companion(folder_or_file: str | None, photo: Path, many: bool, what: str) -> Path | None:
    """The mask or truth file of ``photo``: the file itself, or the same name in a folder."""
    if folder_or_file is None:
        return None
    p = Path(folder_or_file)
    if many:
        if not p.is_dir():
            fail(f"with a folder of photos, {what} must be a folder holding files of the same names")
        p = p / photo.name
    if not p.is_file():
        fail(f"{what} file not found: {p}")
    return p


@click.command("restore", context_settings={"show_default": True})
@click.argument("photo", type=click.Path(exists=True))
@click.option("--task", type=click.Choice(["inpaint", "superres", "denoise"]), required=True)
@click.option("--mask", type=click.Path(), default=None, help="inpaint: mask of the photo's size, white = observed (or a folder).")
@click.option("--observed", type=FiniteFloat(), default=None,
              help="inpaint with --simulate: keep this fraction of the pixels, drawn at random from --seed "
                   "(instead of --mask; the mask is saved as mask.png).")
@click.option("--sigma", type=FiniteFloat(), default=25.0, help="denoise: the photo's noise std on the 0-255 scale.")
@click.option("--factor", type=int, default=4, help="superres: enlargement factor (the photo is the low-resolution one).")
@click.option("--truth", type=click.Path(), default=None, help="Clean photo (or folder) for PSNR, of the output's size.")
@click.option("--simulate", is_flag=True, help="PHOTO is clean: degrade it by the task first, and score against it.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--generator", "generator_name", default="digiface-dcgan", help="Registered generator name or checkpoint path.")
@click.option("--method", default="ilo", help="ilo | csgm | csgm-perceptual | csgm-mse-perceptual | pulse.")
@click.option("--seed", type=Seed(), default=0, help="Seed of the solver (face i uses SEED + i) and of --simulate's noise and --observed's mask.")
@click.option("--faces", "which", type=click.Choice(["all", "largest"]), default="all")
@click.option("--min-score", "min_score", type=FiniteFloat(), default=0.0,
              help="Drop detections scoring below this (faces.json records each face's score; hog: the "
                   "detector's margin, cnn: its confidence).")
@click.option("--steps", type=click.IntRange(min=1), default=300, help="Optimisation steps per face.")
@click.option("--restarts", type=click.IntRange(min=1), default=2, help="Random restarts per face.")
@click.option("--landmarks", type=click.Choice(["5", "68"]), default="5",
              help="Landmark model: 5 (free to use) or 68 (iBUG 300-W data: non-commercial only).")
@click.option("--detector", type=click.Choice(["hog", "cnn"]), default="hog")
@click.option("--template", type=click.Choice(["auto", "ffhq", "landmarks"]), default="auto",
              help="auto: FFHQ recipe for FFHQ generators, else the generator's landmark template.")
@click.option("--background", type=click.Choice(["classical", "input"]), default="classical",
              help="Outside the faces: the task's classical restoration, or the input as it is.")
@click.option("--face-weight", "face_weight", default="auto",
              help="How much of the generator's face is pasted over the background, 0 (the classical restoration) to "
                   "1 (the face as drawn); auto: chosen per face on held-out measurements (with --background input: 1).")
@click.option("--device", default="auto", help="auto | cpu | cuda[:N].")
@click.option("--jobs", "processes", type=click.IntRange(min=1), default=1,
              help="Processes that solve a photo's faces side by side, each on its share of the threads (default 1: "
                   "at the default budget a face takes a few seconds, about what starting a worker costs; worth it "
                   "for many faces on many cores).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@threads_option
def restore(photo, task, mask, observed, sigma, factor, truth, simulate, out_dir, generator_name, method, seed, which,
            min_score, steps, restarts, landmarks, detector, template, background, face_weight, device, processes, quiet):
    """Find the faces in PHOTO (a file or a folder), restore them with a generator in the photo's own
    coordinates, and paste them back: writes restored.png, faces.json, face-N.png (one comparison per
    face), config.json and metrics.json (one folder per photo for a folder)."""
    from ..faces.detect import DetectorUnavailable, check_available
    from ..faces.restore import RestoreConfig
    from ..images import ImageError, read_image

    weight = _face_weight(face_weight, background)
    try:
        cfg = RestoreConfig(task=task, sigma255=sigma, factor=factor, method=method, steps=steps,
                            restarts=restarts, seed=seed, faces=which, min_score=min_score, landmarks=landmarks, detector=detector,
                            template=template, background=background, weight=weight)
    except ValueError as e:
        fail(str(e))
    from ..solvers import METHODS

    if method not in METHODS:
        fail(f"unknown method {method!r}; choose from {', '.join(m for m in METHODS if m != 'bm3d')}")
    if observed is not None:
        from ..operators import operator_class

        if "observed" not in operator_class(task).options or not simulate:
            fail("--observed draws a random mask for --task inpaint --simulate only")
        if mask is not None:
            fail("--observed and --mask are two masks; give one")
        if not 0 < observed <= 1:
            fail(f"--observed must be a fraction in (0, 1], got {observed:g}")
    if "mask" in cfg.options() and mask is None and observed is None:
        fail(f"--task {task} needs --mask (white = observed), or --simulate --observed FRACTION")
    if simulate and truth is not None:
        fail("--simulate scores against PHOTO itself; drop --truth")
    src = Path(photo)
    photos = _photos(src)
    if not photos:
        fail(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {src}")
    many = src.is_dir()
    jobs = []
    try:
        for p in photos:
            im = read_image(p).convert("RGB")
            m = _companion(mask, p, many, "--mask")
            t = _companion(truth, p, many, "--truth")
            jobs.append((p, im, read_image(m) if m else None, read_image(t).convert("RGB") if t else None))
    except ImageError as e:
        fail(str(e))
    try:
        check_available(landmarks, detector)
    except DetectorUnavailable as e:
        fail(str(e))
    with new_out(out_dir) as out:  # removed again if nothing is written (no face found, a refused output)
        inputs = [Path(q).resolve() for q in (photo, mask, truth) if q is not None]
        inputs += [p.resolve() for p, *_ in jobs]
        for p, *_ in jobs:
            target = (out / p.stem if many else out).resolve()
            if any(q.parent == target and (q.name in OUTPUTS or q.name.startswith("face-")) for q in inputs):
                fail(f"--out {out} would overwrite an input file; choose another output directory")
        dev = pick_device(device)
        G = load_generator(generator_name, dev)
        env = {"command": "restore", "generator": generator_name, "device": str(dev), "runtime": runtime_record(),
               "environment": environment()}
        done = 0
        for p, im, m, t in jobs:
            try:
                target = out / p.stem if many else out
                summary = _restore_one(p, im, m, t, cfg, G, simulate, target, env, quiet, processes, observed)
            except ValueError as e:
                from ..faces.restore import NoFaceFound

                if many and isinstance(e, NoFaceFound):
                    click.echo(f"ilo: {p.name}: no face found, skipped", err=True)
                    continue
                fail(f"{p.name}: {str(e).splitlines()[0]}" if many else str(e).splitlines()[0])
            done += 1
            click.echo(summary)
        if not done:
            fail(f"no face found in any photo of {src}")


def _face_weight(text: str, background: str) -> float | None:
    """``--face-weight``: None (chosen per face) for ``auto`` on the classical background, 1 on the
    input (nothing to compare the face with), else a number in [0, 1]."""
    import math

    if text.strip().lower() == "auto":
        return None if background == "classical" else 1.0
    try:
        w = float(text)
    except ValueError:
        w = math.nan
    if not 0 <= w <= 1:
        fail(f"--face-weight must be auto or a number in [0, 1], got {text!r}")
    return w


def _restore_one(path: Path, im, mask_im, truth_im, cfg, G, simulate: bool, target: Path, env: dict, quiet: bool,
                 processes: int = 1, observed: float | None = None) -> str:
    """Restore one photo and write its outputs atomically into ``target``; returns a summary line.
    ``observed``: with ``simulate``, the fraction of pixels a random mask keeps (drawn from the seed)."""
    import torch

    from ..faces.restore import comparison_row, degrade, restoration_metrics, restore_photo
    from ..images import grid, pil_to_tensor, save_image
    from ..operators import Inpainting

    photo = pil_to_tensor(im)  # [1, 3, H, W]
    c, h, w = photo.shape[1:]
    mask = None
    if mask_im is not None:
        if mask_im.size != im.size:
            raise ValueError(f"the mask is {mask_im.size[0]}x{mask_im.size[1]} but the photo is {w}x{h} (W x H)")
        import numpy as np

        mask = Inpainting.from_image((c, h, w), np.asarray(mask_im), threshold=127).mask  # [1, 1, H, W]
    drawn = observed is not None  # the command allows it with --simulate and without --mask only
    if drawn:  # the same draw as `ilo solve --observed`: pixels kept at random, all channels alike
        mask = Inpainting.random((c, h, w), float(observed), torch.Generator().manual_seed(cfg.seed)).mask
    truth = pil_to_tensor(truth_im) if truth_im is not None else None
    observation = photo
    if simulate:
        observation = degrade(photo, cfg, mask=mask, seed=cfg.seed)
        truth = photo[..., : observation.shape[-2] * cfg.scale, : observation.shape[-1] * cfg.scale]
    expect = (observation.shape[-2] * cfg.scale, observation.shape[-1] * cfg.scale)
    if truth is not None and tuple(truth.shape[-2:]) != expect:
        raise ValueError(f"the truth must be {expect[1]}x{expect[0]} pixels (W x H), got {truth.shape[-1]}x{truth.shape[-2]}")
    rest = restore_photo(observation, G, cfg, mask=mask, progress=not quiet, jobs=processes)
    metrics = {"photo": path.name, "task": cfg.task, "method": cfg.method,
               "faces": [{"index": i, "measurement_mse": fr.measurement_loss, "seconds": round(fr.seconds, 2),
                          "weight": fr.weight} for i, fr in enumerate(rest.faces)]}
    if truth is not None:
        scores = restoration_metrics(rest, truth)
        for d, s in zip(metrics["faces"], scores.pop("faces")):
            d.update(s)
        metrics.update(scores)
    faces = {"photo": str(path), "size": [w, h], "template": rest.config["template"],
             "faces": [{"index": i, **fr.to_dict()} for i, fr in enumerate(rest.faces)]}
    config = {**env, "photo": str(path), "simulate": simulate, **rest.config,
              **({"observed": float(observed), "mask_seed": cfg.seed} if drawn else {}),
              "solver": rest.faces[0].solver if rest.faces else {}}
    target.mkdir(parents=True, exist_ok=True)
    with OutputFolder(target, protect=[path]) as w:
        save_image(rest.image, w.path("restored.png"))
        if simulate:
            save_image(observation, w.path("observation.png"))
        if drawn:
            save_image(mask.expand(1, 3, -1, -1).float() * 2 - 1, w.path("mask.png"))  # white = observed
        for i in range(len(rest.faces)):
            row, labels = comparison_row(rest, i, observation, truth)
            grid([row], col_labels=labels, cell=160).save(w.path(f"face-{i}.png"))
        for name, obj in (("faces.json", faces), ("config.json", config), ("metrics.json", metrics)):
            w.json(name, obj)
    line = (f"{path.name}: {len(rest.faces)} face(s) restored ({cfg.task} {cfg.method}, face weight "
            f"{', '.join(f'{fr.weight:g}' for fr in rest.faces)})")
    if truth is not None:
        fr = metrics["faces_region"]
        line += (f"; PSNR photo {metrics['psnr']:.2f} dB (background {metrics['psnr_background']:.2f}), "
                 f"faces {fr['psnr']:.2f} dB (background {fr['psnr_background']:.2f})")
    return line + f" -> {target}"
