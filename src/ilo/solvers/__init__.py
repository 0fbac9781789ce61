"""Solvers behind one signature: ``solve(y, operator, generator, method=...) -> Result``."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..generators.base import LayeredGenerator
from ..operators.base import Operator
from .bm3d import BM3DConfig, BM3DUnavailable, bm3d_denoise
from .classical import CLASSICAL, ClassicalConfig, classical
from .config import (
    CSGMConfig,
    ILOConfig,
    LossConfig,
    RoundConfig,
    Schedule,
    csgm_preset,
    dcgan_preset,
    pulse_preset,
    stylegan2_preset,
    with_budget,
)
from .csgm import csgm
from .ilo import ilo
from .optim import StepInfo
from .result import Result

#: every method behind :func:`solve`; the CSGM variants differ only in their loss
METHODS = ("csgm", "csgm-perceptual", "csgm-mse-perceptual", "pulse", "ilo", "bm3d") + tuple(CLASSICAL)
CSGM_FAMILY = ("csgm", "csgm-perceptual", "csgm-mse-perceptual", "pulse")


def default_config(method: str, generator: LayeredGenerator, task: str = "inpaint", total_steps: int | None = None,
                   restarts: int = 4, level: float | None = None):
    """The preset configuration of ``method`` for ``generator`` and ``task``.

    ``level``: the measurement level (observed fraction, m/n, 1/factor or sigma255) when known;
    presets use it to drop the perceptual term when measurements are scarce.
    """
    steps = total_steps or 600
    stylegan = hasattr(generator, "noise_keys")
    if stylegan and method != "bm3d":
        from dataclasses import replace

        ilo_cfg = stylegan2_preset(generator, task, steps, restarts, level)
        if method == "ilo":
            return ilo_cfg
        base = replace(ilo_cfg.csgm, steps=steps)
        if method == "pulse":  # PULSE: sphere on w+, 100 MSE + 0.05 geocross, lr 0.4
            return replace(base, lr=0.4, sphere=True, loss=LossConfig(mse=100.0, geocross=0.05))
        variant = csgm_preset(task, steps, restarts, variant=method).loss
        return replace(base, loss=replace(variant, geocross=0.01))
    if method in ("csgm", "csgm-perceptual", "csgm-mse-perceptual"):
        return csgm_preset(task, steps, restarts, variant=method)
    if method == "pulse":
        return pulse_preset(task, steps, restarts)
    if method == "ilo":
        return dcgan_preset(task, steps, restarts, level=level)
    if method == "bm3d":
        return BM3DConfig()
    if method in CLASSICAL:
        return ClassicalConfig()
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
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method in CLASSICAL:  # no generator
        return classical(y, operator, method, config)
    if config is None:
        config = default_config(method, generator, operator.task)
    if method in CSGM_FAMILY:
        if not isinstance(config, CSGMConfig):
            raise TypeError(f"method {method!r} needs a CSGMConfig, got {type(config).__name__}")
        res = csgm(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
        res.method = method
        return res
    if method == "bm3d":
        if not isinstance(config, BM3DConfig):
            raise TypeError(f"method 'bm3d' needs a BM3DConfig, got {type(config).__name__}")
        return bm3d_denoise(y, operator, config)
    if method == "ilo":
        if not isinstance(config, ILOConfig):
            raise TypeError(f"method 'ilo' needs an ILOConfig, got {type(config).__name__}")
        return ilo(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


__all__ = [
    "solve", "csgm", "ilo", "Result", "StepInfo", "METHODS", "default_config",
    "CSGMConfig", "ILOConfig", "RoundConfig", "LossConfig", "Schedule", "dcgan_preset", "with_budget",
    "BM3DConfig", "BM3DUnavailable", "pulse_preset", "stylegan2_preset", "CSGM_FAMILY",
]
