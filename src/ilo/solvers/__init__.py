"""Solvers behind one signature: ``solve(y, operator, generator, method=...) -> Result``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from ..generators.base import LayeredGenerator
from ..operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ..operators.base import Operator
from .bm3d import BM3DConfig, BM3DUnavailable, bm3d_denoise
from .checks import check_frame, check_memory, check_observations
from .classical import CLASSICAL, ClassicalConfig, classical
from .config import (CSGMConfig, DeviationConfig, ILOConfig, LossConfig, RoundConfig, Schedule, SelectionConfig,
                     self_tuned, with_budget)
from .csgm import csgm
from . import gaussian
from .gaussian import GaussianConfig, gaussian_solve, remainder_for
from .ilo import gaussian_prior, ilo
from .optim import StepInfo
from .presets import PRESETS, TaskPreset, csgm_preset, default_config, pulse_preset, self_tuned_budget, self_tuned_own_stage
from .result import Result
from .rounds import Round

#: every method behind :func:`solve`; the CSGM variants differ only in their loss; ``gaussian``:
#: the linear MMSE inpainting and super-resolution of a Gaussian prior fitted to the generator (:mod:`.gaussian`)
METHODS = ("csgm", "csgm-perceptual", "csgm-mse-perceptual", "pulse", "ilo", "bm3d", "gaussian") + tuple(CLASSICAL)
CSGM_FAMILY = ("csgm", "csgm-perceptual", "csgm-mse-perceptual", "pulse")
#: the methods that use the generator (they take a loss, SNA, seeds and a budget)
GENERATIVE = CSGM_FAMILY + ("ilo",)
#: the classical methods (no generator) and the operator class each one solves
CLASSICAL_METHODS = {"bm3d": Denoising, **CLASSICAL}
#: the operator class of every method that solves one task only
SOLVES = {**{m: (c,) for m, c in CLASSICAL_METHODS.items()}, "gaussian": (Inpainting, SuperResolution, CompressedSensing)}
#: the config type of each method
CONFIG_TYPES = {**{m: CSGMConfig for m in CSGM_FAMILY}, "ilo": ILOConfig, "bm3d": BM3DConfig, "gaussian": GaussianConfig,
                **{m: ClassicalConfig for m in CLASSICAL}}
#: a config of any method (:data:`CONFIG_TYPES`)
SolverConfig = CSGMConfig | ILOConfig | BM3DConfig | ClassicalConfig | GaussianConfig


def preset_for(method: str, generator: LayeredGenerator, operator: Operator, total_steps: int | None = None,
               restarts: int = 4, extend: bool = True) -> SolverConfig:
    """The preset of ``method`` for ``generator`` and the operator's task and level: what
    :func:`solve` uses when given no config (and the CLI with its default budget). ILO's is
    self-tuned and range-extended (:func:`~ilo.solvers.config.self_tuned`) unless ``extend``
    is False (the paper's ILO, the only behaviour before issue 15); where the self-tuning's CSGM
    stage is the CSGM method at the whole budget (``operator.self_tuning_csgm == "method"``) its
    rounds run half their steps (:func:`~ilo.solvers.presets.self_tuned_budget`); where it is
    ILO's own (super-resolution), on a DCGAN, the rounds run without the perceptual term and the
    stage with half the restarts (:func:`~ilo.solvers.presets.self_tuned_own_stage`), while the
    CSGM method that challenges the choice (``self_tuning_csgm == "challenge"``) keeps the
    budget's ``restarts`` (:attr:`~ilo.solvers.config.SelectionConfig.csgm_restarts`)."""
    if method == "gaussian":
        return GaussianConfig(remainder=remainder_for(operator))
    cfg = default_config(method, generator, operator.task, total_steps=total_steps, restarts=restarts,
                         level=operator.level)
    if not (extend and isinstance(cfg, ILOConfig)):
        return cfg
    if operator.self_tuning_csgm == "method":
        return self_tuned(self_tuned_budget(cfg))
    tuned = self_tuned(self_tuned_own_stage(cfg, generator.family))
    assert tuned.selection is not None
    return replace(tuned, selection=replace(tuned.selection, csgm_restarts=restarts))


def solve(
    y: torch.Tensor,
    operator: Operator,
    generator: LayeredGenerator,
    method: str = "ilo",
    config: SolverConfig | None = None,
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
        config: method configuration; None = :func:`preset_for` (the preset for this generator's
            family, the operator's task and level, 600 steps, 4 restarts).
        seeds: per-image solver seeds (an int ``s`` means ``s, s+1, ...``); image ``i``'s random
            starts come from the streams ``(seeds[i], "restart", r)`` of :mod:`ilo.rng`.
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
    check_observations(y, operator)
    if method in CLASSICAL and (config is None or isinstance(config, ClassicalConfig)):  # no generator
        return classical(y, operator, method, config)
    if config is None:
        config = preset_for(method, generator, operator)
    if not isinstance(config, CONFIG_TYPES[method]):
        raise TypeError(f"method {method!r} needs a {CONFIG_TYPES[method].__name__}, got {type(config).__name__}")
    if isinstance(config, BM3DConfig):
        return bm3d_denoise(y, operator, config)
    check_frame(operator, generator)  # the rest feed the operator the generator's images
    if isinstance(config, GaussianConfig):
        return gaussian_solve(y, operator, generator, config, progress=progress)
    restarts = config.csgm.restarts if isinstance(config, ILOConfig) else config.restarts if isinstance(config, CSGMConfig) else 1
    check_memory(y.shape[0], restarts, operator.input_shape, y.device)
    if isinstance(config, ILOConfig):
        return ilo(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
    assert isinstance(config, CSGMConfig)  # the rest are the CSGM family, whose config type is checked above
    res = csgm(y, operator, generator, config, seeds=seeds, callback=callback, progress=progress)
    res.method = method
    return res


def prepare(operator: Operator, generator: LayeredGenerator, method: str = "ilo", config: SolverConfig | None = None,
            progress: bool = False) -> None:
    """Load or fit, once, what :func:`solve` with these arguments would load or fit itself (the
    generator's Gaussian prior: the ``gaussian`` method's, or the one a self-tuned ILO's candidates
    use), and keep it in this process's memory. For solving in several processes: they are handed
    it (:mod:`ilo.workers`) instead of each fitting its own. Nothing for the other methods."""
    if method in CLASSICAL and (config is None or isinstance(config, ClassicalConfig)):
        return
    if config is None:
        config = preset_for(method, generator, operator)
    if isinstance(config, GaussianConfig):
        gaussian.prior_for(generator, config.samples, config.components, progress=progress,
                           augment=gaussian.augmentation(config.augment))
    elif isinstance(config, ILOConfig):
        gaussian_prior(generator, operator, config, progress=progress)


__all__ = [
    "solve", "prepare", "csgm", "ilo", "Result", "StepInfo", "METHODS", "default_config", "preset_for", "Round",
    "CSGMConfig", "ILOConfig", "RoundConfig", "LossConfig", "Schedule", "with_budget", "PRESETS", "TaskPreset",
    "BM3DConfig", "BM3DUnavailable", "pulse_preset", "csgm_preset", "CSGM_FAMILY", "GENERATIVE", "CLASSICAL_METHODS",
    "ClassicalConfig", "classical", "DeviationConfig", "SelectionConfig", "self_tuned", "SolverConfig",
    "GaussianConfig", "gaussian_solve", "SOLVES",
]
