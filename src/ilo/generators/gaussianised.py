"""StyleGAN-2 with the paper's Gaussianised latent: state 0 holds ``v`` instead of ``w+``.

``w = LeakyReLU_0.2(std * v + mean)`` per w vector (PULSE, and section 4.1 of the ILO paper):
optimising ``v`` (whose prior is close to N(0, I)) keeps the w vectors on the distribution the
mapping network produces, and PULSE's sphere constraint and geodesic regulariser apply to ``v``.

    state 0: {"v": [B, num_ws, w_dim], "noise0", ...}     (instead of "ws")
    states k >= 1 are the wrapped generator's, so head/tail splits stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayeredGenerator, State
from .stylegan2 import StyleGAN2Generator
from .stylegan2_ops import LRELU_SLOPE


class GaussianisedLatent(nn.Module):
    """``w = LeakyReLU_0.2(std * v + mean)`` with per-dimension ``mean``, ``std`` ``[w_dim]``.

    The parameterisation of the ILO paper (from PULSE): the mapping network's output, passed
    through the inverse leaky ReLU, is close to Gaussian; optimising ``v ~ N(0, I)`` in that
    space keeps w on the learnt distribution. Fitted by :func:`gaussianised`.
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def to_w(self, v: torch.Tensor) -> torch.Tensor:
        """``v [..., w_dim]`` -> ``w [..., w_dim]``."""
        return F.leaky_relu(v * self.std + self.mean, LRELU_SLOPE)

    def from_w(self, w: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_w`."""
        return (torch.where(w >= 0, w, w / LRELU_SLOPE) - self.mean) / self.std

    forward = to_w


@torch.no_grad()
def gaussianised(g: StyleGAN2Generator, n: int = 10_000, generator: torch.Generator | None = None, batch_size: int = 2_000) -> GaussianisedLatent:
    """Fit the Gaussianised parameterisation from ``n`` mapped samples ``w = mapping(z)``.

    ``mean``/``std`` are the per-dimension moments of ``LeakyReLU_5(w)`` (the inverse of
    LeakyReLU_0.2), as in the paper and PULSE.
    """
    if generator is None:
        generator = torch.Generator(device=g.device.type).manual_seed(0)
    vs = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, g.z_dim, generator=generator, device=generator.device).to(g.device)
        w = g.mapping(z, broadcast=False)
        vs.append(torch.where(w >= 0, w, w / LRELU_SLOPE))
    v = torch.cat(vs)
    return GaussianisedLatent(v.mean(0), v.std(0))


class GaussianisedGenerator(LayeredGenerator):
    """Wrap a :class:`StyleGAN2Generator` so that its input latent is the Gaussianised ``v``.

    Args:
        base: the StyleGAN-2 generator.
        latent: a fitted :class:`GaussianisedLatent` (default: fitted from ``n_fit`` samples).
    """
    family = "stylegan2"  # key of the preset table (ilo.solvers.presets)

    def __init__(self, base: StyleGAN2Generator, latent: GaussianisedLatent | None = None, n_fit: int = 10_000):
        super().__init__()
        self.base = base
        self.latent = latent if latent is not None else gaussianised(base, n=n_fit)
        self.name = f"{base.name}-gaussianised"
        self.image_shape, self.num_layers = base.image_shape, base.num_layers

    def noise_keys(self, start: int = 0) -> tuple[str, ...]:
        return self.base.noise_keys(start)

    def sample_latent(self, n: int, generator=None) -> State:
        s = dict(self.base.sample_latent(n, generator))
        s["v"] = self.latent.from_w(s.pop("ws"))
        return s

    def latent_state(self, z: torch.Tensor) -> State:
        s = dict(self.base.latent_state(z))
        s["v"] = self.latent.from_w(s.pop("ws"))
        return s

    def trainable_keys(self, k: int) -> tuple[str, ...]:
        keys = self.base.trainable_keys(k)
        return tuple("v" if key == "ws" else key for key in keys) if k == 0 else keys

    def stage(self, k: int, state: State) -> State:
        if k == 0:
            rest = {key: val for key, val in state.items() if key != "v"}
            rest["ws"] = self.latent.to_w(state["v"])
            state = rest
        return self.base.stage(k, state)
