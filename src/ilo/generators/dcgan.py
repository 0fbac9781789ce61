"""DCGAN generator (Radford et al. 2016, PyTorch-tutorial layout) as a layered generator.

The embedded default ``digiface-dcgan`` is this network at 64x64 with the weights of PyPI
``gan-face-generate==1.1.1`` (MIT), trained on DigiFace-1M synthetic faces.

States (per sample, for the 64x64 configuration ``nz=100, ngf=64``)::

    0: {"z": [100]}            latent, N(0, I)
    1: {"h": [512, 4, 4]}      after ConvT + BN + ReLU
    2: {"h": [256, 8, 8]}
    3: {"h": [128, 16, 16]}
    4: {"h": [64, 32, 32]}
    5: {"image": [3, 64, 64]}  after the last ConvT and tanh, in [-1, 1]

Fast path (``fold_batchnorm``, the default; eval mode only): each ``ConvTranspose2d`` +
``BatchNorm2d`` pair runs as one transposed convolution with the batch norm folded into its
weights and a bias (eval-mode batch norm is a per-channel affine map): same values within
float32 rounding. The folded weights are cached per layer and recomputed when a parameter or
running statistic changes (their version counters); recomputing them at every call instead
made a solve 1.4x slower. ``fold_batchnorm = False`` (or training mode) runs the reference
path, layer by layer (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayeredGenerator, State


class DCGANGenerator(LayeredGenerator):
    """DCGAN with ``log2(size) - 1`` transposed convolutions; state-dict keys ``main.N.*``.

    Args:
        nz: latent dimension.
        ngf: channel multiplier (the last hidden layer has ``ngf`` channels).
        nc: image channels.
        size: output resolution, a power of two >= 8.

    >>> g = DCGANGenerator(nz=8, ngf=4, size=16).eval()
    >>> s = g.sample_latent(2, torch.Generator().manual_seed(0))
    >>> g(s).shape
    torch.Size([2, 3, 16, 16])
    >>> torch.equal(g.tail(2)(g.head(2)(s)), g(s))
    True
    """
    family = "dcgan"  # key of the preset table (ilo.solvers.presets)

    #: eval mode runs ConvTranspose2d + BatchNorm2d as one folded transposed convolution
    fold_batchnorm: bool = True

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, size: int = 64, name: str = "dcgan"):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        n_up = size.bit_length() - 1 - 2  # stride-2 layers after the 4x4 projection
        chans = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]  # e.g. 512, 256, 128, 64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        ]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.nz, self.name = nz, name
        self.image_shape = (nc, size, size)
        self.num_layers = n_up + 1
        # index ranges of self.main belonging to each stage
        self._bounds = [(3 * i, 3 * i + 3) for i in range(n_up)] + [(3 * n_up, 3 * n_up + 2)]
        self._folded: dict[int, tuple[tuple, torch.Tensor, torch.Tensor]] = {}  # layer index -> (versions, W, b)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> State:
        device = generator.device if generator is not None else self.device
        z = torch.randn(n, self.nz, generator=generator, device=device)
        return {"z": z.to(self.device)}

    def trainable_keys(self, k: int) -> tuple[str, ...]:
        """``("z",)`` at layer 0, ``("h",)`` at the hidden layers (without running the network)."""
        return ("z",) if k == 0 else ("h",) if k < self.num_layers else ("image",)

    def stage(self, k: int, state: State) -> State:
        lo, hi = self._bounds[k]
        h = state["z"][:, :, None, None] if k == 0 else state["h"]
        fold = self.fold_batchnorm and not self.training
        i = lo
        while i < hi:
            m = self.main[i]
            bn = self.main[i + 1] if i + 1 < hi else None
            if fold and isinstance(m, nn.ConvTranspose2d) and m.groups == 1 and isinstance(bn, nn.BatchNorm2d):
                h = self._folded_conv(i, m, bn, h)
                i += 2
            else:
                h = m(h)
                i += 1
        return {"image": h} if k == self.num_layers - 1 else {"h": h}

    def _folded_conv(self, i: int, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d, h: torch.Tensor) -> torch.Tensor:
        """``bn(conv(h))`` with the folded weights of layer ``i``, cached while the parameters are unchanged."""
        tensors = [t for t in (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var) if t is not None]
        key = tuple((t.data_ptr(), t._version, t.device) for t in tensors)
        hit = self._folded.get(i)
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = self._folded[i] = (key, *fold_batchnorm(conv, bn))
        assert isinstance(conv.padding, tuple)  # ConvTranspose2d has no string padding
        return F.conv_transpose2d(h, hit[1], hit[2], conv.stride, conv.padding, conv.output_padding, 1, conv.dilation)


def fold_batchnorm(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of one transposed convolution equal to ``bn(conv(.))`` for an eval-mode
    ``bn``: with ``s = gamma / sqrt(running_var + eps)``, ``W[:, c] * s[c]`` (ConvTranspose2d
    weights are ``[C_in, C_out, kh, kw]``; ``conv.groups`` must be 1) and
    ``beta - running_mean * s (+ b * s)``."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("folding needs a BatchNorm with running statistics")
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # [C_out]
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return (conv.weight * scale.view(1, -1, 1, 1)).contiguous(), bias
