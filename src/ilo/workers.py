"""Independent solves side by side in worker processes on this machine (``ilo demo``'s tasks,
``ilo restore``'s faces).

A solve at 64 px is many small operations: a second thread buys it 1.1-1.7× idle and costs it on
a busy machine, where a thread that lost its core makes the others wait (:mod:`ilo.runtime`).
Separate processes never wait for each other, so independent solves run best one process per
core, each on its share of the threads. :func:`imap` runs calls so:

* ``jobs`` workers, started fresh (``spawn``: no copy of this process's thread pools), each
  with this process's threads shared out (at least one) and, where this process waits
  passively, that wait policy, through ``OMP_NUM_THREADS`` / ``OMP_WAIT_POLICY`` in its
  environment; its first step is :func:`ilo.runtime.configure`, before it loads torch (which
  otherwise picks the policy from the load it sees, its sibling workers included: at one thread
  the policy changes nothing);
* every call gets the Gaussian priors this process holds (:func:`ilo.solvers.gaussian.remembered`;
  :func:`ilo.solvers.prepare` loads or fits them here first), so no worker fits its own;
* one call per worker at a time, in the order given: after an error or Ctrl-C no further call
  starts, and the workers are shut down before :func:`imap` returns or raises;
* results come back as each call finishes, with the call's index.

A call's result is the sequential one at the worker's thread count (the same seeds; float
rounding may differ with the thread count).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import runtime


def default_jobs(device: Any = "cpu", calls: int = 1) -> int:
    """Worker processes for ``calls`` independent solves: one per usable core on the CPU (where
    the threads were given, ``--threads N`` or ``OMP_NUM_THREADS``: at most N), at most one per
    call; one on a GPU (the calls would share it).

    On a busy machine :mod:`ilo.runtime` gives one solve one thread per free core; workers are
    still one per core: each runs one thread and none waits for another, so together they take
    a share of the machine per process, as ``make -j`` does.
    """
    import torch

    if torch.device(device).type != "cpu":
        return 1
    rt = runtime.current()
    budget = rt.threads if rt is not None and rt.source != "auto" else runtime.usable_cpus()
    return max(1, min(calls, budget))


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set while inside (for the processes started there), then restored."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def child_environment(jobs: int, threads: int | None = None) -> dict[str, str]:
    """The environment of each of ``jobs`` workers: ``threads`` (None: its share of this process's
    threads, at least one) and this process's wait policy (none where OpenMP's own)."""
    import torch

    rt = runtime.current()  # None: a host program's own threads and environment
    own = rt.threads if rt is not None else torch.get_num_threads()
    policy = rt.wait_policy if rt is not None else os.environ.get("OMP_WAIT_POLICY", "default")
    env = {"OMP_NUM_THREADS": str(threads if threads is not None else max(1, own // jobs))}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return env


def _call(fn: Callable, args: tuple, priors: dict) -> Any:
    """``fn(*args)`` in a worker, with the parent's Gaussian priors in memory."""
    from .solvers import gaussian

    gaussian.remember(priors)
    return fn(*args)


def imap(fn: Callable, calls: Sequence[tuple], jobs: int, *, progress: bool = False, desc: str = "solves",
         unit: str = "solve", threads: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(i, fn(*calls[i]))`` for every call, as each finishes, from ``jobs`` worker processes
    (the module docstring); ``fn`` and the arguments must pickle (``fn`` a module-level
    function). ``jobs`` 1 (or one call): in this process, in order. ``progress``: a bar over the
    calls in workers (``desc``, counted in ``unit``). ``threads``: each worker's (None: its share
    of this process's)."""
    from tqdm.auto import tqdm

    jobs = max(1, min(jobs, len(calls)))
    bar = tqdm(total=len(calls), desc=f"{desc} ({jobs} processes)", unit=unit,
               disable=not progress or jobs == 1)  # in this process the calls show their own progress
    try:
        if jobs == 1:
            for i, args in enumerate(calls):
                result = fn(*args)
                bar.update()
                yield i, result
            return
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        from .solvers import gaussian

        priors = gaussian.remembered()
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=runtime.configure)
        try:
            todo = list(enumerate(calls))
            with _environment(**child_environment(jobs, threads)):  # the workers start in these submits (spawn: on demand)
                running = {pool.submit(_call, fn, args, priors): i for i, args in (todo.pop(0) for _ in range(jobs))}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    i = running.pop(f)
                    result = f.result()
                    if todo:
                        j, args = todo.pop(0)
                        running[pool.submit(_call, fn, args, priors)] = j
                    bar.update()
                    yield i, result
        finally:
            pool.shutdown(cancel_futures=True)
    finally:
        bar.close()


__all__ = ["default_jobs", "child_environment", "imap"]
