"""``ilo demo``: the four inverse problems, the classical baselines, CSGM and ILO; one grid per task and a summary."""

from __future__ import annotations

import click

from .common import (
    device_option,
    generator_option,
    load_generator,
    new_out,
    pick_device,
    runtime_record,
    threads_option,
)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/demo", help="Output folder.")
@generator_option
@click.option("--steps", type=click.IntRange(min=1), default=200, help="Total optimisation steps per method.")
@click.option("--restarts", type=click.IntRange(min=1), default=2, help="CSGM random restarts (run as one batch).")
@click.option("--faces", type=click.IntRange(min=0), default=2, help="Held-out generated faces (seeds 900000, 900001, ...).")
@device_option
@threads_option
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes that solve the tasks side by side (default: one per usable core on the CPU, at most "
                   "--threads when given; one on a GPU). Each gets its share of the threads, at least one.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out_dir, generator_name, steps, restarts, faces, device, jobs, quiet):
    """Solve the four inverse problems with the classical methods, CSGM and ILO; write one grid per task and a summary."""
    from ..demo import run_demo
    from ..io import OutputFolder, environment
    from ..operators import TASKS
    from ..workers import default_jobs

    dev = pick_device(device)
    G = load_generator(generator_name, dev)
    with new_out(out_dir) as out:
        run_demo(G, out, steps=steps, restarts=restarts, faces=faces, progress=not quiet, writer_cls=OutputFolder,
                 env={**environment(), "runtime": runtime_record()}, jobs=jobs or default_jobs(dev, len(TASKS)))
