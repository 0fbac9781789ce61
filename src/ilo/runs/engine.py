"""Run a set of jobs into a store: split into batches, execute, store each batch as it finishes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from collections.abc import Sequence

from tqdm.auto import tqdm

from .executors import LocalExecutor
from .jobs import Item, Job, JobFunction
from .store import RunStore
from .summary import write_summary


@dataclass(frozen=True)
class RunReport:
    """What one call of :func:`run_jobs` did."""

    solved: int  # images solved and stored now
    skipped: int  # images already in the store
    batches: int
    batch_size: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.solved / self.seconds if self.seconds > 0 else 0.0


def make_batches(jobs: Sequence[Job], store: RunStore, batch_size: int) -> list[tuple[Job, list[Item]]]:
    """The pending items of each job, in order, cut into batches of at most ``batch_size``, taken
    round-robin over the jobs (every job's first batch, then every job's second, ...) so that a
    run stopped early already has every job on its first images."""
    chunks = []
    for job in jobs:
        items = store.pending(job)
        chunks.append([(job, items[i:i + batch_size]) for i in range(0, len(items), batch_size)])
    return [c[k] for k in range(max(map(len, chunks), default=0)) for c in chunks if k < len(c)]


def check_results(job: Job, items: list[Item], results) -> list[dict]:
    """The job function's results for ``items``, checked against the contract (RuntimeError if broken)."""
    if not isinstance(results, list) or sorted(r.get("item", "") for r in results if isinstance(r, dict)) != sorted(it.id for it in items):
        raise RuntimeError(f"the job function must return one result dict per item of the batch for job {job.name!r}; "
                           f"got {type(results).__name__} for items {[it.id for it in items][:4]}...")
    for r in results:
        if not isinstance(r.get("metrics", {}), dict) or not isinstance(r.get("files", {}), dict):
            raise RuntimeError(f"result of item {r['item']!r}: 'metrics' and 'files' must be dicts")
    return results


def run_jobs(jobs: Sequence[Job], solve_batch: JobFunction, out: str | os.PathLike, *, settings: dict,
             executor=None, batch_size: int | None = None, per_image_bytes: int | None = None,
             progress: bool = True, summary: bool = True) -> RunReport:
    """Solve every (job, item) of ``jobs`` not yet stored in ``out``; store each batch as it finishes.

    ``solve_batch(job, items, device) -> list[dict]`` is the job function (contract in
    :mod:`ilo.runs`); ``settings`` (JSON) must match those of a run already in ``out``
    (:class:`~ilo.runs.store.StoreMismatch` otherwise). ``executor``: a
    :class:`~ilo.runs.executors.LocalExecutor` (default, CPU) or an entered
    :class:`~ilo.runs.executors.RayExecutor`. ``batch_size``: images per batch, or chosen by the
    executor from ``per_image_bytes`` and the device's memory, and no larger than the pending
    images divided by the executor's ``parallelism`` (tasks it runs at once). Writes ``summary.csv`` and
    ``index.html`` at the end when ``summary``.
    """
    digests = [j.digest for j in jobs]
    if len(set(digests)) != len(digests):
        dup = next(j for j in jobs if digests.count(j.digest) > 1)
        raise ValueError(f"two jobs of one run have the same problem, method and config ({dup.name}); merge their items")
    executor = executor or LocalExecutor()
    chosen = batch_size is None
    if chosen:
        if per_image_bytes is None:
            raise ValueError("give a batch size, or the memory one image needs so that it can be chosen")
        batch_size = executor.choose_batch_size(per_image_bytes)
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    with RunStore(out, settings) as store:
        store.register(list(jobs))
        if chosen:  # no larger than needed to keep every worker busy
            pending = sum(len(store.pending(j)) for j in jobs)
            batch_size = max(1, min(batch_size, -(-pending // max(1, executor.parallelism))))
        batches = make_batches(jobs, store, batch_size)
        total = sum(len(items) for _, items in batches)
        skipped = sum(len(j.items) for j in jobs) - total
        solved = 0
        with tqdm(total=total, unit="img", desc="images", disable=not progress or total == 0) as bar:
            for i, results, info in executor.map(solve_batch, batches):
                job, items = batches[i]
                n = store.add_batch(job, check_results(job, items, results), info)
                solved += n
                bar.update(n)
        if summary:
            write_summary(store)
    return RunReport(solved, skipped, len(batches), batch_size, round(time.perf_counter() - t0, 3))
