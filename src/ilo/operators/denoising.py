"""Denoising: the identity operator with clipped Gaussian noise."""

from __future__ import annotations

import torch

from .base import GaussianNoise, Identity


class Denoising(Identity):
    """``y = clip(x + sigma * n, -1, 1)``, ``n ~ N(0, I)``: the denoising task of the paper.

    The paper states the noise level on the 0-255 scale (σ from 5 to 256) and clips the noisy
    image to the valid range; images here live in ``[-1, 1]``, so the noise std is
    ``sigma255 * 2 / 255`` and the clip range ``(-1, 1)``. ``A`` is the identity (its own
    adjoint). Stochastic Noise Addition is the solver's business, not the operator's: it
    reads :attr:`noise` ``.sigma``.

    Args:
        input_shape: per-sample image shape ``(C, H, W)``.
        sigma255: noise standard deviation on the 0-255 scale (>= 0).

    Example:
        >>> op = Denoising((3, 8, 8), sigma255=25.5)
        >>> op.noise.sigma
        0.2
        >>> y = op(torch.zeros(1, 3, 8, 8), generator=torch.Generator().manual_seed(0))
        >>> bool(y.abs().max() <= 1)
        True
    """

    task = "denoise"
    noisy = True
    level_name = "noise sigma (0-255)"
    perceptual_target = "observation"
    options = ("sigma",)
    default_level = 25.0
    typical_seconds = 22.0
    local = True
    classical_method = "nlmeans"

    def __init__(self, input_shape: tuple[int, int, int], sigma255: float):
        if isinstance(sigma255, bool) or not float(sigma255) >= 0:
            raise ValueError(f"sigma255 must be >= 0, got {sigma255!r}")
        self.sigma255 = float(sigma255)
        super().__init__(input_shape, GaussianNoise(self.sigma255 * 2.0 / 255.0, clip=(-1.0, 1.0)))

    @classmethod
    def from_options(cls, shape, generator=None, *, sigma=None) -> Denoising:
        return cls(shape, cls.check_options({"sigma": sigma})["sigma"])

    def crop(self, box):
        """The same noise on the region ``box``."""
        x0, y0, x1, y1 = box
        return Denoising((self.input_shape[0], y1 - y0, x1 - x0), self.sigma255)

    @classmethod
    def check_level(cls, level, size=None) -> None:
        if isinstance(level, bool) or not float(level) >= 0:
            raise ValueError(f"noise sigma (0-255 scale) must be >= 0, got {level:g}")

    @classmethod
    def sweep_levels(cls, size, quick=False):
        return [25.0, 100.0] if quick else [5.0, 10.0, 25.0, 50.0, 100.0, 256.0]

    @classmethod
    def level_label(cls, level):
        return f"σ={level:g}"

    @property
    def level(self) -> float:
        """The noise sigma on the 0-255 scale."""
        return self.sigma255

    def describe(self) -> str:
        return f"denoising, sigma = {self.sigma255:g} / 255"

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        """The noisy image, clipped to ``[-1, 1]``."""
        return y.clamp(-1.0, 1.0)

    def config(self) -> dict:
        cfg = super().config()
        cfg["sigma255"] = self.sigma255
        return cfg

    def extra_repr(self) -> str:
        return f"sigma255={self.sigma255:g}"
