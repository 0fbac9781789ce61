"""Named random streams: every random draw comes from a stream derived from ``(seed, purpose, index...)``.

A stream is a ``torch.Generator`` seeded with a 63-bit integer derived by hashing the seed,
the purpose and the indices with NumPy's :class:`numpy.random.SeedSequence` (the purpose
string enters as the integers of its UTF-8 bytes, so the derivation is stable across
processes and platforms, unlike Python's ``hash``). Two different ``(seed, purpose, index)``
tuples give unrelated streams, so

- a solver seed equal to a truth seed no longer starts the solver at the true latent
  (``"restart"`` and ``"truth"`` are different purposes);
- adding an image to a batch, or a draw of another purpose, never shifts another stream.

Purposes used by the library (:data:`PURPOSES`):

==============  ============================================================================
``operator``    the random parts of an operator (inpainting mask, sensing matrix)
``noise``       observation noise of one image
``truth``       a ground truth drawn from the generator (``ilo solve --truth-seed``, bench faces)
``restart``     random start ``r`` of one image's solver run (index: ``r``)
``sna``         Stochastic Noise Addition of one image: ``(0, restart)`` in CSGM, ``(1,)`` in ILO's rounds
``augment``     the classifier-guidance augmentations of one image
``holdout``     the self-tuning split of one image's measurements, or its SURE probes
==============  ============================================================================

>>> stream_seed(0, "noise") == stream_seed(0, "noise")
True
>>> stream_seed(0, "noise") != stream_seed(0, "restart") != stream_seed(1, "noise")
True
>>> torch.equal(torch.randn(3, generator=stream(5, "truth")), torch.randn(3, generator=stream(5, "truth")))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

PURPOSES = ("operator", "noise", "truth", "restart", "sna", "augment", "holdout")


def stream_seed(seed: int, purpose: str, *index: int) -> int:
    """The 63-bit seed of the stream ``(seed, purpose, *index)``; ``seed`` and indices are integers >= 0."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown stream purpose {purpose!r}; choose from {', '.join(PURPOSES)}")
    parts = [int(seed), *(int(i) for i in index)]
    if any(p < 0 for p in parts):
        raise ValueError(f"seeds and stream indices must be >= 0, got {parts}")
    entropy = [*parts, len(parts), *purpose.encode()]
    hi, lo = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) & (2**63 - 1)


def stream(seed: int, purpose: str, *index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` for the stream ``(seed, purpose, *index)`` (see the module docstring)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, purpose, *index))


def streams(seeds: Sequence[int], purpose: str, *index: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One stream per seed (e.g. per image of a batch): ``[stream(s, purpose, *index) for s in seeds]``."""
    return [stream(s, purpose, *index, device=device) for s in seeds]
