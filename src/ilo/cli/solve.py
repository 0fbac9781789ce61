"""``ilo solve``: reconstruct one image and write its result folder."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    FiniteFloat,
    Seed,
    device_option,
    fail,
    first_line,
    framing_option,
    generator_option,
    load_generator,
    new_out,
    output_folder,
    parse_floats,
    pick_device,
    quiet_option,
    runtime_record,
    threads_option,
)

#: every file ``solve`` may write (checked against the inputs before any work)
OUTPUTS = ["reconstruction.png", "observation.png", "truth.png", "comparison.png", "observation.npy", "config.json",
           "metrics.json", "history.json"]
IMAGE_POLICY = ("8- and 16-bit, grey, RGB or palette; EXIF orientation applied; "
                "an image with transparent pixels is refused (flatten it first)")


def _parse_box(text: str | None):
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        fail(f"--box must be four integers X0,Y0,X1,Y1, got {text!r}")
    if len(parts) != 4:
        fail(f"--box must be four integers X0,Y0,X1,Y1, got {text!r}")
    return parts


def task_options(f):
    """The options that say what to solve and how (task, its level, method, loss, budget),
    shared by ``ilo solve`` and ``ilo batch``; :func:`check_task` validates them."""
    opts = [
        click.option("--task", type=str, required=True, help="inpaint | superres | denoise | cs"),
        click.option("--method", type=str, default="ilo",
                     help="Generative: ilo | csgm | csgm-perceptual | csgm-mse-perceptual | pulse; inpaint, superres, cs: "
                          "gaussian (the linear MMSE of a Gaussian fitted to the generator's images). Classical (no "
                          "generator): inpaint: biharmonic | harmonic | tv-inpaint; superres: bicubic | tv-superres; denoise: "
                          "bm3d-free | bm3d (optional package, non-commercial) | nlmeans | tv-denoise; cs: adjoint | tv-cs | "
                          "wavelet-cs."),
        click.option("--loss", "loss_terms", type=str, default=None,
                     help="Loss terms replacing the preset's, e.g. mse,perceptual (terms: mse, perceptual, lpips)."),
        click.option("--weights", type=str, default=None, help="Weights of the --loss terms, e.g. 1,0.05 (default 1 each)."),
        click.option("--sna/--no-sna", default=None, help="Stochastic Noise Addition (denoise; default: on for ILO)."),
        click.option("--lpips-backbone", type=click.Path(dir_okay=False), default=None,
                     help="torchvision VGG16 weight file for LPIPS."),
        click.option("--observed", type=FiniteFloat(), default=None,
                     help="inpaint: fraction of pixels observed at random (default 0.1)."),
        click.option("--box", type=str, default=None, help="inpaint: hide the box X0,Y0,X1,Y1 (pixels of the generator's size)."),
        click.option("--mask", type=click.Path(dir_okay=False), default=None,
                     help="inpaint: mask image, white = observed, black = hidden (same rules as --image)."),
        click.option("--factor", type=int, default=None, help="superres: downsampling factor (default 4)."),
        click.option("--sigma", type=FiniteFloat(), default=None, help="denoise: noise std on the 0-255 scale (default 25)."),
        click.option("--measurements", type=FiniteFloat(), default=None,
                     help="cs: fraction of measurements m/n (default 0.1)."),
        click.option("--steps", type=click.IntRange(min=1), default=600,
                     help="Total optimisation steps (ILO: including its CSGM stage)."),
        click.option("--restarts", type=click.IntRange(min=1), default=4, help="CSGM random restarts (run as one batch)."),
        click.option("--screen", type=click.IntRange(min=0), default=None,
                     help="CSGM-family methods and ILO's CSGM stages: start Adam from the --restarts best of this many "
                          "random starts by their measurement loss (default 0: off; 512 raised CSGM 1.3-4.9 dB on "
                          "generated faces, not real ones: docs/BENCHMARKS.md)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def check_task(task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma, measurements):
    """The validated problem spec and loss (None: the preset's) of the :func:`task_options`."""
    from ..operators import operator_class
    from ..pipeline import ProblemSpec
    from ..solvers import METHODS, SOLVES

    spec = ProblemSpec(task=task, observed=observed, box=_parse_box(box), mask=mask, factor=factor, sigma=sigma,
                       measurements=measurements)
    if method not in METHODS:
        fail(f"--method: unknown method {method!r}; choose from {', '.join(METHODS)}")
    spec.validate()  # the library's one-line ValueError, printed by main()
    solves = SOLVES.get(method)
    if solves is not None and operator_class(task) not in solves:
        fail(f"--method {method} only solves --task {' or '.join(c.task for c in solves)}")
    if method == "bm3d":
        from ..solvers.bm3d import BM3DUnavailable, _import_bm3d

        try:
            _import_bm3d()
        except BM3DUnavailable as e:
            fail(first_line(e))
    return spec, _parse_loss(loss_terms, weights, sna, lpips_backbone, method, task)


def check_screen(screen: int | None, method: str) -> None:
    """``--screen`` only where there is a CSGM stage to screen (exit 2 otherwise)."""
    from ..solvers import GENERATIVE

    if screen is not None and method not in GENERATIVE:
        fail(f"--screen applies to the generative methods ({', '.join(GENERATIVE)}), not --method {method}")


@click.command()
@generator_option
@task_options
@click.option("--truth-seed", type=Seed(), default=None, help="Truth = a face drawn from the generator with this seed.")
@click.option("--image", type=click.Path(dir_okay=False), default=None,
              help=f"Truth = this photo (centre-cropped, resized); {IMAGE_POLICY}.")
@click.option("--extend/--no-extend", default=True,
              help="ILO: end with range extension and per-image self-tuning (held-out measurements or SURE); "
                   "--no-extend runs the paper's ILO.")
@click.option("--align", is_flag=True, help="With --image: the detected face (the largest) aligned to the generator's "
                                             "template instead of the centre crop (needs the faces extra).")
@click.option("--observation", type=click.Path(dir_okay=False), default=None,
              help="Observed data only, no truth: an image (same rules as --image) or, for cs, a .npy of finite "
                   "measurements [m] or [1, m].")
@click.option("--seed", type=Seed(), default=0, help="Seed of the operator, the noise and the solver.")
@framing_option
@device_option
@threads_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder (created once the inputs are valid; never overwrites an input file).")
@quiet_option
def solve(generator_name, task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma,
          measurements, steps, restarts, screen, truth_seed, image, extend, align, observation, seed, framing, device,
          out_dir, quiet):
    """Reconstruct one image and write reconstruction.png, observation.png, config.json, metrics.json."""
    from ..pipeline import build_problem, run_method

    if sum(s is not None for s in (truth_seed, image, observation)) != 1:
        fail("give exactly one of --truth-seed N, --image PNG or --observation FILE")
    spec, loss = check_task(task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma,
                            measurements)
    if align and image is None:
        fail("--align aligns the face of --image; give --image PHOTO")
    check_screen(screen, method)
    if align:
        from ..faces.detect import DetectorUnavailable, check_available

        try:
            check_available()
        except DetectorUnavailable as e:
            fail(first_line(e))
    if observation is not None and Path(observation).suffix == ".npy":
        from ..io import load_array

        load_array(observation)  # finite, non-empty, [m] or [B, m]: refused here with one line
    writer = output_folder(Path(out_dir), OUTPUTS, [image, mask, observation, lpips_backbone])
    dev = pick_device(device)
    G = load_generator(generator_name, dev)
    aligned, alignment = (_aligned_image(image, G) if align else (None, None))
    if framing == "auto":  # build_problem's own rule; an aligned face is framed as the generator's
        framing = "generator" if align else None
    prob = build_problem(spec, G, seed=seed, truth_seed=truth_seed, image=None if align else image,
                         observation=observation, truth=aligned, framing=framing)
    if observation is not None and not bool(prob.y.isfinite().all()):
        fail(f"--observation {observation} holds NaN or infinite values")
    from ..io import environment

    with new_out(out_dir):
        result, metrics = run_method(prob, G, method, total_steps=steps, restarts=restarts, seed=seed,
                                     progress=not quiet, loss=loss, sna=sna, lpips_backbone=lpips_backbone, extend=extend,
                                     screen=screen)
        config = {
            "command": "solve",
            "generator": generator_name,
            "method": method,
            "problem": prob.describe(),
            **({"image": str(image), "alignment": alignment} if align else {}),
            "solver": result.config,
            "seed": seed,
            "device": str(dev),
            "runtime": runtime_record(),
            "environment": environment(),
        }
        _write_result(writer, prob, result, metrics, config)
    click.echo(_metrics_line(metrics))


def _aligned_image(path: str, G):
    """The largest face of the photo at ``path`` aligned to ``G``'s template ``[1, C, S, S]`` and a record of it."""
    from ..faces.crop import aligned_face
    from ..images import pil_to_tensor, read_image

    crop, face, al = aligned_face(pil_to_tensor(read_image(path).convert("RGB")), G)
    return crop, {**face.to_dict(), **al.to_dict()}


def loss_weights(terms: str | None, weights: str | None) -> dict[str, float] | None:
    """``--loss`` and ``--weights`` as term -> weight, or None when neither is given."""
    if terms is None and weights is None:
        return None
    names = [t.strip() for t in (terms or "mse").split(",") if t.strip()]
    ws = parse_floats("--weights", weights, minimum=0.0) if weights else [1.0] * len(names)
    if len(ws) != len(names):
        fail(f"--weights has {len(ws)} values for {len(names)} loss terms")
    return dict(zip(names, ws))


def _parse_loss(terms: str | None, weights: str | None, sna: bool | None, lpips_backbone: str | None, method: str, task: str):
    """The LossConfig asked for on the command line, or None to keep the method's preset
    (the rules are the library's: :func:`ilo.pipeline.custom_loss`)."""
    from ..pipeline import custom_loss

    return custom_loss(task, method, loss_weights(terms, weights), sna=sna, lpips_backbone=lpips_backbone)


def _write_result(w, prob, result, metrics: dict, config: dict) -> None:
    import numpy as np

    from ..images import grid, save_image

    with w:
        obs = prob.operator.observation_image(prob.y)
        save_image(result.image[:1], w.path("reconstruction.png"))
        save_image(obs[:1].clamp(-1, 1), w.path("observation.png"))
        cols, row = ["observation", result.method], [obs[0], result.image[0]]
        if prob.truth is not None:
            save_image(prob.truth[:1], w.path("truth.png"))
            cols, row = ["truth"] + cols, [prob.truth[0]] + row
        grid([row], col_labels=cols, cell=192).save(w.path("comparison.png"))
        if prob.y.ndim == 2:  # measurements [B, m] (compressed sensing): no image shows them exactly
            with w.open("observation.npy", binary=True) as f:
                np.save(f, prob.y.cpu().numpy())
        w.json("config.json", config)
        w.json("metrics.json", metrics)
        w.json("history.json", result.history)


def _metrics_line(m: dict) -> str:
    parts = [f"{m['task']} {m['method']}: measurement_mse={m['measurement_mse']:.3g}"]
    if "true_mse" in m:
        parts.append(f"true_mse={m['true_mse']:.4g} psnr={m['psnr']:.2f} dB")
    parts.append(f"steps={m['steps']} seconds={m['seconds']:.1f}")
    return " ".join(parts)
