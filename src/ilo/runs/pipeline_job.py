"""The job function of ``ilo batch``: a batch of images through the pipeline's one path, solved once.

:func:`solve_batch` is a :data:`~ilo.runs.jobs.JobFunction` (contract in :mod:`ilo.runs`). A job is

- ``problem``: a :class:`~ilo.pipeline.ProblemSpec` as a dict (``{"task": "inpaint", "observed": 0.1, ...}``);
- ``method``: a key of :data:`ilo.solvers.METHODS`;
- ``config``: :data:`DEFAULTS` overridden: ``generator`` (name or checkpoint), ``steps`` (total),
  ``restarts``, ``seed`` (the base seed: an operator without per-image parts, e.g. the
  compressed-sensing matrix, is drawn from it and shared by the job's images), ``loss``
  (term -> weight replacing the preset's loss, or None), ``sna``, ``lpips_backbone``, ``framing``
  (:data:`ilo.pipeline.FRAMINGS`, None: each item's own, see :func:`ilo.pipeline.build_problem`),
  ``screen`` (CSGM's start screening, :func:`ilo.pipeline.method_config`; None: the preset's);

and an item's ``data`` is one of (:func:`truth_item`, :func:`image_item`, :func:`observation_item`)

- ``{"truth_seed": t, "seed": s}``: the truth is the face drawn from the generator with seed ``t``;
- ``{"image": path, "sha256": hex, "seed": s}``: the truth is a photo (checked against its sha256,
  so that a changed file is never passed off as the stored one);
- ``{"observation": path, "sha256": hex, "seed": s}``: only the observation is known;

where ``s`` is the image's seed (its mask, noise and solver starts come from the named streams
of ``s``, :mod:`ilo.pipeline`). An image's numbers are therefore those of ``ilo solve`` with
``--seed s`` (for tasks whose operator is per image or deterministic; a shared compressed-sensing
matrix is drawn from the job's base seed), whatever batch it runs in.

Per item the result holds the metrics of :func:`ilo.pipeline.image_scores`, the PNGs
``truth.png`` (when known), ``observation.png`` and ``reconstruction.png``, and ``info``
``{"seed", "source", "solver"}`` (the resolved solver config).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch

from .jobs import Item, Job, png_bytes

#: the config of a job, over which a job's ``config`` is merged
DEFAULTS = {"generator": "digiface-dcgan", "steps": 600, "restarts": 4, "seed": 0, "loss": None, "sna": None,
            "lpips_backbone": None, "framing": None, "screen": None}


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def truth_item(truth_seed: int, seed: int) -> Item:
    """The item of a generated face: id ``seed<truth_seed>``."""
    return Item(f"seed{truth_seed}", {"truth_seed": int(truth_seed), "seed": int(seed)})


def image_item(item_id: str, path: str | Path, seed: int, *, observation: bool = False) -> Item:
    """The item of a photo (the truth) or, with ``observation``, of an observation file."""
    p = Path(path).resolve()
    return Item(item_id, {("observation" if observation else "image"): str(p), "sha256": file_sha256(p), "seed": int(seed)})


def observation_item(item_id: str, path: str | Path, seed: int) -> Item:
    return image_item(item_id, path, seed, observation=True)


@lru_cache(maxsize=2)
def cached_generator(name: str, device: str):
    """The generator ``name`` on ``device``, loaded once per process (Ray reuses workers)."""
    from ..generators import load_generator

    return load_generator(name, device)


def _checked_path(data: dict, key: str) -> str:
    path = data[key]
    if file_sha256(path) != data["sha256"]:
        raise ValueError(f"{path} changed since the run started (its sha256 differs); use another output folder")
    return path


def item_problem(spec, G, item: Item, base_seed: int, framing: str | None = None):
    """The one-image :class:`~ilo.pipeline.Problem` of an item (see the module docstring);
    ``framing``: see :func:`ilo.pipeline.build_problem`."""
    from ..pipeline import build_problem

    d = item.data
    start = int(d["seed"]) - base_seed  # image seed = base seed + start (the pipeline's convention)
    if start < 0:
        raise ValueError(f"item {item.id}: its seed {d['seed']} is below the job's base seed {base_seed}")
    if "truth_seed" in d:
        return build_problem(spec, G, seed=base_seed, start=start, truth_seed=int(d["truth_seed"]), framing=framing)
    if "image" in d:
        return build_problem(spec, G, seed=base_seed, start=start, image=_checked_path(d, "image"), framing=framing)
    if "observation" in d:
        return build_problem(spec, G, seed=base_seed, start=start, observation=_checked_path(d, "observation"), framing=framing)
    raise ValueError(f"item {item.id}: data needs 'truth_seed', 'image' or 'observation', got {sorted(d)}")


def stack_problems(problems: list):
    """One :class:`~ilo.pipeline.Problem` ``[B, ...]`` from one-image problems of one spec."""
    from ..pipeline import Problem

    first = problems[0]
    cls = first.spec.operator_class
    op = cls.stack([p.operator for p in problems]) if cls.per_sample_buffers else first.operator
    y = torch.cat([p.y for p in problems])
    has_truth = [p.truth is not None for p in problems]
    if any(has_truth) and not all(has_truth):
        raise ValueError("a batch mixes images with and without a truth; give them separate jobs")
    truth = torch.cat([p.truth for p in problems]) if all(has_truth) else None
    if any(p.framing != first.framing for p in problems):
        raise ValueError("a batch mixes framings; give them separate jobs")
    return Problem(first.spec, op, y, truth, {"batch": [p.source for p in problems]}, first.seed, first.framing)


def solve_batch(job: Job, items: list[Item], device: str = "cpu") -> list[dict]:
    """Build each item's problem, stack them, run ``job.method`` once on the batch, score each image."""
    from ..pipeline import ProblemSpec, custom_loss, method_config, run_method

    cfg = {**DEFAULTS, **job.config}
    spec = ProblemSpec(**job.problem)
    spec.validate()
    G = cached_generator(cfg["generator"], str(device))
    base = int(cfg["seed"])
    problems = [item_problem(spec, G, it, base, cfg["framing"]) for it in items]
    problem = stack_problems(problems)
    seeds = [int(it.data["seed"]) for it in items]
    loss = custom_loss(spec.task, job.method, cfg["loss"], sna=cfg["sna"], lpips_backbone=cfg["lpips_backbone"])
    config = method_config(problem, G, job.method, total_steps=cfg["steps"], restarts=cfg["restarts"], loss=loss,
                           sna=cfg["sna"], screen=cfg["screen"])
    result, scores = run_method(problem, G, job.method, config=config, seed=seeds, lpips_backbone=cfg["lpips_backbone"])
    per = scores["per_image"]
    obs = problem.operator.observation_image(problem.y).clamp(-1, 1)
    out = []
    for i, (it, p) in enumerate(zip(items, problems)):
        files = {"observation.png": png_bytes(obs[i]), "reconstruction.png": png_bytes(result.image[i])}
        if problem.truth is not None:
            files = {"truth.png": png_bytes(problem.truth[i]), **files}
        out.append({"item": it.id, "metrics": {k: v[i] for k, v in per.items()}, "files": files,
                    "info": {"seed": seeds[i], "source": p.source, "solver": result.config}})
    return out
