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
"""

from __future__ import annotations

import torch
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

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> State:
        device = generator.device if generator is not None else self.device
        z = torch.randn(n, self.nz, generator=generator, device=device)
        return {"z": z.to(self.device)}

    def stage(self, k: int, state: State) -> State:
        lo, hi = self._bounds[k]
        h = state["z"][:, :, None, None] if k == 0 else state["h"]
        for i in range(lo, hi):
            h = self.main[i](h)
        return {"image": h} if k == self.num_layers - 1 else {"h": h}
