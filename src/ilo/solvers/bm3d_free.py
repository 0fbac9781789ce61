"""BM3D and its colour version CBM3D, written for this project (free licence, plain PyTorch).

Block-matching and 3D collaborative filtering: Dabov, Foi, Katkovnik & Egiazarian, "Image
denoising by sparse 3D transform-domain collaborative filtering", IEEE TIP 16(8), 2007; colour
(CBM3D): the same authors, "Color image denoising via sparse 3D collaborative filtering with
grouping constraint in luminance-chrominance space", ICIP 2007. Written from the papers'
description (and Lebrun's analysis, IPOL 2012), not from any implementation.

Two passes over reference blocks on a grid (every ``step`` pixels, the last row and column
always included, so every pixel is covered):

1. **Hard thresholding.** For each reference block, the (at most ``group``) most similar
   blocks in a ``window x window`` search window (shifted to stay inside the image) whose mean
   squared distance to it is below ``tau`` form a group (its size rounded down to a power of 2);
   the group's 3D spectrum (orthonormal 2D DCT of each block, then 1D Haar along the group) is
   hard-thresholded at ``lambda3d * sigma``; the inverse gives one estimate per block, weighted
   by ``1 / (sigma² N)`` (``N`` = kept coefficients) times a Kaiser window (``beta``) and
   averaged per pixel (aggregation).
2. **Wiener filtering.** The groups are found again on the basic estimate of step 1 (threshold
   ``tau`` of the Wiener pass); the noisy group's spectrum is shrunk by the empirical Wiener
   weights ``W = B² / (B² + sigma²)`` of the basic estimate's spectrum ``B``; block weights
   ``1 / (sigma² ||W||²)``.

The group mean (the DC coefficient of the 3D spectrum) is never shrunk, so the filter commutes
with adding a constant (on 0-255 images it is far above any threshold anyway). Colour images
(3 channels) are filtered in an orthonormal opponent colour space (luminance
``(R+G+B)/sqrt 3``, chrominances ``(R-B)/sqrt 2``, ``(R-2G+B)/sqrt 6``; white noise of the same
sigma in each channel): the groups are found on the luminance only and every channel is
filtered with the same groups (CBM3D). Images of other channel counts: the groups from the
channel mean, each channel filtered with them. The 2D transform is the DCT in both passes
(the paper's step 1 uses a biorthogonal spline wavelet; Lebrun reports the DCT as close).

Parameters (:data:`HARD`, :data:`WIENER`) are the paper's "normal profile" (0-255 scale)
except the block sides, 4 and 6 pixels instead of 8 and 8 (:data:`PAPER`), which denoise the
64-pixel tuning faces better at every level (and 128-pixel ones at sigma255 = 25); the paper's
high-noise profile (12- and 11-pixel blocks, distances between thresholded 2D spectra above
sigma255 = 40) did worse on them at sigma255 = 50 and is left out (docs/CLASSICAL.md). Images
here are ``[B, C, H, W]`` in any range, ``sigma`` in their units (``[-1, 1]`` images:
``sigma = sigma255 * 2 / 255``). Memory stays bounded for large images: the reference blocks
are processed a square tile at a time (at most :data:`CHUNK` block distances at once).

>>> g = torch.Generator().manual_seed(0)
>>> x = torch.linspace(-0.5, 0.5, 32).expand(1, 3, 32, 32)
>>> y = x + 0.2 * torch.randn(x.shape, generator=g)
>>> out = bm3d_free(y, 0.2)
>>> out.shape, bool((out - x).pow(2).mean() < (y - x).pow(2).mean() / 10)
(torch.Size([1, 3, 32, 32]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class Pass:
    """Parameters of one BM3D pass (0-255 scale).

    Attributes:
        block: side of the square blocks (N1).
        step: spacing of the reference blocks (N_step).
        group: most blocks per group (N2, a power of 2).
        window: side of the search window, in block positions (N_S).
        tau: largest mean squared distance per pixel of a block to the reference (tau_match).
        lambda3d: hard threshold (times sigma) of the 3D spectrum (step 1 only).
        beta: Kaiser window parameter of the aggregation.
    """

    block: int
    step: int
    group: int
    window: int
    tau: float
    lambda3d: float = 2.7
    beta: float = 2.0


#: the hard-thresholding pass: the paper's normal profile with 4-pixel blocks (tuning faces)
HARD = Pass(4, 3, 16, 39, 2500.0)
#: the Wiener pass: the paper's normal profile with 6-pixel blocks (tuning faces)
WIENER = Pass(6, 3, 32, 39, 400.0)
#: the paper's normal profile (sigma255 <= 40): 8-pixel blocks in both passes
PAPER = (Pass(8, 3, 16, 39, 2500.0), Pass(8, 3, 32, 39, 400.0))
#: most block distances computed at once while matching (float64: 32 MB)
CHUNK = 1 << 22

#: orthonormal opponent colour transform, rows: luminance, two chrominances
OPPONENT = torch.tensor([[1 / math.sqrt(3)] * 3,
                         [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
                         [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)]], dtype=torch.float64)


@lru_cache(maxsize=16)
def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``[n, n]`` (row ``k``: frequency ``k``).

    >>> d = dct_matrix(5)
    >>> bool(torch.allclose(d @ d.T, torch.eye(5, dtype=d.dtype)))
    True
    """
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return torch.from_numpy(m).double()


