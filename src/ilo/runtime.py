"""CPU threads and the OpenMP wait policy, chosen once at start-up from the cores actually free.

On a busy machine OpenMP's default busy-waiting makes every parallel operation wait for a
thread that has lost its core, so a solve can run tens of times slower than on an idle one.
:func:`configure` therefore looks at the cores this process may use
(``os.sched_getaffinity``) and the load (``/proc/loadavg``: the 1-minute average and the tasks
running now) and picks:

* idle (load < 0.5): one thread per usable core, the OpenMP default wait policy;
* busy: one thread per core left free (at least one), ``OMP_WAIT_POLICY=PASSIVE``.

An explicit thread count (``--threads N``) overrides the count; ``OMP_WAIT_POLICY`` and
``OMP_NUM_THREADS`` set by the user are respected. The wait policy only takes effect when
:func:`configure` runs before torch is imported (OpenMP reads it when it loads); the record
says whether it did. A program that imported torch before calling :func:`configure` without a
count keeps its own thread count (source ``"host"``). Results are bitwise reproducible for the same seed, device and thread
count; the thread count is recorded so that a run can be repeated exactly.

>>> decide(cpus=2, load=0.1)
(2, 'default')
>>> decide(cpus=2, load=5.0)
(1, 'PASSIVE')
>>> decide(cpus=8, load=3.2, threads=8)
(8, 'PASSIVE')
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass

#: below this load average a machine counts as idle
IDLE_LOAD = 0.5


@dataclass(frozen=True)
class Runtime:
    """What :func:`configure` decided and why (recorded in ``config.json`` as ``runtime``)."""

    threads: int  # torch intra-op threads
    wait_policy: str  # "PASSIVE", "ACTIVE" or "default" (OpenMP's own)
    load: float | None  # 1-minute load average at start-up (None where unknown)
    cpus: int  # cores this process may run on
    source: str  # "auto", "--threads", or "environment"
    applied_before_torch: bool  # False: torch was already loaded, the wait policy could not change

    def to_dict(self) -> dict:
        return asdict(self)


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average(samples: int = 5, interval: float = 0.01) -> float | None:
    """The machine's load: the larger of the 1-minute load average and the number of other
    tasks running now (median of ``samples`` reads of ``/proc/loadavg``, ``interval`` s apart;
    the average alone lags a load that has just started by a minute). None where unknown."""
    now = []
    avg = None
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                fields = f.read().split()
            avg = float(fields[0])
            now.append(int(fields[3].split("/")[0]) - 1)  # minus this process
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval)
    if avg is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    return max(avg, float(sorted(now)[len(now) // 2]))


def decide(cpus: int, load: float | None, threads: int | None = None) -> tuple[int, str]:
    """Thread count and wait policy for ``cpus`` usable cores at ``load`` (None: unknown = idle).

    ``threads`` given: that count; the policy is passive when the machine is busy or the
    count exceeds the usable cores.
    """
    free = cpus if load is None else cpus - load
    busy = load is not None and load >= IDLE_LOAD
    if threads is None:
        threads = cpus if not busy else max(1, min(cpus, math.floor(free + 0.5)))
    passive = busy or threads > cpus
    return threads, "PASSIVE" if passive else "default"


_current: Runtime | None = None


def configure(threads: int | None = None) -> Runtime:
    """Choose and apply threads and wait policy. Once chosen automatically, later calls without
    ``threads`` return the same choice (one process keeps one thread count).

    Raises ValueError for ``threads < 1``.
    """
    global _current
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads is None and _current is not None and _current.source in ("auto", "environment"):
        return _current
    cpus, load = usable_cpus(), load_average()
    before_torch = "torch" not in sys.modules
    env_threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads is not None:
        source = "--threads"
    elif env_threads.isdigit() and int(env_threads) >= 1:
        threads, source = int(env_threads), "environment"
    elif not before_torch:  # a program that loaded torch itself owns its thread pool
        import torch

        threads, source = torch.get_num_threads(), "host"
    else:
        source = "auto"
    n, policy = decide(cpus, load, threads)
    user_policy = os.environ.get("OMP_WAIT_POLICY")
    if user_policy:
        policy = user_policy.upper()
    elif not before_torch:  # OpenMP read its settings when torch loaded
        policy = _current.wait_policy if _current is not None else "default"
    elif policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy
    import torch

    torch.set_num_threads(n)
    applied = before_torch if _current is None else _current.applied_before_torch
    _current = Runtime(threads=n, wait_policy=policy, load=load, cpus=cpus, source=source, applied_before_torch=applied)
    return _current


def current() -> Runtime | None:
    """The choice made by :func:`configure` in this process, if any."""
    return _current
