"""The ``ilo`` command: a thin layer over the library.

Every command validates its inputs before any work, reports bad input as one line on stderr
with exit code 2, and writes its outputs atomically (to a temporary name, then renamed), so a
failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

from . import __version__


class CLIError(click.ClickException):
    """Bad input: printed as one line, exit code 2."""

    exit_code = 2


def fail(msg: str) -> None:
    raise CLIError(msg)


# ---------------------------------------------------------------------------------------------
# output helpers


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and check it is writable, before any computation."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        fail(f"output path {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".ilo-write-test-"):
            pass
    except OSError as e:
        fail(f"cannot write to output directory {p}: {e.strerror or e}")
    return p


class AtomicWriter:
    """Collects output files under temporary names and renames them into place on commit."""

    def __init__(self, out: Path):
        self.out, self.pending = out, []

    def path(self, name: str) -> Path:
        tmp = self.out / f".{name}.tmp{os.getpid()}{Path(name).suffix}"
        self.pending.append((tmp, self.out / name))
        return tmp

    def json(self, name: str, obj) -> None:
        self.path(name).write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")

    def commit(self) -> None:
        for tmp, final in self.pending:
            os.replace(tmp, final)
        self.pending = []

    def abort(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending = []


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def environment() -> dict:
    return {
        "ilo": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"device {name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        fail(f"unknown device {name!r}")


# ---------------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="ilo")
def cli() -> None:
    """Solve image inverse problems with pretrained generators (ILO, CSGM)."""


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


def _fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value <= 1.0:
        fail(f"{name} must be a fraction in (0, 1], got {value}")


@cli.command()
@click.option("--generator", "generator_name", default="digiface-dcgan", help="Registered generator name or checkpoint path.")
@click.option("--task", type=str, required=True, help="inpaint | superres | denoise | cs")
@click.option("--method", type=str, default="ilo",
              help="csgm | csgm-perceptual | csgm-mse-perceptual | pulse | ilo | bm3d (denoise only).")
@click.option("--loss", "loss_terms", type=str, default=None, help="Loss terms replacing the preset's, e.g. mse,perceptual (terms: mse, perceptual, lpips).")
@click.option("--weights", type=str, default=None, help="Weights of the --loss terms, e.g. 1,0.05 (default 1 each).")
@click.option("--sna/--no-sna", default=None, help="Stochastic Noise Addition (denoise; default: on for ILO).")
@click.option("--lpips-backbone", type=click.Path(dir_okay=False), default=None, help="torchvision VGG16 weight file for LPIPS.")
@click.option("--observed", type=float, default=None, help="inpaint: fraction of pixels observed at random (default 0.1).")
@click.option("--box", type=str, default=None, help="inpaint: hide the box X0,Y0,X1,Y1 (pixels of the generator's size).")
@click.option("--mask", type=click.Path(dir_okay=False), default=None, help="inpaint: mask image, white = observed.")
@click.option("--factor", type=int, default=None, help="superres: downsampling factor (default 4).")
@click.option("--sigma", type=float, default=None, help="denoise: noise std on the 0-255 scale (default 25).")
@click.option("--measurements", type=float, default=None, help="cs: fraction of measurements m/n (default 0.1).")
@click.option("--truth-seed", type=int, default=None, help="Truth = a face drawn from the generator with this seed.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Truth = this photo (centre-cropped, resized).")
@click.option("--observation", type=click.Path(dir_okay=False), default=None, help="Observed data only (PNG; .npy for cs), no truth.")
@click.option("--steps", type=int, default=600, help="Total optimisation steps (ILO: including its CSGM stage).")
@click.option("--restarts", type=int, default=4, help="CSGM random restarts (run as one batch).")
@click.option("--seed", type=int, default=0, help="Seed of the operator, the noise and the solver.")
@click.option("--device", default="auto", help="auto | cpu | cuda[:N].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def solve(generator_name, task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma,
          measurements, truth_seed, image, observation, steps, restarts, seed, device, out_dir, quiet):
    """Reconstruct one image and write reconstruction.png, observation.png, config.json, metrics.json."""
    from .pipeline import ProblemSpec, build_problem, run_method

    spec = ProblemSpec(task=task, observed=observed, box=_parse_box(box), mask=mask, factor=factor, sigma=sigma,
                       measurements=measurements)
    sources = [s for s in (truth_seed is not None, image is not None, observation is not None) if s]
    if len(sources) != 1:
        fail("give exactly one of --truth-seed N, --image PNG or --observation FILE")
    if steps < 1 or restarts < 1:
        fail(f"--steps and --restarts must be >= 1, got {steps} and {restarts}")
    from .solvers import METHODS

    if method not in METHODS:
        fail(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    try:
        spec.validate()
    except ValueError as e:
        fail(str(e))
    if method == "bm3d" and task != "denoise":
        fail("--method bm3d only solves --task denoise")
    if truth_seed is not None and truth_seed == seed and method != "bm3d":
        fail(f"--seed {seed} equals --truth-seed: the solver's first random start would be the true latent; "
             "choose another --seed")
    if method == "bm3d":
        from .solvers.bm3d import BM3DUnavailable, _import_bm3d

        try:
            _import_bm3d()
        except BM3DUnavailable as e:
            fail(str(e))
    loss = _parse_loss(loss_terms, weights, sna, lpips_backbone, method, task)
    dev = pick_device(device)
    out = prepare_out_dir(out_dir)
    G = _load_generator(generator_name, dev)
    try:
        prob = build_problem(spec, G, seed=seed, truth_seed=truth_seed, image=image, observation=observation)
    except (ValueError, OSError) as e:
        fail(str(e).splitlines()[0])
    try:
        result, metrics = run_method(prob, G, method, total_steps=steps, restarts=restarts, seed=seed,
                                     progress=not quiet, loss=loss, sna=sna, lpips_backbone=lpips_backbone)
    except Exception as e:  # missing optional weights (e.g. LPIPS backbone) surface here
        from .nets.weights import WeightsUnavailable

        if isinstance(e, (WeightsUnavailable, ValueError)):
            fail(str(e).splitlines()[0])
        raise
    config = {
        "command": "solve",
        "generator": generator_name,
        "method": method,
        "problem": prob.describe(),
        "solver": result.config,
        "seed": seed,
        "device": str(dev),
        "environment": environment(),
    }
    _write_result(out, prob, result, metrics, config)
    click.echo(_metrics_line(metrics))


def _parse_loss(terms: str | None, weights: str | None, sna: bool | None, lpips_backbone: str | None, method: str, task: str):
    """The LossConfig asked for on the command line, or None to keep the method's preset."""
    from dataclasses import replace

    from .losses.composite import LossConfig

    if terms is None and weights is None:
        if sna and task != "denoise":
            fail("--sna applies to --task denoise only")
        return None
    if method == "bm3d":
        fail("--loss, --weights and --sna do not apply to --method bm3d")
    names = [t.strip() for t in (terms or "mse").split(",") if t.strip()]
    allowed = ("mse", "perceptual", "lpips")
    for n in names:
        if n not in allowed:
            fail(f"unknown loss term {n!r}; choose from {', '.join(allowed)}")
    try:
        ws = [float(w) for w in weights.split(",")] if weights else [1.0] * len(names)
    except ValueError:
        fail(f"--weights must be comma-separated numbers, got {weights!r}")
    if len(ws) != len(names):
        fail(f"--weights has {len(ws)} values for {len(names)} loss terms")
    if any(w < 0 for w in ws):
        fail("--weights must be >= 0")
    kw = {"mse": 0.0, **dict(zip(names, ws))}
    if sna and task != "denoise":
        fail("--sna applies to --task denoise only")
    if task == "cs" and (kw.get("perceptual") or kw.get("lpips")):
        fail("perceptual losses need an image-space observation; --task cs has none")
    try:
        loss = LossConfig(**kw, sna=bool(sna if sna is not None else (task == "denoise" and method == "ilo")),
                          lpips_backbone=lpips_backbone)
    except ValueError as e:
        fail(str(e))
    if method == "pulse":
        loss = replace(loss, geocross=0.05)
    return loss


