"""The machinery shared by ``ilo bench curves|sna|speed``: evaluation sets, jobs on the run engine.

A benchmark is a run of the engine (:mod:`ilo.runs`): one :class:`~ilo.runs.Job` per (set,
method, level), whose items are the set's images. Batches of a job's images are solved
together (in this process or on Ray) and every image's record is stored in ``results.jsonl``
of the output folder as soon as its batch is done; a rerun with the same settings skips every
(job, image) already stored, so a long run can be stopped and resumed, or extended with more
images, levels or methods. A record's ``info["rows"]`` holds the image's measurement rows (the
:data:`COLUMNS`), its ``files`` the example images (only for the first images of a set).

Evaluation sets (reported separately, never used for tuning):

- ``generated``: faces drawn from the generator, seeds ``600_000 + i`` (tests use seeds below
  1000, tuning 10_000-10_999, the older benchmarks 500_000+ and the demo 900_000+);
- ``lfw``: the first faces of ``skimage.data.lfw_subset()`` (real, grayscale 25x25, resized to
  the generator's size, the same gray in every channel); faces 64-99 are reserved for tuning;
- ``photos``: the two real photographs of :func:`ilo.images.photo`;
- ``images``: the user's own photos (``--images DIR``), centre-cropped and resized.

An item's ``data`` says how a worker rebuilds its truth (``{"truth_seed": t}``, ``{"lfw": i}``,
``{"photo": name}`` or ``{"image": path, "sha256": hex}``), its image seed ``"seed"`` and
whether it is an ``"example"``. Randomness is per image, so a result never depends on the batch
it ran in: image ``j`` of a set (0-based) has the seed ``seed + j``, from which its solver
starts, its observation noise and (for inpainting) its own random mask are drawn, each from its
own named stream (:mod:`ilo.rng`; masks of one image at different levels are nested); an
operator without per-image parts (the compressed-sensing matrix) is one per level, drawn from
``seed``. Every batch goes through the pipeline's one path: :func:`ilo.pipeline.build_problem`,
:func:`~ilo.pipeline.run_method` and :func:`~ilo.pipeline.image_scores`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import ImageError, fit_to_size, load_image, photo, pil_to_tensor
from ..pipeline import Problem, ProblemSpec, build_problem, truth_from_seeds
from ..runs import Item, Job, LocalExecutor, RayExecutor, RunReport, png_bytes, read_run, run_jobs
from ..runs.pipeline_job import cached_generator, image_item, stack_problems

#: first seed of the held-out generated faces
EVAL_SEED0 = 600_000
#: generated seeds the presets were tuned on; an evaluation set may not use them
TUNING_SEEDS = (10_000, 10_999)
#: LFW faces 0 .. LFW_EVAL_LIMIT - 1 may be evaluated on; 64-99 are the tuning faces
LFW_EVAL_LIMIT = 64
#: images per set by default
DEFAULT_N = 32
PHOTOS = ("astronaut", "grace_hopper")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: the columns of every measurement, in the order of the CSV
COLUMNS = ("task", "set", "image", "method", "level", "seed", "true_mse", "psnr", "ssim", "perceptual",
           "measurement_mse", "steps", "seconds", "batch", "point", "round", "layer")
#: the metrics of a row (and of a record's ``metrics``)
METRICS = ("true_mse", "psnr", "ssim", "perceptual", "measurement_mse")
#: bump when the meaning of stored records changes (a store of another version is then refused);
#: 3: named random streams (:mod:`ilo.rng`) draw truths, masks, noise and starts;
#: 4: records of the run engine, one per (set, method, level) job and image
STORE_VERSION = 4


# ---------------------------------------------------------------------------------------------
# evaluation sets


@dataclass(frozen=True)
class EvalSet:
    """The images of one evaluation set, as engine items (ids unique in the set)."""

    name: str
    items: tuple[Item, ...]
    description: str

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)

    def example_ids(self) -> tuple[str, ...]:
        """The images whose pictures are kept for the example grids."""
        return tuple(it.id for it in self.items if it.data.get("example"))

    def __len__(self) -> int:
        return len(self.items)


def _items(ids: Iterable[str], data: Iterable[dict], seed: int, examples: int) -> tuple[Item, ...]:
    """Items ``ids`` with ``data``; image ``j`` gets the seed ``seed + j`` and the first ``examples`` are examples."""
    return tuple(Item(i, {**d, "seed": seed + j, **({"example": True} if j < examples else {})})
                 for j, (i, d) in enumerate(zip(ids, data)))


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` -> the generator's channel count (gray = mean of the channels)."""
    return x.mean(1, keepdim=True) if channels == 1 else x