@lru_cache(maxsize=16)
def haar_matrix(n: int) -> torch.Tensor:
    """The orthonormal Haar matrix ``[n, n]`` for ``n`` a power of 2 (row 0: the mean).

    >>> (haar_matrix(4) * 2).round().tolist()[:2]
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]]
    """
    if n & (n - 1) or n < 1:
        raise ValueError(f"a Haar matrix needs a power of 2, got {n}")
    m = np.ones((1, 1))
    while m.shape[0] < n:
        m = np.vstack([np.kron(m, [1.0, 1.0]), np.kron(np.eye(m.shape[0]), [1.0, -1.0])]) / np.sqrt(2.0)
    return torch.from_numpy(m).double()


@lru_cache(maxsize=16)
def _kaiser(n: int, beta: float) -> torch.Tensor:
    """The 2D Kaiser window ``[n * n]`` (outer product, flattened row-major)."""
    k = np.kaiser(n, beta)
    return torch.from_numpy(np.outer(k, k).ravel()).double()


def _positions(n: int, step: int) -> torch.Tensor:
    """Reference positions ``0, step, ...`` among ``n`` block positions, ``n - 1`` included."""
    return torch.unique(torch.cat([torch.arange(0, n, step), torch.tensor([n - 1])]))


def _floor_pow2(n: torch.Tensor) -> torch.Tensor:
    return torch.pow(2, torch.floor(torch.log2(n.float())).long())


def _block_offsets(n: int, width: int) -> torch.Tensor:
    """Flat offsets ``[n * n]`` of an ``n x n`` block's pixels from its top-left pixel."""
    return (torch.arange(n)[:, None] * width + torch.arange(n)[None, :]).flatten()