def _load_generator(name: str, device):
    from .generators import GeneratorUnavailable, load_generator

    try:
        return load_generator(name, device)
    except GeneratorUnavailable as e:
        fail(str(e))


def _write_result(out: Path, prob, result, metrics: dict, config: dict) -> None:
    from .images import grid, save_image

    w = AtomicWriter(out)
    try:
        save_image(result.image[:1], w.path("reconstruction.png"))
        save_image(prob.operator.observation_image(prob.y)[:1].clamp(-1, 1), w.path("observation.png"))
        cols, row = ["observation", result.method], [prob.operator.observation_image(prob.y)[0], result.image[0]]
        if prob.truth is not None:
            save_image(prob.truth[:1], w.path("truth.png"))
            cols, row = ["truth"] + cols, [prob.truth[0]] + row
        grid([row], col_labels=cols, cell=192).save(w.path("comparison.png"))
        if prob.task == "cs" or prob.y.ndim == 2:
            np.save(w.path("observation.npy"), prob.y.cpu().numpy())
        w.json("config.json", config)
        w.json("metrics.json", metrics)
        w.json("history.json", result.history)
        w.commit()
    except BaseException:
        w.abort()
        raise


def _metrics_line(m: dict) -> str:
    parts = [f"{m['task']} {m['method']}: measurement_mse={m['measurement_mse']:.3g}"]
    if "true_mse" in m:
        parts.append(f"true_mse={m['true_mse']:.4g} psnr={m['psnr']:.2f} dB")
    parts.append(f"steps={m['steps']} seconds={m['seconds']:.1f}")
    return " ".join(parts)


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/demo", help="Output directory.")
@click.option("--generator", "generator_name", default="digiface-dcgan", help="Registered generator name or checkpoint path.")
@click.option("--steps", type=int, default=200, help="Total optimisation steps per method.")
@click.option("--restarts", type=int, default=2, help="CSGM random restarts (run as one batch).")
@click.option("--faces", type=int, default=2, help="Held-out generated faces (seeds 900000, 900001, ...).")
@click.option("--device", default="auto", help="auto | cpu | cuda[:N].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out_dir, generator_name, steps, restarts, faces, device, quiet):
    """Solve the four inverse problems with CSGM and ILO; write one grid per task and a summary."""
    from .demo import run_demo

    if steps < 1 or faces < 0 or restarts < 1:
        fail(f"--steps and --restarts must be >= 1 and --faces >= 0, got {steps}, {restarts} and {faces}")
    dev = pick_device(device)
    out = prepare_out_dir(out_dir)
    G = _load_generator(generator_name, dev)
    run_demo(G, out, steps=steps, restarts=restarts, faces=faces, progress=not quiet, writer_cls=AtomicWriter,
             env=environment())


@cli.command("generators")
def generators_cmd():
    """List the registered generators."""
    from .generators import available

    for name, desc in available().items():
        click.echo(f"{name:24s} {desc}")


# ---------------------------------------------------------------------------------------------
# classifier-guided generation (section 4.3 of the paper)


def _parse_floats(name: str, text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{name} must be comma-separated numbers, got {text!r}")
    if not vals:
        fail(f"{name} needs at least one value, got {text!r}")
    return vals


def _prob_text(p: float) -> str:
    return f"{p:.0e}" if p < 0.001 else f"{p:.3f}"


@cli.command("generate")
@click.option("--class", "class_", required=True, help="ImageNet class name or index, e.g. 'goldfish', 'tree frog' or 1.")
@click.option("--radii", default="0,0.05,0.1,0.2",
              help="Relative l1 radii, comma-separated: fraction of each layer's l1 norm; 0 = the unchanged face.")
@click.option("--generator", "generator_name", default="digiface-dcgan", help="Registered generator name or checkpoint path.")
@click.option("--seed", type=int, default=0, help="First face seed (row 1).")
@click.option("--seeds", "n_seeds", type=int, default=1, help="Number of faces (rows): seeds SEED, SEED+1, ...")
@click.option("--classifier", type=click.Choice(["mobilenet", "efficientnet"]), default="mobilenet",
              help="Guiding classifier; the other one is held out and only scores the images.")
@click.option("--steps", type=int, default=20, help="Adam steps per radius, split over the layers.")
@click.option("--augmentations", type=int, default=4, help="Random views the guiding loss is averaged over, per step.")
@click.option("--layers", default=None, help="Generator layers, comma-separated, one ILO round each (default: all intermediate).")
@click.option("--device", default="auto", help="auto | cpu | cuda[:N].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(class_, radii, generator_name, seed, n_seeds, classifier, steps, augmentations, layers, device,
                 out_dir, quiet):
    """Classifier-guided generation: faces pushed towards an ImageNet class within l1 balls.

    Writes grid.png (one row per seed, one column per radius, each cell captioned with both
    classifiers' target probabilities, * = the guiding one), generation.json and config.json.
    """
    from .generate import GuidanceConfig, generate
    from .nets import UnknownClass, WeightsUnavailable, class_index

    try:
        target = class_index(class_)
    except UnknownClass as e:
        fail(str(e))
    radii_ = _parse_floats("--radii", radii)
    if any(not r >= 0 for r in radii_):
        fail(f"--radii must be >= 0, got {radii}")
    if n_seeds < 1 or steps < 1 or augmentations < 0:
        fail(f"--seeds and --steps must be >= 1 and --augmentations >= 0, got {n_seeds}, {steps}, {augmentations}")
    layers_ = None
    if layers is not None:
        try:
            layers_ = tuple(int(v) for v in layers.split(","))
        except ValueError:
            fail(f"--layers must be comma-separated integers, got {layers!r}")
    try:
        cfg = GuidanceConfig(steps=steps, layers=layers_, augmentations=augmentations)
    except ValueError as e:
        fail(str(e))
    dev = pick_device(device)
    out = prepare_out_dir(out_dir)
    G = _load_generator(generator_name, dev)
    try:
        for r in radii_:
            if r > 0:
                cfg.rounds(G, r)
    except ValueError as e:
        fail(str(e))
    seeds = [seed + i for i in range(n_seeds)]
    try:
        gen = generate(G, target, radii_, seeds, classifier, cfg, progress=not quiet)
    except WeightsUnavailable as e:
        fail(str(e).splitlines()[0])

    from .images import grid

    short = {"mobilenet_v2": "mob", "efficientnet_lite0": "eff"}
    captions = [
        [" | ".join(f"{short[n]}{'*' if n == gen.guide else ''} {_prob_text(float(p[i, j]))}"
                   for n, p in gen.probabilities.items()) for j in range(len(gen.radii))]
        for i in range(len(seeds))
    ]
    config = {
        "command": "generate",
        "generator": generator_name,
        "class": {"index": gen.target, "name": gen.target_name, "given": class_},
        "classifier": gen.guide,
        "held_out": gen.held_out,
        "radii": list(gen.radii),
        "radius_kind": "relative l1 (fraction of each layer's l1 norm, per image and round)",
        "seeds": seeds,
        "solver": gen.config,
        "device": str(dev),
        "environment": environment(),
    }
    w = AtomicWriter(out)
    try:
        rows = [[gen.images[i, j] for j in range(len(gen.radii))] for i in range(len(seeds))]
        grid(rows, col_labels=[f"r = {r:g}" for r in gen.radii], row_labels=[f"seed {s}" for s in seeds],
             cell=144, captions=captions).save(w.path("grid.png"))
        w.json("generation.json", gen.to_dict())
        w.json("config.json", config)
        w.commit()
    except BaseException:
        w.abort()
        raise
    means = gen.to_dict()["mean_over_seeds"]
    held = f"p_{gen.held_out}"
    click.echo(f"{gen.target_name} ({gen.target}), guided by {gen.guide}; held-out {gen.held_out} p: "
               + ", ".join(f"r={m['radius']:g}: {m[held]:.3g}" for m in means))


def main(argv: list[str] | None = None) -> None:
    """Entry point: click errors become one line and exit code 2."""
    try:
        rv = cli.main(args=argv, prog_name="ilo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ilo: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        msg = e.format_message().splitlines()[0] if e.format_message() else type(e).__name__
        click.echo(f"ilo: error: {msg}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


from .restore_cli import restore  # noqa: E402

cli.add_command(restore)

# ``python -m ilo`` runs main() (src/ilo/__main__.py). The bench group imports this module; whichever
# of the two is imported first, the group ends up registered (here, or at the end of bench/cli.py).
try:
    from .bench.cli import bench as _bench  # noqa: E402
except ImportError as _e:  # ilo.bench.cli is being imported first: it registers itself when done
    if "partially initialized" not in str(_e):
        raise
    _bench = None
if _bench is not None:
    cli.add_command(_bench)
