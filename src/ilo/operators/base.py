"""Forward-operator base class and noise models (deepinv-style ``Physics`` objects).

An operator is an ``nn.Module`` holding everything that defines the measurement (masks,
filters, sign patterns as registered buffers, drawn from an explicit ``torch.Generator``).
The same object simulates the observation and defines the loss::

    y = op(x, generator=g)                 # = op.noise(op.A(x)): simulate
    loss = op.measurement_loss(G(z), y)    # [B]: what the solvers minimise

Images are ``[B, C, H, W]`` in ``[-1, 1]`` (the generators' range).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

RandomSource = torch.Generator | Sequence[torch.Generator] | None


def randn_like(x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``.

    ``generator`` may be one ``torch.Generator`` for the whole batch or a sequence with one
    per sample, so that a sample's noise does not depend on the batch it is in.
    """
    if generator is None or isinstance(generator, torch.Generator):
        dev = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generator]
    ).to(x.device)


class NoiseModel(nn.Module):
    """Maps clean measurements to noisy ones; ``sigma`` is the std in measurement units."""

    sigma: float = 0.0

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract


class NoNoise(NoiseModel):
    """Noiseless measurements."""

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        return y


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y + sigma * n``, optionally clipped to ``clip = (lo, hi)``.

    Args:
        sigma: standard deviation in measurement units (>= 0).
        clip: value range to clip to after adding noise (e.g. ``(-1, 1)`` for images), or None.
    """

    def __init__(self, sigma: float, clip: tuple[float, float] | None = None):
        super().__init__()
        if not sigma >= 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.clip = clip

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        out = y + self.sigma * randn_like(y, generator)
        return out.clamp(*self.clip) if self.clip is not None else out

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, clip={self.clip}"


class Operator(nn.Module):
    """A forward operator ``y = noise(A(x))``.

    Subclasses implement :meth:`A` (and :meth:`A_adjoint` when ``linear``).
    ``input_shape`` is the per-sample image shape ``(C, H, W)`` the operator accepts.
    """

    linear: bool = True
    task: str = "operator"
    #: names of buffers that may hold one entry per sample (first dim = batch), e.g. a mask per image
    per_sample_buffers: tuple[str, ...] = ()

    def __init__(self, input_shape: tuple[int, int, int], noise: NoiseModel | None = None):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.noise = noise if noise is not None else NoNoise()

    # -- to implement ---------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is not linear")

    # -- shared ---------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} expects [B, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")

    def forward(self, x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        """Simulate an observation: ``noise(A(x))``."""
        return self.noise(self.A(x), generator)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error between ``A(x)`` and ``y``: ``[B]``."""
        r = self.A(x) - y
        return r.flatten(1).pow(2).mean(1)

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        """A picture of the observation for display, ``[B, C, h, w]`` in ``[-1, 1]``."""
        return y

    def batch_repeat(self, r: int) -> "Operator":
        """The operator for a batch where every sample is repeated ``r`` times in a row
        (``x.repeat_interleave(r, 0)``), e.g. for restarts run as one batch. Shared buffers
        are reused; per-sample buffers are repeated."""
        per_sample = [n for n in self.per_sample_buffers if getattr(self, n).shape[0] > 1]
        if r == 1 or not per_sample:
            return self
        new = copy.copy(self)
        new._buffers = dict(self._buffers)
        for n in per_sample:
            new._buffers[n] = self._buffers[n].repeat_interleave(r, 0)
        return new

    def config(self) -> dict:
        """JSON-serialisable description (written next to results)."""
        return {"task": self.task, "input_shape": list(self.input_shape), "noise_sigma": self.noise.sigma}
