"""Test images shared by the selection tests: two faces the tiny generator draws, and two smooth
random images out of its reach."""

import torch
import torch.nn.functional as F


def in_range(G) -> torch.Tensor:
    """Two images drawn from ``G`` (latent seed 7)."""
    return G(G.sample_latent(2, torch.Generator().manual_seed(7))).detach()


def far(size: int = 16) -> torch.Tensor:
    """Smooth random images (bicubic upsampling of 4x4 noise to ``size``): easy for the classical
    methods, out of reach of the tiny generator's 8 latent entries. ``[2, 3, size, size]``."""
    u = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return F.interpolate(u, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
