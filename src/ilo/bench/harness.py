"""The machinery shared by ``ilo bench curves|sna|speed``: evaluation sets, cells, a resumable store.

A benchmark is a list of :class:`Cell` s, one per (image set, method, level, batch of images).
A cell is solved in one call (its images as one batch, the restarts inside the solver) and
stored as one JSON line in ``results.jsonl`` in the output directory (:class:`ResultStore`);
a rerun with the same settings skips every cell already there, so a long run can be stopped
and resumed, or extended with more images, levels or methods.

Evaluation sets (reported separately, never used for tuning):

- ``generated``: faces drawn from the generator, seeds ``600_000 + i`` (tests use seeds below
  1000, tuning 10_000-10_999, the older benchmarks 500_000+ and the demo 900_000+);
- ``lfw``: the first faces of ``skimage.data.lfw_subset()`` (real, grayscale 25x25, resized to
  the generator's size, the same gray in every channel); faces 64-99 are reserved for tuning;
- ``photos``: the two real photographs of :func:`ilo.images.photo`;
- ``images``: the user's own photos (``--images DIR``), centre-cropped and resized.

Randomness is per image, so a result never depends on the batch it ran in: image ``j`` of a
set (0-based) has the seed ``seed + j``, from which its solver starts, its observation noise
and (for inpainting) its own random mask are drawn, each from its own named stream
(:mod:`ilo.rng`; masks of one image at different levels are nested); an operator without
per-image parts (the compressed-sensing matrix) is one per level, drawn from ``seed``. Every
cell goes through the pipeline's one path: :func:`ilo.pipeline.build_problem`,
:func:`~ilo.pipeline.run_method` and :func:`~ilo.pipeline.image_scores`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..images import ImageError, fit_to_size, load_image, photo, pil_to_tensor, save_image
from ..pipeline import Problem, ProblemSpec, build_problem, truth_from_seeds

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
#: bump when the meaning of stored records changes (an old store is then refused);
#: 3: named random streams (:mod:`ilo.rng`) draw truths, masks, noise and starts
STORE_VERSION = 3


# ---------------------------------------------------------------------------------------------
# evaluation sets


@dataclass(frozen=True)
class EvalSet:
    """Ground-truth images of one evaluation set: ``images [N, C, H, W]`` in ``[-1, 1]`` (CPU)."""

    name: str
    images: torch.Tensor
    ids: tuple[str, ...]
    description: str

    def __len__(self) -> int:
        return len(self.ids)


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` -> the generator's channel count (gray = mean of the channels)."""
    return x.mean(1, keepdim=True) if channels == 1 else x


def parse_seed_range(text: str) -> list[int]:
    """``"A-B"`` -> ``[A, ..., B]`` (inclusive); ``ValueError`` on a malformed or reserved range.

    >>> parse_seed_range("600000-600002")
    [600000, 600001, 600002]
    """
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"truth seeds must be a range A-B of non-negative integers, got {text!r}")
    a, b = int(m.group(1)), int(m.group(2))
    if a > b:
        raise ValueError(f"truth seed range {text!r} is empty (A > B)")
    lo, hi = TUNING_SEEDS
    if a <= hi and b >= lo:
        raise ValueError(f"truth seeds {a}-{b} overlap the tuning seeds {lo}-{hi}; evaluate on held-out seeds (e.g. {EVAL_SEED0}+)")
    return list(range(a, b + 1))


def generated_set(G, seeds: list[int]) -> EvalSet:
    """Faces drawn from ``G``, one per seed (``[len(seeds), C, H, W]``)."""
    chunks = [truth_from_seeds(G, seeds[i:i + 16]).cpu() for i in range(0, len(seeds), 16)]
    return EvalSet("generated", torch.cat(chunks), tuple(f"seed{s}" for s in seeds),
                   f"held-out generated faces, seeds {seeds[0]}-{seeds[-1]}")


