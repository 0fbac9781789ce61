"""Solvers behind one signature: ``solve(y, operator, generator, method=...) -> Result``."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..generators.base import LayeredGenerator
from ..operators.base import Operator
from .config import CSGMConfig, ILOConfig, LossConfig, RoundConfig, Schedule, csgm_preset, dcgan_preset, with_budget
from .csgm import csgm
from .ilo import ilo
from .optim import StepInfo
from .result import Result

METHODS = ("csgm", "ilo")


def default_config(method: str, generator: LayeredGenerator, task: str = "inpaint", total_steps: int | None = None, restarts: int = 4):
    """The preset configuration of ``method`` for ``generator`` and ``task``."""
    steps = total_steps or 600
    if method == "csgm":
        return csgm_preset(task, steps, restarts)
    if method == "ilo":
        return dcgan_preset(task, steps, restarts)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def solve(
    y: torch.Tensor,
    operator: Operator,
    generator: LayeredGenerator,
    method: str = "ilo",
    config: CSGMConfig | ILOConfig | None = None,
    *,
    seeds: int | Sequence[int] | None = 0,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
) -> Result:
    """Reconstruct images from observations ``y = operator(x)`` with a pretrained generator.

    Args:
        y: observations ``[B, ...]`` as produced by ``operator``.
        operator: forward operator (also defines the measurement loss).
        generator: layered generator (images ``[B, C, H, W]`` in ``[-1, 1]``).
        method: one of :data:`METHODS`.
        config: method configuration; None = the preset for this generator and task.
        seeds: per-image seeds (an int ``s`` means ``s, s+1, ...``).
        callback: called with a :class:`StepInfo` after every optimisation step.
        progress: show a progress bar.

    >>> import torch
    >>> from ilo.generators import DCGANGenerator
    >>> from ilo.operators import Denoising
    >>> g = DCGANGenerator(nz=8, ngf=4, size=16).eval().requires_grad_(False)
    >>> op = Denoising((3, 16, 16), sigma255=10)
    >>> y = op(g(g.sample_latent(2, torch.Generator().manual_seed(1))), torch.Generator().manual_seed(2))
    >>> res = solve(y, op, g, "csgm", CSGMConfig(steps=5, restarts=2))
    >>> res.image.shape, len(res.history)
    (torch.Size([2, 3, 16, 16]), 5)
    """
    if config is None:
        config = default_config(method, generator, operator.task)
    if method == "csgm":
        if not isinstance(config, CSGMConfig):
            raise TypeError(f"method 'csgm' needs a CSGMConfig, got {type(config).__name__}")
        return csgm(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
    if method == "ilo":
        if not isinstance(config, ILOConfig):
            raise TypeError(f"method 'ilo' needs an ILOConfig, got {type(config).__name__}")
        return ilo(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


__all__ = [
    "solve", "csgm", "ilo", "Result", "StepInfo", "METHODS", "default_config",
    "CSGMConfig", "ILOConfig", "RoundConfig", "LossConfig", "Schedule", "dcgan_preset", "with_budget",
]
