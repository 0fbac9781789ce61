"""Image-quality metrics, per sample, on the ``[0, 1]`` intensity scale.

Inputs are ``[B, C, H, W]`` in ``[-1, 1]`` (the library's convention); they are mapped to
``[0, 1]`` first, so ``true_mse`` is the mean squared error of 0-1 intensities and
``psnr = 10 log10(1 / mse)`` (peak 1).

>>> import torch
>>> x = torch.zeros(1, 3, 8, 8)
>>> round(float(mse(x, x + 0.2)), 6)  # 0.2 on [-1, 1] is 0.1 on [0, 1]
0.01
>>> round(float(psnr(x, x + 0.2)), 3)
20.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _to01(x: torch.Tensor) -> torch.Tensor:
    return (x.float().clamp(-1, 1) + 1) / 2


def mse(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error on the [0, 1] scale: ``[B]``."""
    return (_to01(x) - _to01(truth)).flatten(1).pow(2).mean(1)


def psnr(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB (peak 1 on the [0, 1] scale): ``[B]``."""
    return 10 * torch.log10(1.0 / mse(x, truth).clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int, device) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, truth: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, K1 = 0.01,
    K2 = 0.03, valid region), averaged over channels: ``[B]``."""
    a, b = _to01(x), _to01(truth)
    C = a.shape[1]
    win = min(window, a.shape[-1], a.shape[-2])
    w = _gaussian_window(win, sigma, C, a.device)
    mu_a, mu_b = F.conv2d(a, w, groups=C), F.conv2d(b, w, groups=C)
    saa = F.conv2d(a * a, w, groups=C) - mu_a**2
    sbb = F.conv2d(b * b, w, groups=C) - mu_b**2
    sab = F.conv2d(a * b, w, groups=C) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.flatten(1).mean(1)