def parse_seed_range(text: str, tuning: bool = False) -> list[int]:
    """``"A-B"`` -> ``[A, ..., B]`` (inclusive); ``ValueError`` on a malformed or reserved range.
    Held-out seeds by default (the range must not meet :data:`TUNING_SEEDS`); ``tuning=True``:
    the range must lie inside them (faces to decide a setting on).

    >>> parse_seed_range("600000-600002"), parse_seed_range("10000-10001", tuning=True)
    ([600000, 600001, 600002], [10000, 10001])
    """
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"truth seeds must be a range A-B of non-negative integers, got {text!r}")
    a, b = int(m.group(1)), int(m.group(2))
    if a > b:
        raise ValueError(f"truth seed range {text!r} is empty (A > B)")
    lo, hi = TUNING_SEEDS
    if tuning and not lo <= a <= b <= hi:
        raise ValueError(f"tuning seeds must be a range A-B within {lo}-{hi}, got {text!r}")
    if not tuning and a <= hi and b >= lo:
        raise ValueError(f"truth seeds {a}-{b} overlap the tuning seeds {lo}-{hi}; evaluate on held-out seeds (e.g. {EVAL_SEED0}+)")
    return list(range(a, b + 1))


def generated_set(seeds: list[int], *, seed: int = 0, examples: int = 2) -> EvalSet:
    """Faces drawn from the generator, one per truth seed (item ``seed<t>``).

    >>> s = generated_set([600000, 600001], seed=5, examples=1)
    >>> s.ids, s.items[1].data
    (('seed600000', 'seed600001'), {'truth_seed': 600001, 'seed': 6})
    """
    return EvalSet("generated", _items((f"seed{t}" for t in seeds), ({"truth_seed": t} for t in seeds), seed, examples),
                   f"held-out generated faces, seeds {seeds[0]}-{seeds[-1]}")


def lfw_set(n: int, *, seed: int = 0, examples: int = 2) -> EvalSet:
    """The first ``n`` real faces of ``skimage.data.lfw_subset()`` (grayscale 25x25, resized when solved)."""
    if not 0 < n <= LFW_EVAL_LIMIT:
        raise ValueError(f"the LFW set has {LFW_EVAL_LIMIT} evaluation faces (64-99 are for tuning); got n = {n}")
    _skimage_data()  # refuse before any work when the faces cannot be read
    return EvalSet("lfw", _items((f"lfw{i:03d}" for i in range(n)), ({"lfw": i} for i in range(n)), seed, examples),
                   f"real LFW faces 0-{n - 1} of skimage.data.lfw_subset() (grayscale 25x25, resized)")


def _skimage_data():
    try:
        from skimage import data
    except ImportError:
        raise ImageError("the LFW faces need scikit-image: pip install 'ilo-inverse[data]'") from None
    return data


def lfw_faces(size: int, channels: int, indices: list[int]) -> torch.Tensor:
    """Faces ``indices`` of ``skimage.data.lfw_subset()`` as ``[len(indices), channels, size, size]`` in [-1, 1]."""
    faces = _skimage_data().lfw_subset()[indices]  # [n, 25, 25] float in [0, 1]; the first 100 entries are faces
    ims = [pil_to_tensor(fit_to_size(Image.fromarray(np.round(f * 255).astype(np.uint8), "L"), size)) for f in faces]
    return _channels(torch.cat(ims), channels)


def photo_set(*, seed: int = 0, examples: int = 2) -> EvalSet:
    """The two real photographs (astronaut, Grace Hopper), face-cropped and resized when solved."""
    return EvalSet("photos", _items(PHOTOS, ({"photo": p} for p in PHOTOS), seed, examples),
                   "real photographs: " + ", ".join(PHOTOS))


