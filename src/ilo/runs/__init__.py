"""A resumable run engine: many images, many jobs, one process or a Ray cluster.

A **run** is a set of :class:`Job` s in an output folder. A job is ``problem × method × config``
(plain JSON dicts, digested: :attr:`Job.digest`) run on :class:`Item` s (images or seeds, by
id). The engine (:func:`run_jobs`) cuts each job's pending items into batches, hands them to an
executor (:class:`LocalExecutor` in this process, or :class:`RayExecutor`), and stores every
finished batch at once in a :class:`RunStore` (``results.jsonl``, one JSON line per job and
item, plus per-image files); a rerun skips what is stored. It knows nothing about tasks or
methods: the caller passes a **job function**

    ``solve_batch(job: Job, items: list[Item], device: str) -> list[dict]``

that solves the items of one batch together and returns one result per item::

    {"item": item.id,                      # required, each item of the batch exactly once
     "metrics": {"psnr": 27.1, ...},       # numbers (NaN and infinities are stored as null)
     "files": {"recon.png": b"...", ...},  # file contents; the driver writes them (safe names)
     "info": {...}}                        # optional, any JSON

It must be a module-level function (Ray sends it to workers by reference), deterministic per
item (a result may not depend on the batch it ran in), and may cache expensive set-up (a
generator) per process. The stored record of a (job, item) is::

    {"job": digest, "item": id, "metrics": {...}, "files": {name: "files/<job12>/<item>/<name>"},
     "info": {...}, "batch": {"size", "seconds", "worker", "peak_rss_mb"}}
"""

from .engine import RunReport, run_jobs
from .executors import LocalExecutor, RayExecutor, RayUnavailable, available_memory, choose_batch_size
from .jobs import Item, Job, JobFunction, canonical_json, png_bytes
from .store import RunStore, StoreBusy, StoreDamaged, StoreMismatch, read_run
from .summary import write_summary

__all__ = ["Item", "Job", "JobFunction", "LocalExecutor", "RayExecutor", "RayUnavailable", "RunReport", "RunStore", "StoreBusy",
           "StoreDamaged", "StoreMismatch", "available_memory", "canonical_json", "choose_batch_size", "png_bytes",
           "read_run", "run_jobs", "write_summary"]
