"""Memory bounds checked before a loader allocates: what is available, and a refusal if it will not fit.

``MemAvailable`` of ``/proc/meminfo`` is the kernel's estimate of what can be allocated without
swapping. Where it cannot be read (not Linux), :func:`available_bytes` is ``None`` and
:func:`require` only applies its explicit ``limit``.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import CheckpointTooLarge


def meminfo_kib(key: str) -> int | None:
    """A ``/proc/meminfo`` field in KiB (e.g. ``MemAvailable``), or ``None`` where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> int | None:
    """Memory the process can still allocate (``MemAvailable``), in bytes; ``None`` if unknown."""
    kib = meminfo_kib("MemAvailable")
    return None if kib is None else kib * 1024


def human(nbytes: float) -> str:
    """``1536 -> '1.5 KiB'``, ``3 * 2**30 -> '3.0 GiB'``.

    >>> human(1536), human(3 * 2**30), human(12)
    ('1.5 KiB', '3.0 GiB', '12 B')
    """
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


def require(nbytes: int, what: str) -> None:
    """Raise :class:`CheckpointTooLarge` if ``nbytes`` exceed the memory available now.

    ``what`` completes the sentence "``what`` would need N of memory", e.g. ``"building the
    generator of x.pt"``.
    """
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise CheckpointTooLarge(f"{what} would need {human(nbytes)} of memory; {human(avail)} is available")


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (works on the ``meta`` device, where nothing is allocated)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def meta_build(build, what: str) -> nn.Module:
    """Run ``build()`` on the ``meta`` device (no memory), check its size fits, return the meta module.

    The caller then compares a state dict's keys and shapes with the meta module before building
    the real one, so that a file whose config asks for a huge network is refused before anything
    is allocated.
    """
    with torch.device("meta"):
        m = build()
    require(module_bytes(m), what)
    return m
