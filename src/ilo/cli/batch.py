"""``ilo batch``: restore many images as one resumable run (in this process or on Ray).

One job (the task options, the method, the budget) on a set of images: a folder of photos
(``--images``, sorted by name) or generated faces (``--truth-seeds A-B``). Image ``j`` of the
set has the seed ``--seed + j`` (its mask, noise and solver starts), so its numbers are those of
``ilo solve`` on it with that seed. The run's folder is an :mod:`ilo.runs` store: ``run.json``,
``results.jsonl``, ``files/``, ``summary.csv``, ``index.html``; rerunning the command resumes
it (or extends it with more images); other task options, method or budget exit with code 2.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from .common import (Seed, device_option, fail, first_line, framing_option, generator_option, pick_device, prepare_out,
                     quiet_option, threads_option)
from .solve import check_screen, check_task, loss_weights, task_options

#: files read as photos from ``--images``
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: extra peak memory of one more image in a batch, per restart (ILO on the 64 px DCGAN, CPU; generous)
BYTES_PER_IMAGE_RESTART = 48 * 2**20


def _seed_range(text: str) -> list[int]:
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not m or int(m.group(1)) > int(m.group(2)):
        fail(f"--truth-seeds must be a range A-B of whole numbers with A <= B, got {text!r}")
    return list(range(int(m.group(1)), int(m.group(2)) + 1))


def _image_items(folder: str, seed: int):
    from ..runs.pipeline_job import image_item

    p = Path(folder)
    if not p.is_dir():
        fail(f"--images folder not found: {folder}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        fail(f"--images folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    from ..images import ImageError, read_image

    for f in files:  # every image readable before the run's folder is made: nothing half-written
        try:
            read_image(f)
        except ImageError as e:
            fail(f"--images: {first_line(e)}")
    ids = [re.sub(r"[^A-Za-z0-9_.-]", "_", f.name).lstrip(".-_") or f"image{j}" for j, f in enumerate(files)]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        fail(f"--images: two files map to the same image id {dup!r}; rename one")
    return [image_item(i[:128], f, seed + j) for j, (i, f) in enumerate(zip(ids, files))]


def ray_option(f):
    return click.option("--ray", "ray_address", type=str, default=None,
                        help="Run on Ray: 'auto' (join or start one on this machine) or HOST:PORT of a cluster.")(f)


@click.command()
@generator_option
@task_options
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Truths = the photos of this folder (sorted by name; image j gets seed SEED + j).")
@click.option("--truth-seeds", type=str, default=None, help="Truths = faces drawn from the generator with seeds A-B.")
@click.option("--seed", type=Seed(), default=0, help="Base seed: image j of the set gets mask/noise/solver seed SEED + j.")
@framing_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Run folder (rerun the same command to resume or extend it).")
@ray_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images solved together (default: from the device's memory, at most 64).")
@device_option
@threads_option
@quiet_option
def batch(generator_name, task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma,
          measurements, steps, restarts, screen, images, truth_seeds, seed, framing, out_dir, ray_address, batch_size, device,
          quiet):
    """Restore many images as one resumable run; writes results.jsonl, summary.csv and index.html."""
    from ..generators import GeneratorUnavailable
    from ..io import environment
    from ..runs import Job, LocalExecutor, RayExecutor, StoreBusy, run_jobs
    from ..runs.pipeline_job import cached_generator, solve_batch, truth_item
    from .common import runtime_record

    if (images is None) == (truth_seeds is None):
        fail("give exactly one of --images DIR or --truth-seeds A-B")
    spec, _ = check_task(task, method, loss_terms, weights, sna, lpips_backbone, observed, box, mask, factor, sigma,
                         measurements)
    check_screen(screen, method)
    items = (_image_items(images, seed) if images is not None
             else [truth_item(t, seed + j) for j, t in enumerate(_seed_range(truth_seeds))])
    problem = {k: v for k, v in {"task": spec.task, **spec.options()}.items() if v is not None}
    if problem.get("mask") is not None:
        problem["mask"] = str(Path(problem["mask"]).resolve())
    config = {"generator": generator_name, "steps": steps, "restarts": restarts, "seed": seed,
              "loss": loss_weights(loss_terms, weights), "sna": sna, "lpips_backbone": lpips_backbone}
    if framing != "auto":  # absent when auto: folders of earlier runs resume with the same settings
        config["framing"] = framing
    if screen is not None:  # likewise
        config["screen"] = screen
    job = Job(problem, method, config, items, label=f"{method} {task}")
    settings = {"command": "batch", **job.spec()}  # other task options or budget: another folder
    dev = pick_device(device)
    try:  # a name or file that does not load is refused before the folder is made; the local run reuses it
        cached_generator(generator_name, str(dev))
    except GeneratorUnavailable as e:
        fail(first_line(e))
    try:
        executor = RayExecutor(ray_address, cpus_per_task=threads_per_task()) if ray_address else LocalExecutor(str(dev))
        with executor:  # a Ray address that does not answer is refused before the folder is made
            out = prepare_out(out_dir)
            report = run_jobs([job], solve_batch, out, settings=settings, executor=executor, batch_size=batch_size,
                              per_image_bytes=BYTES_PER_IMAGE_RESTART * restarts, progress=not quiet)
    except (StoreBusy, ImportError) as e:
        fail(first_line(e))
    _write_config(out, {"command": "batch", "settings": settings, "device": str(dev), "ray": ray_address,
                        "batch_size": report.batch_size, "runtime": runtime_record(), "environment": environment()})
    click.echo(f"solved {report.solved} images, skipped {report.skipped} already done, batch size {report.batch_size} "
               f"({report.seconds:.1f} s, {report.images_per_second:.3g} images/s); wrote {out / 'index.html'}")


def threads_per_task() -> int:
    """CPUs (threads) per Ray task: ``--threads`` when given, else 1."""
    from .. import runtime

    rt = runtime.current() or runtime.configure()
    return rt.threads if rt.source == "--threads" else 1


def _write_config(out: Path, config: dict) -> None:
    """``config.json``: how the last invocation ran (the store's ``run.json`` holds what results depend on)."""
    from ..io import OutputFolder

    with OutputFolder(out) as w:
        w.json("config.json", config)