def lfw_set(size: int, channels: int, n: int) -> EvalSet:
    """The first ``n`` real faces of ``skimage.data.lfw_subset()`` (grayscale 25x25), Lanczos-resized
    to ``size``, the same gray in every channel."""
    if not 0 < n <= LFW_EVAL_LIMIT:
        raise ValueError(f"the LFW set has {LFW_EVAL_LIMIT} evaluation faces (64-99 are for tuning); got n = {n}")
    return EvalSet("lfw", lfw_faces(size, channels, list(range(n))), tuple(f"lfw{i:03d}" for i in range(n)),
                   f"real LFW faces 0-{n - 1} of skimage.data.lfw_subset() (grayscale 25x25, resized)")


def lfw_faces(size: int, channels: int, indices: list[int]) -> torch.Tensor:
    """Faces ``indices`` of ``skimage.data.lfw_subset()`` as ``[len(indices), channels, size, size]`` in [-1, 1]."""
    try:
        from skimage import data
    except ImportError:
        raise ImageError("the LFW faces need scikit-image: pip install 'ilo-inverse[data]'") from None
    faces = data.lfw_subset()[indices]  # [n, 25, 25] float in [0, 1]; the first 100 entries are faces
    ims = [pil_to_tensor(fit_to_size(Image.fromarray(np.round(f * 255).astype(np.uint8), "L"), size)) for f in faces]
    return _channels(torch.cat(ims), channels)


def photo_set(size: int, channels: int) -> EvalSet:
    """The two real photographs (astronaut, Grace Hopper), face-cropped and resized."""
    ims = torch.cat([photo(p, size) for p in PHOTOS])
    return EvalSet("photos", _channels(ims, channels), PHOTOS, "real photographs: " + ", ".join(PHOTOS))