def _windows(refs: torch.Tensor, nb: int, p: Pass) -> tuple[torch.Tensor, int]:
    """First block position of each reference's search window (centred, shifted inside ``nb``
    positions) and the window's length."""
    w = min(p.window, nb)
    return (refs - p.window // 2).clamp(0, nb - w), w


def _match(guide: torch.Tensor, p: Pass, ry: torch.Tensor, rx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Groups of the reference blocks at rows ``ry [Ry]`` x columns ``rx [Rx]`` of the matching
    image ``guide [H, W]``: the top-left pixel index of each group's blocks ``[Ry * Rx, K]`` (the
    reference first, the most similar next) and the group sizes ``[Ry * Rx]`` (powers of 2)."""
    H, W = guide.shape
    n = p.block
    (sy, wy), (sx, wx) = _windows(ry, H - n + 1, p), _windows(rx, W - n + 1, p)
    by = torch.arange(int(sy.min()), int(sy.max()) + wy)  # candidate block rows and columns
    bx = torch.arange(int(sx.min()), int(sx.max()) + wx)
    cy, cx = by.repeat_interleave(len(bx)), bx.repeat(len(by))  # [Nc]
    feats = guide.reshape(-1)[(cy * W + cx)[:, None] + _block_offsets(n, W)]  # [Nc, n * n]
    ref = ((ry - by[0])[:, None] * len(bx) + (rx - bx[0])[None, :]).flatten()  # among the candidates, [R]
    fr = feats[ref]
    d = (fr.pow(2).sum(1, keepdim=True) + feats.pow(2).sum(1)[None] - 2 * fr @ feats.T).clamp_min(0) / (n * n)
    rsy, rsx = sy.repeat_interleave(len(rx))[:, None], sx.repeat(len(ry))[:, None]
    inside = (cy >= rsy) & (cy < rsy + wy) & (cx >= rsx) & (cx < rsx + wx)
    d = d.masked_fill(~inside, float("inf"))
    d[torch.arange(len(ref)), ref] = -1.0  # the reference heads its group
    dist, idx = torch.topk(d, min(p.group, wy * wx), dim=1, largest=False)  # sorted, [R, K]
    size = _floor_pow2((dist <= p.tau).sum(1).clamp_min(1))
    return cy[idx] * W + cx[idx], size


def _filter(z: torch.Tensor, pilot: torch.Tensor | None, tops: torch.Tensor, size: torch.Tensor, p: Pass,
            sigma: float, num: torch.Tensor, den: torch.Tensor, width: int) -> None:
    """Collaborative filtering of the groups (``tops [R, K]``, sizes ``[R]``) of ``z [C, H * W]``
    and aggregation into ``num``, ``den`` ``[C, H * W]``: hard thresholding, or (``pilot``, the
    basic estimate) empirical Wiener shrinkage."""
    n = p.block
    offs = _block_offsets(n, width)
    d2 = torch.kron(dct_matrix(n), dct_matrix(n))  # [n², n²]
    kaiser = _kaiser(n, p.beta)
    for s in torch.unique(size).tolist():
        rows = size == s
        pix = tops[rows, :s, None] + offs  # [Rs, s, n²]
        haar = haar_matrix(s)
        spectrum = lambda img: haar @ (img[:, pix].transpose(0, 1) @ d2.T)  # [Rs, C, s, n²]
        t = spectrum(z)
        if pilot is None:
            keep = t.abs() > p.lambda3d * sigma
            keep[..., 0, 0] = True  # the group mean
            t = t * keep
            weight = 1.0 / (sigma**2 * keep.sum((2, 3)))  # [Rs, C]
        else:
            b2 = spectrum(pilot).pow(2)
            shrink = b2 / (b2 + sigma**2)
            shrink[..., 0, 0] = 1.0
            t = t * shrink
            weight = 1.0 / (sigma**2 * shrink.pow(2).sum((2, 3)))
        est = haar.T @ t @ d2  # [Rs, C, s, n²]
        w = weight[:, :, None, None] * kaiser  # [Rs, C, 1, n²]
        flat = pix.flatten()
        num.index_add_(1, flat, (w * est).transpose(0, 1).reshape(z.shape[0], -1))
        den.index_add_(1, flat, w.expand_as(est).transpose(0, 1).reshape(z.shape[0], -1))


def _tile(nb: int, refs: int, p: Pass) -> int:
    """References per side of a square tile whose block distances fit in :data:`CHUNK`."""
    side = lambda t: min(nb, (t - 1) * p.step + min(p.window, nb))  # candidate positions per side
    t = 1
    while t < refs and (side(t + 1) * (t + 1)) ** 2 <= CHUNK:
        t += 1
    return t


def _pass(z: torch.Tensor, guide: torch.Tensor, pilot: torch.Tensor | None, p: Pass, sigma: float) -> torch.Tensor:
    """One BM3D pass over ``z [C, H, W]`` with groups matched on ``guide [H, W]``; the
    references a tile at a time (:func:`_tile`)."""
    C, H, W = z.shape
    p = replace(p, block=min(p.block, H, W))
    refs_y, refs_x = _positions(H - p.block + 1, p.step), _positions(W - p.block + 1, p.step)
    t = _tile(max(H, W) - p.block + 1, max(len(refs_y), len(refs_x)), p)
    num, den = z.new_zeros(C, H * W), z.new_zeros(C, H * W)
    zf, pf = z.reshape(C, -1), pilot.reshape(C, -1) if pilot is not None else None
    for i in range(0, len(refs_y), t):
        for j in range(0, len(refs_x), t):
            tops, size = _match(guide, p, refs_y[i:i + t], refs_x[j:j + t])
            _filter(zf, pf, tops, size, p, sigma, num, den, W)
    return (num / den).view(C, H, W)


def bm3d_free(y: torch.Tensor, sigma: float | torch.Tensor, hard: Pass = HARD, wiener: Pass = WIENER) -> torch.Tensor:
    """BM3D (one channel) or CBM3D (three) denoising of ``y [B, C, H, W]`` with white Gaussian
    noise of std ``sigma`` (a float or one per image ``[B]``, in ``y``'s units; images in
    ``[-1, 1]``: ``sigma255 * 2 / 255``). Returns ``[B, C, H, W]`` (not clamped), ``y`` itself
    where ``sigma`` is 0. See the module docstring for the algorithm."""
    if y.ndim != 4:
        raise ValueError(f"bm3d_free needs images [B, C, H, W], got shape {list(y.shape)}")
    sig = torch.as_tensor(sigma, dtype=torch.float64).flatten()
    if sig.numel() not in (1, y.shape[0]):
        raise ValueError(f"sigma must be one number or one per image ({y.shape[0]}), got {sig.numel()}")
    sig = sig.expand(y.shape[0])
    if not bool(torch.isfinite(sig).all() and (sig >= 0).all()):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    scale = 127.5  # [-1, 1] units -> the paper's 0-255 scale (its thresholds are absolute)
    out = []
    for img, s in zip(y.detach().cpu().double(), sig.tolist()):
        if s == 0:
            out.append(img)
            continue
        s255 = s * scale
        C = img.shape[0]
        colour = C == 3
        z = torch.einsum("ij,jhw->ihw", OPPONENT, img) * scale if colour else img * scale
        lum = (lambda t: t[0] / math.sqrt(3)) if colour else (lambda t: t.mean(0))  # the grouping luminance
        basic = _pass(z, lum(z), None, hard, s255)
        final = _pass(z, lum(basic), basic, wiener, s255)
        out.append((torch.einsum("ji,jhw->ihw", OPPONENT, final) if colour else final) / scale)
    return torch.stack(out).to(y.dtype).to(y.device)


__all__ = ["bm3d_free", "Pass", "HARD", "WIENER", "PAPER", "dct_matrix", "haar_matrix"]
