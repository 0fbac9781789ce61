"""Where batches run: :class:`LocalExecutor` (this process, one device) or :class:`RayExecutor`.

An executor takes the job function and a list of batches ``(job, items)`` and yields
``(index, results, batch_info)`` as batches finish, in any order; the caller (the single
writer of the store) stores each as it comes. ``batch_info`` is ``{"size", "seconds",
"worker", "peak_rss_mb"}`` of the process that ran the batch.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
from collections.abc import Iterator

from .jobs import Item, Job, JobFunction

#: at most this many images per batch when the size is chosen from memory
BATCH_CAP = 64
#: the fraction of a device's available memory a batch may plan to use
HEADROOM = 0.7

Batch = tuple[Job, list[Item]]


def available_memory(device: str = "cpu") -> int:
    """Bytes available for new allocations on ``device``: ``MemAvailable`` of ``/proc/meminfo``
    for the CPU (and devices sharing its memory), free memory for CUDA devices."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def choose_batch_size(per_image_bytes: int, device: str = "cpu", *, cap: int = BATCH_CAP, share: float = 1.0) -> int:
    """Images per batch that fit in ``HEADROOM`` of ``share`` of the device's available memory, in ``[1, cap]``.

    ``per_image_bytes``: peak memory one more image in a batch needs (the caller measures or
    estimates it); ``share``: the fraction of the device this process may use (e.g. 0.5 when
    two workers share it).

    >>> choose_batch_size(10**15, "cpu")
    1
    >>> choose_batch_size(1, "cpu", cap=8)
    8
    """
    if per_image_bytes <= 0 or cap < 1 or not 0 < share <= 1:
        raise ValueError(f"need per_image_bytes > 0, cap >= 1 and share in (0, 1]; got {per_image_bytes}, {cap}, {share}")
    fit = int(available_memory(device) * share * HEADROOM // per_image_bytes)
    return max(1, min(cap, fit))


def run_batch(fn: JobFunction, job: Job, items: list[Item], device: str) -> tuple[list[dict], dict]:
    """Call ``fn(job, items, device)`` and describe the call (size, seconds, process, peak memory)."""
    t = time.perf_counter()
    results = fn(job, list(items), device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return results, {"size": len(items), "seconds": round(time.perf_counter() - t, 4), "worker": os.getpid(),
                     "peak_rss_mb": round(rss_mb, 1)}


class LocalExecutor:
    """Batches one after another in this process, on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""

    #: batches run at once
    parallelism = 1

    def __init__(self, device: str = "cpu"):
        self.device = device

    def choose_batch_size(self, per_image_bytes: int, cap: int = BATCH_CAP) -> int:
        return choose_batch_size(per_image_bytes, self.device, cap=cap)

    def map(self, fn: JobFunction, batches: list[Batch]) -> Iterator[tuple[int, list[dict], dict]]:
        for i, (job, items) in enumerate(batches):
            yield (i, *run_batch(fn, job, items, self.device))

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass


class RayUnavailable(ValueError):
    """No Ray cluster answers at the address given."""


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise :class:`RayUnavailable` unless ``[ray://]HOST:PORT`` accepts a TCP connection (Ray
    itself retries an unreachable address for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailable(f"a Ray address is HOST:PORT, 'auto' or None; got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(f"no Ray cluster answers at {address} ({e.strerror or e})") from None


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("Ray is not installed; install the extra: pip install 'ilo-inverse[ray]'") from None
    return ray


class RayExecutor:
    """One Ray task per batch on a Ray cluster; results come back to this process as tasks finish.

    ``address``: ``"auto"`` joins the Ray instance running on this machine (or the one named by
    ``RAY_ADDRESS``) and starts a local one if there is none; ``"HOST:PORT"`` joins that cluster;
    ``None`` always starts a new local instance. ``num_cpus`` sizes a started instance (all
    cores if ``None``). If this process already uses Ray, that instance is used as it is.

    Each task asks for ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs (by default 1 if the
    cluster has GPUs, else 0), and is retried up to ``max_retries`` times if its worker dies.
    The job function runs on ``"cuda"`` in tasks given a GPU, else on ``"cpu"`` (Ray sets a
    task's thread count, ``OMP_NUM_THREADS``, to its CPUs); it must be
    importable on every node (``ilo`` installed there). Use as a context manager: a Ray
    instance started here is shut down on exit.
    """

    def __init__(self, address: str | None = "auto", *, num_cpus: int | None = None, cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, max_retries: int = 3):
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_task, self.gpus_per_task, self.max_retries = cpus_per_task, gpus_per_task, max_retries
        self._started = False
        self.device: str | None = None  # set on entering

    def __enter__(self) -> RayExecutor:
        ray = import_ray()
        if not ray.is_initialized():
            opts = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            if self.address == "auto":
                try:
                    ray.init(address="auto", **opts)
                except ConnectionError:  # nothing running here: start one
                    ray.init(address="local", num_cpus=self.num_cpus, **opts)
                    self._started = True
            elif self.address is None:
                ray.init(address="local", num_cpus=self.num_cpus, **opts)
                self._started = True
            else:
                check_reachable(self.address)
                ray.init(address=self.address, **opts)
        if self.gpus_per_task is None:
            self.gpus_per_task = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.device = "cuda" if self.gpus_per_task else "cpu"
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import_ray().shutdown()
            self._started = False

    def _remote(self, f):
        if self.device is None:
            raise RuntimeError("enter the RayExecutor (a with block) before running batches on it")
        ray = import_ray()
        return ray.remote(f).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                     max_retries=self.max_retries, retry_exceptions=False)

    @property
    def parallelism(self) -> int:
        """Tasks the cluster runs at once (its CPUs or GPUs over what one task asks for)."""
        ray = import_ray()
        res = ray.cluster_resources()
        if self.gpus_per_task:
            return max(1, int(res.get("GPU", 0) / self.gpus_per_task))
        return max(1, int(res.get("CPU", 1) / self.cpus_per_task))

    def choose_batch_size(self, per_image_bytes: int, cap: int = BATCH_CAP) -> int:
        """Chosen on a worker, from the memory of the device its tasks get (its share of a node's CPU memory)."""
        task, ray = self._remote(choose_batch_size), import_ray()
        if self.device == "cpu":
            share = min(1.0, self.cpus_per_task / min(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"]))
        else:
            share = min(1.0, self.gpus_per_task)
        return ray.get(task.remote(per_image_bytes, self.device, cap=cap, share=share))

    def map(self, fn: JobFunction, batches: list[Batch]) -> Iterator[tuple[int, list[dict], dict]]:
        task, ray = self._remote(run_batch), import_ray()
        fn_ref = ray.put(fn)
        pending = {task.remote(fn_ref, job, items, self.device): i for i, (job, items) in enumerate(batches)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield (i, *ray.get(ref))
        finally:  # an error or an abandoned generator: stop what is still queued
            for ref in pending:
                ray.cancel(ref, force=True)