def folder_set(path: str | os.PathLike, size: int, channels: int, n: int | None) -> EvalSet:
    """The image files of a folder (sorted by name, the first ``n``), centre-cropped and resized."""
    p = Path(path)
    if not p.is_dir():
        raise ImageError(f"image folder not found: {p}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"image folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    files = files[:n] if n else files
    ims = torch.cat([load_image(f, size) for f in files])  # raises ImageError naming a bad file
    ids = tuple(re.sub(r"[^A-Za-z0-9._-]", "_", f.name) for f in files)
    return EvalSet("images", _channels(ims, channels), ids, f"{len(files)} photos from {p}")


def evaluation_sets(G, *, images: str | None = None, truth_seeds: str | None = None, n: int | None = None) -> list[EvalSet]:
    """The sets to evaluate on: the user's (``images`` and/or ``truth_seeds``) or, without
    either, the defaults: ``n`` (32) generated faces, ``n`` LFW faces and the two photos."""
    C, H, _ = G.image_shape
    if n is not None and n < 1:
        raise ValueError(f"images per set must be >= 1, got {n}")
    sets = []
    if truth_seeds is not None:
        seeds = parse_seed_range(truth_seeds)
        sets.append(generated_set(G, seeds[:n] if n else seeds))
    if images is not None:
        sets.append(folder_set(images, H, C, n))
    if not sets:
        k = n or DEFAULT_N
        sets = [generated_set(G, list(range(EVAL_SEED0, EVAL_SEED0 + k))), lfw_set(H, C, k), photo_set(H, C)]
    return sets


# ---------------------------------------------------------------------------------------------
# cells and problems


@dataclass(frozen=True)
class Cell:
    """One unit of work: images ``start .. stop - 1`` of set ``set``, one method, one level.

    ``digest`` fingerprints the ground truths (their 8-bit pixels), so that a store never
    passes off results on other images (another seed range, an edited photo) as done."""

    set: str
    method: str
    level: float
    start: int
    stop: int
    digest: str = ""

    @property
    def key(self) -> str:
        return f"{self.set}/{self.method}/{self.level:g}/{self.start}-{self.stop}/{self.digest}"


def images_digest(x: torch.Tensor) -> str:
    """A short fingerprint of images in ``[-1, 1]`` (of their 8-bit values)."""
    a = np.round((x.detach().cpu().float().clamp(-1, 1).numpy() + 1) * 127.5).astype(np.uint8)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()[:8]


def make_cells(sets: list[EvalSet], methods: Iterable[str], levels: Iterable[float], batch: int) -> list[Cell]:
    """All cells, batch-major (the first batch of every set, level and method comes first, so
    that a partial run already has complete curves on fewer images)."""
    methods, levels = list(methods), list(levels)
    longest = max(len(s) for s in sets)
    cells = []
    for start in range(0, longest, batch):
        for s in sets:
            if start >= len(s):
                continue
            stop = min(start + batch, len(s))
            digest = images_digest(s.images[start:stop])
            for level in levels:
                for m in methods:
                    cells.append(Cell(s.name, m, float(level), start, stop, digest))
    return cells


def cell_problem(task: str, level: float, G, truth: torch.Tensor, *, seed: int, start: int) -> Problem:
    """The problem for a batch of ground truths that are images ``start, start + 1, ...`` of their
    set (:func:`ilo.pipeline.build_problem` at the level; see the module docstring)."""
    return build_problem(ProblemSpec.at_level(task, level), G, seed=seed, start=start, truth=truth)


def measurement_rows(metrics: dict[str, list[float]], cell: Cell, ids: tuple[str, ...], *, task: str, method: str,
                     seed: int, steps: int, seconds: float, extra: dict | None = None) -> list[dict]:
    """One row (the :data:`COLUMNS`) per image of a solved cell from :func:`ilo.pipeline.image_scores`."""
    rows = []
    for i, image_id in enumerate(ids):
        row = {"task": task, "set": cell.set, "image": image_id, "method": method, "level": cell.level,
               "seed": seed + cell.start + i, "steps": int(steps), "seconds": round(float(seconds), 3), "batch": len(ids)}
        for k in ("true_mse", "psnr", "ssim", "perceptual", "measurement_mse"):
            row[k] = float(metrics[k][i]) if k in metrics else None
        row.update(extra or {})
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# the resumable store


class StoreMismatch(ValueError):
    """The output directory holds results made with other settings."""


class ResultStore:
    """``results.jsonl`` (one JSON line per finished cell) and ``run.json`` (the settings).

    A cell's line is appended, flushed and synced only once its example images are written,
    so a killed run loses at most the cell in progress; a torn last line is ignored on reading.
    Results made with other settings (generator, steps, restarts, seed, task, batch, ...) are
    never mixed: opening such a store raises :class:`StoreMismatch`.
    """

    def __init__(self, out: Path, settings: dict):
        self.out = Path(out)
        self.path = self.out / "results.jsonl"
        self.settings = {"store_version": STORE_VERSION, **settings}
        run = self.out / "run.json"
        if run.is_file():
            try:
                old = json.loads(run.read_text()).get("settings", {})
            except (OSError, ValueError):
                old = {}
            diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            if diff and self.path.is_file() and self.path.stat().st_size > 0:
                k = diff[0]
                raise StoreMismatch(f"{self.out} holds results made with {k}={old.get(k)!r} (now {self.settings.get(k)!r}); "
                                    "use another output folder or the same settings")
        self._records = self._read()

    def _read(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        if not self.path.is_file():
            return out
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line torn by a killed run
                continue
            if isinstance(rec, dict) and "key" in rec:
                out[rec["key"]] = rec
        return out

    def write_run_json(self, extra: dict) -> None:
        tmp = self.out / f".run.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps({"settings": self.settings, **extra}, indent=2, default=str) + "\n")
        os.replace(tmp, self.out / "run.json")

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def records(self) -> list[dict]:
        return list(self._records.values())

    def add(self, record: dict) -> None:
        data = (json.dumps(record, default=_json_default) + "\n").encode()
        with open(self.path, "ab") as f:
            if f.tell() > 0:  # after a torn line, start on a fresh one
                with open(self.path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._records[record["key"]] = record

    # -- example images ---------------------------------------------------------------------
    def example_path(self, set_name: str, image_id: str, name: str) -> Path:
        return self.out / "examples" / set_name / image_id / f"{name}.png"

    def save_example(self, set_name: str, image_id: str, name: str, x: torch.Tensor) -> None:
        """Save ``x`` (``[C, H, W]`` in ``[-1, 1]``) atomically as an example image."""
        p = self.example_path(set_name, image_id, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}.png")
        save_image(x.detach().cpu()[None], tmp)
        os.replace(tmp, p)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


def run_cells(cells: list[Cell], store: ResultStore, solve_cell: Callable[[Cell], dict], *, progress: bool = True,
              desc: str = "cells") -> dict:
    """Solve every cell not yet in ``store`` (in order) and store its record as soon as it is done.

    ``solve_cell(cell)`` returns the record (with a ``rows`` list); the key is added here.
    Returns ``{"ran": n, "skipped": m, "seconds": s}``.
    """
    import time

    todo = [c for c in cells if c.key not in store]
    t0 = time.perf_counter()
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, disable=not progress, dynamic_ncols=True)
    for cell in todo:
        bar.set_postfix_str(cell.key, refresh=True)
        t = time.perf_counter()
        record = solve_cell(cell)
        record.update(key=cell.key, set=cell.set, method=cell.method, level=cell.level, start=cell.start,
                      stop=cell.stop, digest=cell.digest, cell_seconds=round(time.perf_counter() - t, 3))
        store.add(record)
        bar.update(1)
    bar.close()
    return {"ran": len(todo), "skipped": len(cells) - len(todo), "seconds": round(time.perf_counter() - t0, 1)}


def rows_of(records: list[dict]) -> list[dict]:
    """Every measurement row of the given records, sorted by set, method, level, image, point."""
    rows = [r for rec in records for r in rec.get("rows", [])]
    return sorted(rows, key=lambda r: (r["set"], r["method"], r["level"], r.get("point") or 0, r["image"]))


# ---------------------------------------------------------------------------------------------
# what every command shares


@dataclass
class Bench:
    """A benchmark run: the generator, the evaluation sets, the equal budget of every method
    (``steps`` in total and ``restarts``), the base ``seed``, the batch size and the store.
    The first ``examples`` images of every set keep their images for the example grids."""

    G: torch.nn.Module
    sets: list[EvalSet]
    store: ResultStore
    steps: int
    restarts: int
    seed: int = 0
    batch: int = 8
    examples: int = 2
    progress: bool = True
    #: match stored cells without their pixel digest (``--report-only`` of a run solved on another
    #: device, whose generated ground truths differ from this device's in the last bits)
    loose_keys: bool = False

    def records_for(self, cells: list[Cell]) -> list[dict]:
        """The stored records of ``cells``: by exact key, or with :attr:`loose_keys` by
        ``set/method/level/start-stop`` (the last record stored wins where several match)."""
        exact = {c.key for c in cells}
        recs = self.store.records()
        if not self.loose_keys:
            return [r for r in recs if r["key"] in exact]
        stem = lambda k: k.rsplit("/", 1)[0]
        want = {stem(k) for k in exact}
        found: dict[str, dict] = {}
        for r in recs:  # an exact match, once found, is kept
            k = stem(r["key"])
            if k in want and found.get(k, {}).get("key") not in exact:
                found[k] = r
        return list(found.values())

    def get_set(self, name: str) -> EvalSet:
        return next(s for s in self.sets if s.name == name)

    def truth(self, cell: Cell) -> tuple[torch.Tensor, tuple[str, ...]]:
        """The ground truths ``[B, C, H, W]`` and the ids of a cell's images."""
        s = self.get_set(cell.set)
        return s.images[cell.start:cell.stop], s.ids[cell.start:cell.stop]

    def example_ids(self, set_name: str) -> tuple[str, ...]:
        return self.get_set(set_name).ids[: self.examples]

    def save_examples(self, cell: Cell, ids: tuple[str, ...], images: dict[str, torch.Tensor]) -> None:
        """Store ``images[name][i]`` for the cell's images that are examples (``name``: file stem)."""
        keep = set(self.example_ids(cell.set))
        for i, image_id in enumerate(ids):
            if image_id in keep:
                for name, x in images.items():
                    self.store.save_example(cell.set, image_id, name, x[i])

    def run(self, cells: list[Cell], solve_cell: Callable[[Cell], dict], desc: str) -> dict:
        return run_cells(cells, self.store, solve_cell, progress=self.progress, desc=desc)
