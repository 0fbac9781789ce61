"""``ilo generate``: classifier-guided generation (section 4.3 of the paper)."""

from __future__ import annotations

import click

from .common import (
    SEED_MAX,
    Seed,
    device_option,
    fail,
    first_line,
    generator_option,
    load_generator,
    new_out,
    parse_floats,
    pick_device,
    quiet_option,
    runtime_record,
    threads_option,
)

SHORT = {"mobilenet_v2": "mob", "efficientnet_lite0": "eff"}


def _prob_text(p: float) -> str:
    return f"{p:.0e}" if p < 0.001 else f"{p:.3f}"


@click.command("generate")
@click.option("--class", "class_", required=True, help="ImageNet class name or index, e.g. 'goldfish', 'tree frog' or 1.")
@click.option("--radii", default="0,0.05,0.1,0.2",
              help="Relative l1 radii, comma-separated: fraction of each layer's l1 norm; 0 = the unchanged face.")
@generator_option
@click.option("--seed", type=Seed(), default=0, help="First face seed (row 1).")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=1,
              help="Number of faces (rows): seeds SEED, SEED+1, ...")
@click.option("--classifier", type=click.Choice(["mobilenet", "efficientnet"]), default="mobilenet",
              help="Guiding classifier; the other one is held out and only scores the images.")
@click.option("--steps", type=click.IntRange(min=1), default=20, help="Adam steps per radius, split over the layers.")
@click.option("--augmentations", type=click.IntRange(min=0), default=4, help="Random views the guiding loss is averaged over, per step.")
@click.option("--layers", default=None, help="Generator layers, comma-separated, one ILO round each (default: all intermediate).")
@device_option
@threads_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@quiet_option
def generate_cmd(class_, radii, generator_name, seed, n_seeds, classifier, steps, augmentations, layers, device,
                 out_dir, quiet):
    """Classifier-guided generation: faces pushed towards an ImageNet class within l1 balls.

    Writes grid.png (one row per seed, one column per radius, each cell captioned with both
    classifiers' target probabilities, * = the guiding one), generation.json and config.json.
    """
    from ..generate import GuidanceConfig, generate
    from ..io import OutputFolder, environment
    from ..nets import UnknownClass, WeightsUnavailable, class_index

    try:
        target = class_index(class_)
    except UnknownClass as e:
        fail(first_line(e))
    radii_ = parse_floats("--radii", radii, minimum=0.0)
    if seed + n_seeds - 1 > SEED_MAX:
        fail(f"--seed {seed} with --seeds {n_seeds} passes the largest seed 2**63 - 1")
    layers_ = None
    if layers is not None:
        try:
            layers_ = tuple(int(v) for v in layers.split(","))
        except ValueError:
            fail(f"--layers must be comma-separated integers, got {layers!r}")
    cfg = GuidanceConfig(steps=steps, layers=layers_, augmentations=augmentations)
    dev = pick_device(device)
    G = load_generator(generator_name, dev)
    for r in radii_:
        if r > 0:
            cfg.rounds(G, r)  # refuses layers the generator does not have (library ValueError)
    with new_out(out_dir) as out:
        seeds = [seed + i for i in range(n_seeds)]
        try:
            gen = generate(G, target, radii_, seeds, classifier, cfg, progress=not quiet)
        except WeightsUnavailable as e:
            fail(first_line(e))

        from ..images import grid

        captions = [
            [" | ".join(f"{SHORT[n]}{'*' if n == gen.guide else ''} {_prob_text(float(p[i, j]))}"
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
            "runtime": runtime_record(),
            "environment": environment(),
        }
        with OutputFolder(out) as writer:
            rows = [[gen.images[i, j] for j in range(len(gen.radii))] for i in range(len(seeds))]
            grid(rows, col_labels=[f"r = {r:g}" for r in gen.radii], row_labels=[f"seed {s}" for s in seeds],
                 cell=144, captions=captions).save(writer.path("grid.png"))
            writer.json("generation.json", gen.to_dict())
            writer.json("config.json", config)
    means = gen.to_dict()["mean_over_seeds"]
    held = f"p_{gen.held_out}"
    click.echo(f"{gen.target_name} ({gen.target}), guided by {gen.guide}; held-out {gen.held_out} p: "
               + ", ".join(f"r={m['radius']:g}: {m[held]:.3g}" for m in means))