def folder_set(path: str | os.PathLike, size: int, n: int | None, *, seed: int = 0, examples: int = 2) -> EvalSet:
    """The image files of a folder (sorted by name, the first ``n``); each is read once here, so
    that an unreadable file is refused before any work, and identified by its sha256."""
    p = Path(path)
    if not p.is_dir():
        raise ImageError(f"image folder not found: {p}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"image folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    files = files[:n] if n else files
    for f in files:
        load_image(f, size)  # raises ImageError naming a bad file
    ids = [re.sub(r"[^A-Za-z0-9._-]", "_", f.name).lstrip(".-")[:128] or f"image{j}" for j, f in enumerate(files)]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ImageError(f"two files of {p} map to the same image id {dup!r}; rename one")
    items = tuple(image_item(i, f, seed + j) for j, (i, f) in enumerate(zip(ids, files)))
    items = tuple(Item(it.id, {**it.data, "example": True}) if j < examples else it for j, it in enumerate(items))
    return EvalSet("images", items, f"{len(files)} photos from {p}")


def evaluation_sets(size: int, *, images: str | None = None, truth_seeds: str | None = None, n: int | None = None,
                    seed: int = 0, examples: int = 2) -> list[EvalSet]:
    """The sets to evaluate on (images ``size`` pixels wide): the user's (``images`` and/or
    ``truth_seeds``) or, without either, the defaults: ``n`` (32) generated faces, ``n`` LFW
    faces and the two photos. The first ``examples`` images of each set keep their pictures."""
    if n is not None and n < 1:
        raise ValueError(f"images per set must be >= 1, got {n}")
    kw = {"seed": seed, "examples": examples}
    sets = []
    if truth_seeds is not None:
        seeds = parse_seed_range(truth_seeds)
        sets.append(generated_set(seeds[:n] if n else seeds, **kw))
    if images is not None:
        sets.append(folder_set(images, size, n, **kw))
    if not sets:
        k = n or DEFAULT_N
        sets = [generated_set(list(range(EVAL_SEED0, EVAL_SEED0 + k)), **kw), lfw_set(k, **kw), photo_set(**kw)]
    return sets


# ---------------------------------------------------------------------------------------------
# jobs and their problems


def bench_job(task: str, level: float, method: str, eval_set: EvalSet, *, generator: str, steps: int, restarts: int,
              seed: int) -> Job:
    """The engine job of one (set, method, level): ``problem {task, level}``, ``method`` (a
    method, or a label such as ``csgm+sna`` that the command's job function knows) and
    ``config {set, generator, steps, restarts, seed}``; the set's images are its items."""
    return Job({"task": task, "level": float(level)}, method,
               {"set": eval_set.name, "generator": generator, "steps": int(steps), "restarts": int(restarts), "seed": int(seed)},
               eval_set.items, label=f"{eval_set.name} {method} {task} {level:g}")


def item_truth(item: Item, G) -> torch.Tensor:
    """The ground truth ``[1, C, H, W]`` of an item of an evaluation set (see the module docstring)."""
    C, H, _ = G.image_shape
    d = item.data
    if "truth_seed" in d:
        return truth_from_seeds(G, [int(d["truth_seed"])])
    if "lfw" in d:
        return lfw_faces(H, C, [int(d["lfw"])])
    if "photo" in d:
        return _channels(photo(d["photo"], H), C)
    if "image" in d:
        from ..runs.pipeline_job import file_sha256

        if file_sha256(d["image"]) != d["sha256"]:
            raise ValueError(f"{d['image']} changed since the run started (its sha256 differs); use another output folder")
        return _channels(load_image(d["image"], H), C)
    raise ValueError(f"item {item.id}: data needs 'truth_seed', 'lfw', 'photo' or 'image', got {sorted(d)}")


@dataclass
class BatchProblem:
    """A batch of a bench job, ready to solve: the generator, the stacked problem ``[B, ...]``,
    and per image its id, seed and whether it is an example."""

    job: Job
    G: torch.nn.Module
    problem: Problem
    ids: list[str]
    seeds: list[int]
    examples: list[bool]
    cfg: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.job.problem["task"]

    @property
    def level(self) -> float:
        return float(self.job.problem["level"])

    @property
    def set(self) -> str:
        return self.cfg["set"]


def cell_problem(task: str, level: float, G, truth: torch.Tensor, *, seed: int, start: int) -> Problem:
    """The problem for ground truths ``[B, C, H, W]`` that are images ``start, start + 1, ...`` of
    their set (:func:`ilo.pipeline.build_problem` at the level; see the module docstring)."""
    return build_problem(ProblemSpec.at_level(task, level), G, seed=seed, start=start, truth=truth)


def batch_problem(job: Job, items: list[Item], device: str) -> BatchProblem:
    """The problem of a batch of a bench job's images (each image's own problem, stacked)."""
    cfg = job.config
    G = cached_generator(cfg["generator"], str(device))
    task, level, base = job.problem["task"], float(job.problem["level"]), int(cfg["seed"])
    problems = [cell_problem(task, level, G, item_truth(it, G), seed=base, start=int(it.data["seed"]) - base) for it in items]
    return BatchProblem(job, G, stack_problems(problems), [it.id for it in items], [int(it.data["seed"]) for it in items],
                        [bool(it.data.get("example")) for it in items], cfg)


def image_rows(b: BatchProblem, i: int, scores: dict[str, list[float]], *, method: str, steps: int, seconds: float,
               extra: dict | None = None) -> list[dict]:
    """The measurement row (the :data:`COLUMNS`) of image ``i`` of a solved batch, from
    :func:`ilo.pipeline.image_scores`; ``seconds`` is the whole batch's solver time."""
    row = {"task": b.task, "set": b.set, "image": b.ids[i], "method": method, "level": b.level, "seed": b.seeds[i],
           "steps": int(steps), "seconds": round(float(seconds), 3), "batch": len(b.ids)}
    for k in METRICS:
        row[k] = float(scores[k][i]) if k in scores else None
    row.update(extra or {})
    return [row]


def results(b: BatchProblem, rows: list[list[dict]], pictures: dict[str, torch.Tensor], info: dict) -> list[dict]:
    """The job function's results: per image its rows (``info["rows"]``), the metrics of its
    last row and, for examples, ``pictures[name][i]`` as ``<name>.png``. ``info`` is the
    batch's (e.g. the solver config): stored once, with the batch's first image."""
    out = []
    for i, image_id in enumerate(b.ids):
        files = {f"{name}.png": png_bytes(x[i]) for name, x in pictures.items()} if b.examples[i] else {}
        metrics = {k: rows[i][-1][k] for k in METRICS if rows[i][-1].get(k) is not None}
        out.append({"item": image_id, "metrics": metrics, "files": files,
                    "info": {"rows": rows[i], **(info if i == 0 else {})}})
    return out


# ---------------------------------------------------------------------------------------------
# what every command shares


@dataclass
class Bench:
    """A benchmark run into ``out``: the generator (name and image ``size``), the evaluation sets,
    the equal budget of every method (``steps`` in total and ``restarts``), the base ``seed``,
    the images per ``batch`` and the executor (:class:`~ilo.runs.LocalExecutor` by default, or an
    entered :class:`~ilo.runs.RayExecutor`)."""

    out: Path
    generator: str
    size: int
    sets: list[EvalSet]
    steps: int
    restarts: int
    seed: int = 0
    batch: int = 8
    progress: bool = True
    executor: LocalExecutor | RayExecutor | None = None

    def settings(self, command: str, task: str | None) -> dict:
        """What every record of the run shares (a store with other settings is refused)."""
        return {"store_version": STORE_VERSION, "command": command, "task": task, "generator": self.generator,
                "steps": self.steps, "restarts": self.restarts, "seed": self.seed}

    def jobs(self, task: str, levels: Iterable[float], methods: Iterable[str]) -> list[Job]:
        """One job per (set, level, method), in that order."""
        return [bench_job(task, lv, m, s, generator=self.generator, steps=self.steps, restarts=self.restarts, seed=self.seed)
                for s in self.sets for lv in levels for m in methods]

    def run(self, jobs: list[Job], fn, command: str, task: str | None) -> RunReport:
        """Solve every (job, image) not yet stored in :attr:`out`, in batches of :attr:`batch`."""
        return run_jobs(jobs, fn, self.out, settings=self.settings(command, task), executor=self.executor or LocalExecutor(),
                        batch_size=self.batch, progress=self.progress, summary=False)

    def records(self, jobs: list[Job]) -> list[tuple[Job, dict]]:
        """The stored records of ``jobs``' items, with their job."""
        by = {j.digest: j for j in jobs}
        want = {(j.digest, it.id) for j in jobs for it in j.items}
        _, recs = read_run(self.out)
        return [(by[r["job"]], r) for r in recs if (r["job"], r["item"]) in want]

    def rows(self, jobs: list[Job]) -> list[dict]:
        """Every measurement row of ``jobs``, sorted by set, method, level, point, image."""
        rows = [r for _, rec in self.records(jobs) for r in rec.get("info", {}).get("rows", [])]
        return sorted(rows, key=lambda r: (r["set"], r["method"], r["level"], r.get("point") or 0, r["image"]))

    def pictures(self, jobs: list[Job]) -> dict[tuple[str, str, str], Path]:
        """The stored example pictures: ``(set, image, name) -> path`` (``name``: the file's stem)."""
        out = {}
        for job, rec in self.records(jobs):
            for name, rel in rec.get("files", {}).items():
                out[(job.config["set"], rec["item"], Path(name).stem)] = self.out / rel
        return out

    def example_ids(self, set_name: str) -> tuple[str, ...]:
        return next(s for s in self.sets if s.name == set_name).example_ids()
