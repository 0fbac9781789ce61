"""CPU threads and the OpenMP wait policy, chosen once at start-up from the cores actually free.

On a busy machine OpenMP's default busy-waiting makes every parallel operation wait for a
thread that has lost its core, so a solve can run tens of times slower than on an idle one.
:func:`configure` therefore looks at the cores this process may use
(``os.sched_getaffinity``) and the load (:func:`load_average`: the tasks running and the cores
busy now, and the 1-minute average unless the kernel's CPU pressure shows no recent
contention) and picks:

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

#: below this load (cores taken by other programs) a machine counts as idle
IDLE_LOAD = 0.5


@dataclass(frozen=True)
class Runtime:
    """What :func:`configure` decided and why (recorded in ``config.json`` as ``runtime``)."""

    threads: int  # torch intra-op threads
    wait_policy: str  # "PASSIVE", "ACTIVE" or "default" (OpenMP's own)
    load: float | None  # cores taken by other programs at start-up (load_average; None where unknown)
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


#: ``/proc`` (a test points it at fake files)
PROC = "/proc"
#: below this share (percent) of the last 10 s in which some task waited for a core, the
#: kernel's CPU pressure says nothing competed for the cores recently
QUIET_PRESSURE = 5.0


def _read(name: str) -> str | None:
    try:
        with open(os.path.join(PROC, name)) as f:
            return f.read()
    except OSError:
        return None


def _cpu_jiffies() -> tuple[int, int, int] | None:
    """``(busy, total, cores)`` from ``/proc/stat``: the CPU time of all cores together (busy:
    all but idle and iowait) and the number of cores it sums over."""
    lines = (_read("stat") or "").splitlines()
    try:
        fields = [int(v) for v in lines[0].split()[1:]] if lines else []
    except ValueError:
        return None
    if len(fields) < 5:
        return None
    total = sum(fields[:8])
    cores = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return total - fields[3] - fields[4], total, max(1, cores)


def cpu_pressure() -> float | None:
    """The kernel's CPU pressure: the share (percent) of the last 10 s in which some task
    waited for a core (``/proc/pressure/cpu``, ``some avg10``); None where unavailable."""
    text = _read("pressure/cpu")
    for line in (text or "").splitlines():
        if line.startswith("some "):
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key == "avg10":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None


def load_average(samples: int = 10, interval: float = 0.01) -> float | None:
    """The machine's load in cores taken by other programs, None where unknown.

    Measured now, over ``samples`` reads ``interval`` s apart of ``/proc/loadavg`` and
    ``/proc/stat``: the larger of the tasks running besides this one (median of the reads)
    and the cores busy between the first and the last read (this process sleeps meanwhile).
    The 1-minute load average counts too, unless the kernel's CPU pressure
    (:func:`cpu_pressure`) shows that no task waited for a core in the last 10 s: the average
    lags by a minute, so right after a solve it still counts that solve, and a user who runs
    commands back to back would otherwise get one passive thread on an idle machine (1.3-1.6x
    slower, docs/PERFORMANCE.md section 11). Without pressure information the average always
    counts (the rule before pressure was read).
    """
    now, avg = [], None
    first = _cpu_jiffies()
    for i in range(samples):
        text = _read("loadavg")
        try:
            fields = text.split() if text else []
            avg = float(fields[0])
            now.append(int(fields[3].split("/")[0]) - 1)  # minus this process
        except (ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval)
    last = _cpu_jiffies()
    if avg is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    load = float(sorted(now)[len(now) // 2])
    if first is not None and last is not None and last[1] > first[1]:
        load = max(load, last[2] * (last[0] - first[0]) / (last[1] - first[1]))
    pressure = cpu_pressure()
    if pressure is None or pressure >= QUIET_PRESSURE:
        load = max(load, avg)
    return round(load, 2)


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


@contextmanager
def all_cores() -> Iterator[None]:
    """Torch's threads raised to the usable cores while inside, where :func:`configure` chose them
    automatically. A busy machine gets one thread per free core: right for a solve's many small
    operations. Work of few large operations (the Gaussian prior's fit: convolutions of 256
    images, products with hundreds of columns) uses every core it gets and gets a larger share of
    a busy machine with more threads, under the passive wait policy chosen then. An explicit
    ``--threads`` or ``OMP_NUM_THREADS``, or a host program's own count, is kept; the count is
    restored on leaving."""
    import torch

    before = torch.get_num_threads()
    raise_to = _current is not None and _current.source == "auto" and usable_cpus() > before
    if raise_to:
        torch.set_num_threads(usable_cpus())
    try:
        yield
    finally:
        if raise_to:
            torch.set_num_threads(before)
