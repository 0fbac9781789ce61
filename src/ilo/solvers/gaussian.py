"""A Gaussian prior fitted to a generator's outputs, and its linear MMSE inpainting and super-resolution.

The generator's images, each shifted and zoomed a little at random and taken with its mirror
image (:data:`AUGMENT`: a real photograph's crop is not framed like the generator's images) and flattened to
``D = C * H * W`` values, are modelled as
``x = mean + V c + r`` with ``c ~ N(0, diag(variances))`` over the ``k`` leading principal
components ``V [D, k]`` of ``samples`` generated images (a randomised SVD) and a remainder
``r`` that carries what the components leave out (:data:`REMAINDERS`):

* **harmonic** (the default): ``r ~ N(0, γ (L + εI)⁻¹)`` per channel, ``L`` the pixel grid's
  graph Laplacian: departures from the generator's images that are smooth, the assumption of
  harmonic interpolation. The posterior mean is the components' coefficients that leave the
  smoothest remainder on the observed pixels, plus that remainder's harmonic extension:
  with no components it *is* harmonic inpainting around the prior's mean, with no remainder
  the components' least-squares fit. γ = :data:`HARMONIC_SCALE`.
* **isotropic**: ``r ~ N(0, γ · residual · I)``, ``residual`` the variance the components
  leave out per value (γ = :data:`RESIDUAL_SCALE` = 4, best of 1-32 on the real tuning faces
  at 5-30 % observed; session 11). Its inpainting is closed-form by Woodbury
  (:func:`gaussian_inpaint`):

      w  = (y_O - m_O - V_O (βΛ⁻¹ + V_Oᵀ V_O)⁻¹ V_Oᵀ (y_O - m_O)) / β,   β = γ · residual + s²
      x̂  = m + V Λ V_Oᵀ w + γ · residual · P_Oᵀ w

The prior is centred at its mean ``m`` or at any image (``base``: a stage of ILO, whose
residual the prior's covariance then fills). :func:`posterior_mean` takes inpainting (the
harmonic remainder: one sparse banded factorisation per mask, one ``k x k`` Cholesky), and
super-resolution and compressed sensing with few measurements (``m + Σ Aᵀ (A Σ Aᵀ + s²I)⁻¹ (y -
A m)``, the remainder's ``(L + εI)⁻¹`` applied by the DCT that diagonalises ``L``).

On the 15 real tuning faces the harmonic remainder alone, fitted to augmented images, beats
the best classical method at 5 % / 10 % random inpainting (+0.65 / +0.56 dB over biharmonic), a
central box (+0.56 over harmonic), super-resolution x4 / x8 / x16 (+0.22 / +0.42 / +0.47 over TV
or bicubic), the isotropic remainder by 0.2-0.3 dB at 5-10 % and the fit to the images as
they are by 0.1-0.4 dB (docs/BENCHMARKS.md "The Gaussian prior with a smooth remainder (session
12)", "The prior from augmented images (session 13)"); at 30 % it is level with biharmonic.
On faces the generator drew, the augmented fit is 0.35-1.6 dB below the plain one, and on real
faces aligned to the generator's template the plain fit gains 0.1-1.0 dB over it: the pipeline
fits the plain one where a problem is framed like the generator's images
(:func:`ilo.pipeline.for_framing`; docs/BENCHMARKS.md, "Real faces aligned to the generator's
template (session 15)"). It is a linear
estimator of the generator's second-order statistics, no more: +1 dB over the classical
methods it is not. The self-tuning uses it for sparse random masks, boxes, super-resolution and
compressed sensing (:func:`~ilo.solvers.selection.wants_prior`; for compressed sensing with the
isotropic remainder, +0.70 / +0.50 dB for the self-tuned ILO at 5 / 10 % on the real tuning
faces, session 23), alone and on each stage's residual.

Fitting costs ``samples / 4`` generator forwards (each image in :data:`VIEWS` shifts and zooms,
each with its mirror image) and two randomised SVDs of half the values (about 15 s and 0.8 GB for
the digiface DCGAN at 16 384 samples on 2 idle cores; the plain fit of the images as they are:
``samples`` forwards and one SVD, about 1 min and 1 GB), once per generator: :func:`prior_for` keeps it in
memory and under :func:`ilo.generators.hub.cache_dir` (``gaussian/``), keyed by a hash of the
generator's weights, loaded with ``weights_only=True`` and checked; a bad file is refitted.

>>> from ilo.generators import DCGANGenerator
>>> from ilo.operators import Inpainting
>>> g = DCGANGenerator(nz=8, ngf=4, size=16).eval().requires_grad_(False)
>>> prior = fit_prior(g, samples=256, components=32)
>>> prior.basis.shape, prior.variances.shape, bool(prior.residual > 0)
(torch.Size([768, 32]), torch.Size([32]), True)
>>> op = Inpainting.random((3, 16, 16), observed=0.3, generator=torch.Generator().manual_seed(0))
>>> x = g(g.sample_latent(2, torch.Generator().manual_seed(1)))
>>> xh = gaussian_inpaint(op(x), op, prior)
>>> xh.shape, bool(((xh - x) * op.mask).abs().max() < 0.05)  # the observed pixels are (nearly) kept
(torch.Size([2, 3, 16, 16]), True)
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import weakref
from dataclasses import dataclass, replace
from typing import cast
from pathlib import Path

import torch
import torch.nn.functional as F

from ..generators.base import LayeredGenerator
from ..operators import CompressedSensing, Inpainting, SuperResolution
from ..operators.base import Operator
from ..runtime import all_cores
from .classical import grid_laplacian
from .optim import Timer
from .result import Result

#: the fit's defaults, generated images and principal components; ``$ILO_GAUSSIAN_SAMPLES`` and
#: ``$ILO_GAUSSIAN_COMPONENTS`` override them (the test suite's small, fast priors, in every process)
def _env_count(name: str, default: int) -> int:
    """An integer >= 2 from the environment variable ``name``; ``default`` if unset or not one."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 1 else default


SAMPLES = _env_count("ILO_GAUSSIAN_SAMPLES", 16384)
COMPONENTS = _env_count("ILO_GAUSSIAN_COMPONENTS", 1024)
#: the randomised SVD's power iterations: 1 and 3 give the prior alone the same PSNR to 0.015 dB on
#: the real tuning faces and the generated ones (docs/PERFORMANCE.md §19), 1 is 7-8 s cheaper
POWER_ITERATIONS = 1
#: each half of :func:`mirror_pca` is computed to this share of the components first (about half
#: of generated faces' leading components are mirror-symmetric): the same prior to 0.002 dB on the
#: tuning faces as computing both to all of them, for half the SVD's time (docs/PERFORMANCE.md §19)
SKETCH_SHARE = 0.65
#: an augmented fit takes each generated image in this many random shifts and zooms (each with its
#: mirror image): 4 096 faces in 16 384 samples give the prior alone the PSNR of 8 192 or 16 384
#: faces on the tuning faces, for half or a quarter of the generator's work (docs/PERFORMANCE.md §19)
VIEWS = 2
#: the fit's procedure, in the cache files' names: "v2" since session 17 (mirror pairs,
#: :data:`VIEWS`, :data:`SKETCH_SHARE`, :data:`POWER_ITERATIONS`); a file of another procedure is not read
FIT_VERSION = "v2"
#: γ, the remainder's variance scale (module docstring)
RESIDUAL_SCALE = 4.0


@dataclass(frozen=True)
class Augment:
    """Random changes to each generated image before the fit, so that the prior also covers faces
    framed a little differently from the generator's (a real photograph's crop is not aligned
    like its training images): a horizontal flip (half the images), a shift of up to ``shift`` of
    the side in each direction and a zoom by a factor log-uniform in ``zoom`` (above 1: larger), resampled
    bilinearly with reflected borders. ``Augment(flip=False, shift=0, zoom=(1, 1))`` changes
    nothing."""

    flip: bool = True
    shift: float = 0.08
    zoom: tuple[float, float] = (0.85, 1.15)

    def __post_init__(self):
        if not (0 <= self.shift < 0.5 and 0 < self.zoom[0] <= self.zoom[1]):
            raise ValueError(f"invalid augmentation: shift {self.shift} (0 to 0.5), zoom {self.zoom} (low <= high)")

    @property
    def identity(self) -> bool:
        return not self.flip and self.shift == 0 and self.zoom == (1, 1)

    @property
    def tag(self) -> str:
        """A short name for cache files: ``plain`` or e.g. ``f-s0.08-z0.85-1.15``."""
        if self.identity:
            return "plain"
        return f"{'f-' if self.flip else ''}s{self.shift:g}-z{self.zoom[0]:g}-{self.zoom[1]:g}"

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``x [N, C, H, W]`` changed at random (``gen``), same shape."""
        if self.identity:
            return x
        n = x.shape[0]
        lo, hi = math.log(self.zoom[0]), math.log(self.zoom[1])
        inv = torch.exp(-torch.empty(n).uniform_(lo, hi, generator=gen))  # output -> input coordinates
        shift = torch.empty(n, 2).uniform_(-2 * self.shift, 2 * self.shift, generator=gen)  # [-1, 1] units
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = inv * sign, inv, shift
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def to_dict(self) -> dict:
        return {"flip": self.flip, "shift": self.shift, "zoom": list(self.zoom)}


#: the fit's augmentation: flips, shifts of up to 8 % and zooms of 0.85-1.15 gain 0.1-0.4 dB
#: on the real tuning faces over the generator's images as they are (docs/BENCHMARKS.md,
#: "The prior from augmented images (session 13)")
AUGMENT = Augment()
#: no augmentation: the generator's images as they are (the prior of sessions 11-12)
PLAIN = Augment(flip=False, shift=0.0, zoom=(1.0, 1.0))


def augmentation(augment: bool) -> Augment:
    """The fit's augmentation: :data:`AUGMENT` or, for ``False``, :data:`PLAIN`."""
    return AUGMENT if augment else PLAIN


@dataclass(frozen=True)
class GaussianPrior:
    """``mean [D]``, ``basis [D, k]`` (orthonormal columns), ``variances [k]`` (descending),
    ``residual`` (the remainder's variance per value) and the image ``shape (C, H, W)``."""

    mean: torch.Tensor
    basis: torch.Tensor
    variances: torch.Tensor
    residual: float
    shape: tuple[int, int, int]

    def check(self) -> GaussianPrior:
        """Self, or ValueError naming what does not fit together."""
        D = self.shape[0] * self.shape[1] * self.shape[2]
        k = self.variances.shape[0] if self.variances.ndim == 1 else -1
        if self.mean.shape != (D,) or self.basis.shape != (D, k) or k < 1:
            raise ValueError(f"Gaussian prior shapes do not fit {self.shape}: mean {tuple(self.mean.shape)}, "
                             f"basis {tuple(self.basis.shape)}, variances {tuple(self.variances.shape)}")
        finite = all(bool(t.isfinite().all()) for t in (self.mean, self.basis, self.variances))
        if not finite or not self.residual > 0 or bool((self.variances <= 0).any()):
            raise ValueError("Gaussian prior has non-finite values or non-positive variances")
        return self


def _generated(G: LayeredGenerator, count: int, gen: torch.Generator, batch: int, augment: Augment,
               bar, views: int = 1) -> torch.Tensor:
    """``count`` images of ``G`` (latents drawn from ``gen``), each batch changed by ``augment``
    ``views`` times: ``[count * views, C, H, W]`` float32 on the CPU."""
    parts: list[torch.Tensor] = []
    with torch.no_grad():
        for i in range(0, count, batch):
            images = G(G.sample_latent(min(batch, count - i), gen)).float().cpu()
            parts.extend(augment(images, gen) for _ in range(views))
            bar.update(images.shape[0])
    return torch.cat(parts)


def _pca(X: torch.Tensor, components: int, power_iterations: int = POWER_ITERATIONS
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``components`` leading right singular vectors ``[D, k]`` and squared singular values of
    the centred rows ``X [N, D]`` (a randomised SVD; seeded by the caller)."""
    k = min(components, X.shape[0] - 1, X.shape[1])
    _, S, V = torch.svd_lowrank(X, q=k, niter=power_iterations)
    return V, S.square()


def mirror_pca(X: torch.Tensor, components: int, power_iterations: int = POWER_ITERATIONS,
               share: float = SKETCH_SHARE) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The principal components of the centred images ``X [n, C, H, W]`` together with their mirror
    images (``2n`` rows, never formed): ``(basis [D, k], squared singular values [k], squared
    norm of all 2n rows)``, the values descending.

    Such a set's covariance commutes with the mirror, so each component is either mirror-symmetric
    or antisymmetric. Both kinds live in half the values (a symmetric image is fixed by its left
    half and its middle column, an antisymmetric one by its left half), and the two SVDs of
    ``n x D/2`` cost half the one of ``2n x D``: with ``l``, ``r`` the left half and the mirrored
    right half and ``c`` the middle column (odd widths), the symmetric coordinates are
    ``((l + r)/√2, c)`` and the antisymmetric ones ``(l - r)/√2``; the squared singular values
    of the ``2n`` rows are twice theirs. Each half is computed to ``share`` of ``components``
    (rounded up); a half whose every computed component is among the ``components`` kept is
    computed again to ``components``, so the result is the leading ``components`` of both
    whatever their split (on generated faces about half and half)."""
    C, H, W = X.shape[1:]
    w = W // 2
    left, right, mid = X[..., :w], X[..., W - w:].flip(-1), X[..., w:W - w]
    sym = torch.cat([((left + right) / math.sqrt(2)).flatten(1), mid.flatten(1)], 1)  # [n, C*H*w + C*H*(W-2w)]
    anti = ((left - right) / math.sqrt(2)).flatten(1)  # [n, C*H*w]
    norm = 2 * float(sym.square().sum() + anti.square().sum())
    halves = [(c, sign) for c, sign in ((sym, 1.0), (anti, -1.0)) if c.shape[1] > 0]  # a width of 1: no anti
    most = [min(components, c.shape[0] - 1, c.shape[1]) for c, _ in halves]
    pcs = [_pca(c, min(k, math.ceil(share * components)), power_iterations) for (c, _), k in zip(halves, most)]
    value = torch.cat([2 * S2 for _, S2 in pcs])
    cut = value.sort(descending=True).values[min(components, len(value)) - 1]
    for i, ((c, _), k) in enumerate(zip(halves, most)):
        V, S2 = pcs[i]
        if V.shape[1] < k and bool(2 * S2[-1] >= cut):  # all of this half kept: it may hold more
            pcs[i] = _pca(c, k, power_iterations)
    bases, values = [], []
    for (_, sign), (V, S2) in zip(halves, pcs):
        k = V.shape[1]
        half = V[:C * H * w].T.reshape(k, C, H, w) / math.sqrt(2)
        centre = V[C * H * w:].T.reshape(k, C, H, W - 2 * w) if sign > 0 else torch.zeros(k, C, H, W - 2 * w)
        bases.append(torch.cat([half, centre, sign * half.flip(-1)], -1).flatten(1).T)  # [D, k]
        values.append(2 * S2)
    value = torch.cat(values)
    order = value.argsort(descending=True)[:components]
    return torch.cat(bases, 1)[:, order], value[order], norm


def fit_prior(G: LayeredGenerator, samples: int = SAMPLES, components: int = COMPONENTS, seed: int = 0,
              batch: int = 256, progress: bool = False, augment: Augment = AUGMENT, pairs: bool | None = None,
              power_iterations: int = POWER_ITERATIONS, views: int | None = None) -> GaussianPrior:
    """The Gaussian prior of ``samples`` images of ``G`` (latents, then each batch's ``augment``,
    drawn from ``torch.Generator`` seed ``seed``): their mean, the ``components`` leading principal
    directions and variances (a randomised SVD with ``power_iterations``, its projections seeded by
    ``seed`` too) and the remainder's variance per value. The same arguments give the same
    prior on a machine. ``progress``: a bar over the samples, then the SVD.

    ``pairs`` (None: where ``augment`` flips): each sample is taken with its mirror image, so the
    set is exactly mirror-symmetric, as random flips make it on average, for half the generator's
    work and half the SVD's (:func:`mirror_pca`). ``views`` (None: :data:`VIEWS` for mirror
    pairs, else 1; always 1 for an augmentation that changes nothing): each generated image is
    shifted and zoomed that many times. So ``samples / (2 * views)`` images are generated
    (``samples`` rounded down to a multiple of ``2 * views``). ``pairs=False`` with
    ``power_iterations=3`` flips a random half of all ``samples`` images instead: the fit of
    sessions 13-16, exactly. The prior alone's PSNR on the real tuning faces and on generated ones
    moves by about as much as a change of seed of either fit (``python -m ilo.bench.prior_fit``,
    docs/PERFORMANCE.md §19). The fit runs on every usable core (:func:`ilo.runtime.all_cores`)."""
    from tqdm.auto import tqdm

    if samples < 2 or components < 1:
        raise ValueError(f"need samples >= 2 and components >= 1, got {samples} and {components}")
    gen = torch.Generator().manual_seed(seed)
    pairs = augment.flip if pairs is None else pairs and augment.flip
    views = 1 if augment.identity else views or (VIEWS if pairs else 1)
    count = max(1 if views > 1 else 2, samples // (views * (2 if pairs else 1)))  # at least 2 rows
    bar = tqdm(total=count + count // 2, desc=f"Gaussian prior of {G.name} (once, then cached)", unit="img",
               disable=not progress, leave=False, dynamic_ncols=True)
    with all_cores(), torch.random.fork_rng(devices=[]):  # the SVD's projections: reproducible, the caller's RNG untouched
        torch.manual_seed(seed)
        X = _generated(G, count, gen, batch, replace(augment, flip=False) if pairs else augment, bar, views)
        N = 2 * len(X) if pairs else len(X)
        C, H, W = X.shape[1:]
        D = C * H * W
        if pairs:
            m = X.mean(0)
            mean = (m + m.flip(-1)) / 2  # [C, H, W]
            X -= mean
            V, S2, norm = mirror_pca(X, min(components, N - 1, D), power_iterations)
            mean = mean.flatten()
        else:
            X = X.flatten(1)
            mean = X.mean(0)
            X -= mean
            norm = float(X.square().sum())
            V, S2 = _pca(X, components, power_iterations)
        del X
    bar.update(count // 2)  # the SVD: about as long as half the samples
    bar.close()
    total = norm / (N - 1)
    variances = S2 / (N - 1)
    keep = variances > variances[0] * 1e-9  # a rank-deficient sample: drop the null directions
    variances, V = variances[keep], V[:, keep]
    residual = max((total - float(variances.sum())) / max(D - len(variances), 1), total / D * 1e-3)
    return GaussianPrior(mean, V.contiguous(), variances, residual, tuple(G.image_shape)).check()  # type: ignore[arg-type]


def gaussian_inpaint(y: torch.Tensor, op: Inpainting, prior: GaussianPrior, base: torch.Tensor | None = None,
                     residual_scale: float = RESIDUAL_SCALE) -> torch.Tensor:
    """The prior's posterior mean of the images ``[B, C, H, W]`` given inpainting observations
    ``y [B, C, H, W]`` (module docstring), centred at the prior's mean or at ``base [B, C, H, W]``;
    clamped to ``[-1, 1]``."""
    if not isinstance(op, Inpainting):
        raise ValueError(f"the Gaussian prior inpaints; got a {type(op).__name__} operator")
    if tuple(y.shape[1:]) != prior.shape:
        raise ValueError(f"the Gaussian prior is for images {prior.shape}, got {tuple(y.shape[1:])}")
    B = y.shape[0]
    dt, dev = y.dtype, y.device
    V, lam = prior.basis.to(dev, torch.float64), prior.variances.to(dev, torch.float64)  # one copy per call
    m = (prior.mean.to(dev).expand(B, -1) if base is None else base.detach().flatten(1)).float()
    obs = op.mask.expand(B, prior.shape[0], -1, -1).flatten(1) > 0  # [B, D]
    gamma_r = residual_scale * prior.residual
    beta = gamma_r + float(getattr(op.noise, "sigma", 0.0)) ** 2
    out = []
    factors: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}  # per mask: rows of one image share it
    for b in range(B):
        o = obs[b]
        key = o.cpu().numpy().tobytes()
        if key not in factors:
            Vo_ = V[o]  # [m, k]
            factors[key] = (Vo_, torch.linalg.cholesky(beta * torch.diag(1 / lam) + Vo_.T @ Vo_))
        Vo, chol = factors[key]
        v = (y[b].flatten().float() - m[b])[o].double()  # [m]
        w = (v - Vo @ torch.cholesky_solve((Vo.T @ v)[:, None], chol)[:, 0]) / beta
        x = m[b].double() + V @ (lam * (Vo.T @ w))
        x[o] += gamma_r * w
        out.append(x)
    return torch.stack(out).to(dt).view(B, *prior.shape).clamp(-1, 1)


#: the remainder's covariance: ``"harmonic"`` (default) ``γ (L + εI)⁻¹`` per channel, ``L`` the
#: pixel grid's graph Laplacian (reflecting borders) and ``γ`` = :data:`HARMONIC_SCALE`: departures
#: from the generator's images that are smooth, as harmonic interpolation assumes; ``"isotropic"``
#: ``γ · residual · I`` (``γ`` = :data:`RESIDUAL_SCALE`): departures with no structure
REMAINDERS = ("harmonic", "isotropic")
#: γ of the harmonic remainder, in [-1, 1] units (best or within 0.05 dB of the best of 0.001-3
#: on the 15 real tuning faces for the box, 5 % inpainting and super-resolution x8 / x16;
#: docs/BENCHMARKS.md "The Gaussian prior with a smooth remainder (session 12)")
HARMONIC_SCALE = 0.1
#: ε of the harmonic remainder: the variance of a constant offset is ``γ / ε``
HARMONIC_EPSILON = 1e-4


def _numpy_prior(prior: GaussianPrior):
    return prior.basis.double().numpy(), prior.variances.double().numpy()


def _banded_solve(A, rhs):
    """``A⁻¹ rhs`` for a sparse symmetric positive definite ``A`` whose non-zeros lie near the
    diagonal (a grid's pixels in row-major order: within one image row), by LAPACK's banded
    Cholesky: ``n · bw²`` to factorise, ``n · bw`` per right-hand side, where SuperLU's solve
    is many times slower with hundreds of right-hand sides."""
    import numpy as np
    import scipy.linalg as sl

    A = A.tocoo()
    upper = A.row <= A.col
    bw = int((A.col - A.row)[upper].max(initial=0))
    ab = np.zeros((bw + 1, A.shape[0]))
    ab[bw + A.row[upper] - A.col[upper], A.col[upper]] = A.data[upper]
    factor = sl.cholesky_banded(ab, check_finite=False)
    return sl.cho_solve_banded((factor, False), rhs, check_finite=False)


def _harmonic_inpaint(y: torch.Tensor, mask: torch.Tensor, prior: GaussianPrior, base: torch.Tensor,
                      gamma: float) -> torch.Tensor:
    """The posterior mean under the harmonic remainder for noiseless inpainting, ``[B, D]``
    float64. With ``d = y - m`` on the observed set ``O`` and ``P = L + εI`` per channel: for
    given coefficients ``c`` the remainder ``r_O = d_O - V_O c`` is extended harmonically,
    ``r_U = -P_UU⁻¹ P_UO r_O``, at energy ``r_Oᵀ S r_O / γ`` (``S = P_OO - P_OU P_UU⁻¹ P_UO``),
    and ``c`` minimises ``cᵀΛ⁻¹c`` plus that energy: ``(Λ⁻¹ + V_Oᵀ S V_O / γ) c = V_Oᵀ S d_O / γ``.
    ``P_UO`` is non-zero only on the observed pixels next to a missing one (``E``), so per mask
    (shared by rows with the same mask, and by the channels) this is one banded Cholesky of
    ``P_UU`` (:func:`_banded_solve`) with ``|E|`` right-hand sides and one ``k x k`` Cholesky."""
    import numpy as np
    import scipy.linalg as sl
    import scipy.sparse as sp

    C, H, W = prior.shape
    N = H * W
    V, lam = _numpy_prior(prior)
    k = V.shape[1]
    Vc = V.reshape(C, N, k)
    P = (grid_laplacian(H, W) + HARMONIC_EPSILON * sp.identity(N)).tocsr()
    Y = y.detach().cpu().double().reshape(len(y), C, N).numpy()
    M = base.detach().cpu().double().reshape(len(y), C, N).numpy()
    obs = (mask.detach().cpu().reshape(len(y), N) > 0).numpy()  # [B, N], shared by the channels
    out = M.copy()
    done: dict[bytes, tuple] = {}
    for b in range(len(y)):
        o = obs[b]
        u = ~o
        if not u.any():
            out[b] = Y[b]
            continue
        key = o.tobytes()
        if key not in done:
            Puo = P[u][:, o]  # [n_u, n_o]
            edge = np.flatnonzero(np.asarray(abs(Puo).sum(0)).ravel() > 0)  # observed pixels next to a missing one
            Pue = Puo[:, edge].toarray()  # [n_u, n_e]
            Z = _banded_solve(P[u][:, u], Pue)  # P_UU⁻¹ P_UE [n_u, n_e]
            corr = Pue.T @ Z  # P_EU P_UU⁻¹ P_UE [n_e, n_e]
            Poo = P[o][:, o]
            Vo = Vc[:, o]  # [C, n_o, k]
            SVo = np.stack([Poo @ Vo[c] for c in range(C)])  # S V_O = P_OO V_O - E corr E^T V_O
            for c in range(C):
                SVo[c, edge] -= corr @ Vo[c, edge]
            gram = sum(Vo[c].T @ SVo[c] for c in range(C)) / gamma
            gram[np.diag_indices(k)] += 1 / lam
            done[key] = (edge, Z, Vo, SVo, sl.cho_factor(gram))
        edge, Z, Vo, SVo, chol = done[key]
        d = Y[b][:, o] - M[b][:, o]  # [C, n_o]
        coef = sl.cho_solve(chol, sum(d[c] @ SVo[c] for c in range(C)) / gamma)  # [k]
        rest = d - Vo @ coef  # the remainder on the observed pixels [C, n_o]
        out[b][:, u] = M[b][:, u] + (Vc @ coef)[:, u] - rest[:, edge] @ Z.T  # its harmonic extension
        out[b][:, o] = Y[b][:, o]
    return torch.from_numpy(out.reshape(len(y), -1))


def _unwrap(op: Operator) -> tuple[Operator, torch.Tensor | None]:
    """The operator whose measurements ``op`` keeps in part and the ``keep`` mask
    (:class:`~ilo.solvers.selection.HeldOut`, recognised by its attributes: selection imports
    this module, and tests/test_architecture.py forbids the cycle an import back would make),
    or ``op`` itself and None."""
    keep = getattr(op, "keep", None)
    if keep is None:
        return op, None
    return cast(Operator, op.base), cast(torch.Tensor, keep)


#: ``A Σ Aᵀ`` of the last operator :func:`_linear_mean` saw (the self-tuning calls it on the fit part
#: and again on all measurements of one operator), with the prior, remainder and γ it is for;
#: keyed weakly, so it goes with the operator
_PRIOR_GRAM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _linear_mean(y: torch.Tensor, op: Operator, prior: GaussianPrior, base: torch.Tensor, remainder: str,
                 gamma: float) -> torch.Tensor:
    """The posterior mean ``m + Σ Aᵀ (A Σ Aᵀ + s² I)⁻¹ (y - A m)`` for a super-resolution or
    compressed-sensing operator (or the kept measurements of one,
    :class:`~ilo.solvers.selection.HeldOut`), with
    ``Σ = V Λ Vᵀ + R`` and ``R`` the remainder's covariance: ``[B, D]`` float64. ``A Σ Aᵀ``
    ``[m, m]`` comes from ``A V`` and ``A R Aᵀ`` (the operator on the ``k`` components and on
    the ``m`` unit measurements' ``R Aᵀ``; for the isotropic remainder ``γ s² A Aᵀ`` from
    :meth:`~ilo.operators.Operator.gram` where the operator has it), so this is for few measurements; per image it costs
    one adjoint, two products with ``V`` and one ``R``; ``A Σ Aᵀ`` is reused for the same operator,
    prior, remainder and γ (:data:`_PRIOR_GRAM`)."""
    import numpy as np
    import scipy.linalg as sl

    C, H, W = prior.shape
    D = C * H * W
    inner, keep = _unwrap(op)
    m = math.prod(inner.output_shape)

    def forward(X):  # rows [n, D] -> [n, m]; the operator's A is shared by the batch (no per-image parts)
        return inner.A(torch.from_numpy(np.ascontiguousarray(X)).view(-1, C, H, W)).reshape(len(X), m).numpy()

    def adjoint(Z):  # rows [n, m] -> [n, D]
        return inner.A_adjoint(torch.from_numpy(np.ascontiguousarray(Z)).view(-1, *inner.output_shape)).reshape(len(Z), D).numpy()

    iso = gamma * prior.residual  # the isotropic remainder's variance per value

    def rest(X):  # the remainder's covariance on rows [n, D]
        if remainder == "isotropic":
            return X * iso
        from scipy.fft import dctn, idctn  # (L + εI)⁻¹: the grid's Laplacian is diagonal in the orthonormal DCT-II

        eig = (2 - 2 * np.cos(np.pi * np.arange(H) / H))[:, None] + (2 - 2 * np.cos(np.pi * np.arange(W) / W))[None]
        spec = dctn(X.reshape(-1, C, H, W), axes=(2, 3), norm="ortho") / (eig + HARMONIC_EPSILON)
        return idctn(spec, axes=(2, 3), norm="ortho").reshape(len(X), D) * gamma

    V, lam = _numpy_prior(prior)
    held = _PRIOR_GRAM.get(inner)
    if held is not None and held[0][0] is prior and held[0][1:] == (remainder, gamma):
        K = held[1].copy()
    else:  # A Σ Aᵀ [m, m]: the operator on the k components and on the m unit measurements' R Aᵀ
        AV = forward(V.T)  # [k, m]
        gram = inner.gram() if remainder == "isotropic" else None  # A R Aᵀ = γ s² A Aᵀ, closed form where known
        ARA = forward(rest(adjoint(np.eye(m)))) if gram is None else gram.cpu().numpy() * iso
        K = AV.T @ (lam[:, None] * AV) + ARA
        _PRIOR_GRAM.clear()  # one operator at a time: up to 2048² values
        _PRIOR_GRAM[inner] = ((prior, remainder, gamma), K.copy())
    K[np.diag_indices(m)] += float(op.noise.sigma) ** 2 + 1e-10 * np.trace(K) / m
    Y = y.detach().cpu().double().reshape(len(y), m).numpy()
    Mb = base.detach().cpu().double().reshape(len(y), D).numpy()
    kept = np.ones((len(y), m), bool) if keep is None else \
        (keep.detach().cpu().expand(len(y), *inner.output_shape).reshape(len(y), m) > 0).numpy()
    resid = Y - forward(Mb)
    weights = np.zeros_like(resid)  # (A Σ Aᵀ)⁻¹ (y - A m) on the kept measurements, 0 elsewhere
    groups: dict[bytes, list[int]] = {}  # rows with one kept set (the rows of one image) share a factor
    for b in range(len(y)):
        groups.setdefault(kept[b].tobytes(), []).append(b)
    for rows in groups.values():
        s = kept[rows[0]]
        weights[np.ix_(rows, s)] = sl.cho_solve(sl.cho_factor(K[np.ix_(s, s)]), resid[np.ix_(rows, s)].T).T
    back = adjoint(weights)  # Aᵀ w [B, D]
    return torch.from_numpy(Mb + ((back @ V) * lam) @ V.T + rest(back))


def posterior_mean(y: torch.Tensor, op: Operator, prior: GaussianPrior, base: torch.Tensor | None = None,
                   remainder: str = "harmonic", scale: float | None = None) -> torch.Tensor:
    """The prior's posterior mean of the images ``[B, C, H, W]`` given observations ``y`` of
    ``op``: inpainting, super-resolution, compressed sensing, or kept measurements of any
    (:class:`~ilo.solvers.selection.HeldOut`; of inpainting the selection passes a sparser
    :class:`~ilo.operators.Inpainting`); centred at the prior's mean or at ``base
    [B, C, H, W]``, under the ``remainder`` covariance (:data:`REMAINDERS`) scaled by ``scale``
    (None: :data:`HARMONIC_SCALE` or :data:`RESIDUAL_SCALE`); clamped to ``[-1, 1]``. Noisy
    inpainting uses the isotropic remainder (its closed form, :func:`gaussian_inpaint`).

    >>> from ilo.operators import Inpainting
    >>> prior = GaussianPrior(torch.zeros(16), torch.eye(16)[:, :1], torch.ones(1), 0.01, (1, 4, 4))
    >>> op = Inpainting.box((1, 4, 4), 1, 1, 3, 3)  # the centre 2 x 2 missing
    >>> x = torch.full((1, 1, 4, 4), 0.5)
    >>> bool(torch.allclose(posterior_mean(op(x), op, prior), x, atol=1e-3))  # a constant is smooth
    True
    """
    if remainder not in REMAINDERS:
        raise ValueError(f"unknown remainder {remainder!r}; choose from {', '.join(REMAINDERS)}")
    if tuple(op.input_shape) != prior.shape:
        raise ValueError(f"the Gaussian prior is for images {prior.shape}, got {tuple(op.input_shape)}")
    gamma = scale if scale is not None else (HARMONIC_SCALE if remainder == "harmonic" else RESIDUAL_SCALE)
    B = y.shape[0]
    m = prior.mean.view(1, *prior.shape).expand(B, -1, -1, -1) if base is None else base.detach()
    inner, _ = _unwrap(op)
    with torch.no_grad():
        if isinstance(op, Inpainting):
            if remainder == "isotropic" or op.noise.sigma > 0:
                return gaussian_inpaint(y, op, prior, base=base, residual_scale=gamma if remainder == "isotropic"
                                        else RESIDUAL_SCALE)
            x = _harmonic_inpaint(y, op.mask.expand(B, 1, -1, -1), prior, m, gamma)
        elif isinstance(inner, LINEAR_MEAN):
            x = _linear_mean(y, op, prior, m, remainder, gamma)
        else:
            raise ValueError(f"the Gaussian prior inpaints, super-resolves and reconstructs compressed sensing; "
                             f"got a {type(op).__name__} operator")
    return x.to(y.dtype).view(B, *prior.shape).clamp(-1, 1)


#: the largest image (``C * H * W`` values) a prior is fitted for: its basis is ``4 * D * COMPONENTS`` bytes
MAX_VALUES = 3 * 128 * 128


def supports(G: LayeredGenerator) -> bool:
    """Whether ``G``'s images are small enough for a Gaussian prior (:data:`MAX_VALUES`; a
    1024-px StyleGAN-2 would need a 12 GB basis)."""
    C, H, W = G.image_shape
    return C * H * W <= MAX_VALUES


@dataclass(frozen=True)
class GaussianConfig:
    """The ``gaussian`` method of :func:`ilo.solvers.solve`: the prior's fit (``samples``,
    ``components``), the ``remainder`` (:data:`REMAINDERS`) and its scale (None:
    :data:`HARMONIC_SCALE` or :data:`RESIDUAL_SCALE`)."""

    samples: int | None = None  # None: SAMPLES
    components: int | None = None  # None: COMPONENTS
    remainder: str = "harmonic"
    residual_scale: float | None = None
    augment: bool = True  # the fit's :data:`AUGMENT`; False: :data:`PLAIN`

    def __post_init__(self):
        if (self.samples is not None and self.samples < 2) or (self.components is not None and self.components < 1) \
                or not (self.residual_scale is None or self.residual_scale > 0) or self.remainder not in REMAINDERS:
            raise ValueError(f"invalid Gaussian config: samples={self.samples}, components={self.components}, "
                             f"remainder={self.remainder!r}, residual_scale={self.residual_scale}")

    @property
    def scale(self) -> float:
        """γ: :attr:`residual_scale`, or the remainder's default."""
        if self.residual_scale is not None:
            return self.residual_scale
        return HARMONIC_SCALE if self.remainder == "harmonic" else RESIDUAL_SCALE

    def to_dict(self) -> dict:
        return {"samples": self.samples or SAMPLES, "components": self.components or COMPONENTS,
                "augment": augmentation(self.augment).to_dict(), "remainder": self.remainder,
                "residual_scale": self.scale}


#: the most measurements a super-resolution or compressed-sensing problem may have for the prior
#: (its ``Aᵀ`` is built densely, ``D x m`` float64: 200 MB for a 64-px image at the most): x4 of a
#: 64-px image has 768, compressed sensing at 10 % 1229
MAX_MEASUREMENTS = 2048
#: the operators whose posterior mean is the dense linear one (:func:`_linear_mean`)
LINEAR_MEAN = (SuperResolution, CompressedSensing)


def solves(operator: Operator) -> bool:
    """Whether :func:`posterior_mean` takes ``operator``: inpainting, or super-resolution or
    compressed sensing with at most :data:`MAX_MEASUREMENTS` measurements (either possibly held
    out in part)."""
    inner, _ = _unwrap(operator)
    if isinstance(inner, Inpainting):
        return True
    return isinstance(inner, LINEAR_MEAN) and math.prod(inner.output_shape) <= MAX_MEASUREMENTS


def remainder_for(operator: Operator) -> str:
    """The remainder (:data:`REMAINDERS`) of the ``gaussian`` method's preset for ``operator``:
    isotropic for compressed sensing (at its γ = 4, 22.14 / 24.20 dB on the 15 real tuning faces
    at 5 / 10 % measurements; the harmonic one at its γ = 0.1: 21.24 dB at 5 %, level only at
    γ ≈ 0.01, 22.10 / 24.22; docs/BENCHMARKS.md "The Gaussian prior for compressed sensing
    (session 23)"); harmonic otherwise."""
    inner, _ = _unwrap(operator)
    return "isotropic" if isinstance(inner, CompressedSensing) else "harmonic"


def gaussian_solve(y: torch.Tensor, operator: Operator, G: LayeredGenerator, config: GaussianConfig | None = None,
                   progress: bool = False) -> Result:
    """The ``gaussian`` method: the posterior mean (:func:`posterior_mean`) of :func:`prior_for`
    ``G`` given inpainting, super-resolution or compressed-sensing observations ``y``, observed
    pixels kept where the noise model is noiseless; without a config, the remainder of
    :func:`remainder_for`."""
    config = config if config is not None else GaussianConfig(remainder=remainder_for(operator))
    if not isinstance(operator, (Inpainting, *LINEAR_MEAN)):
        raise ValueError(f"gaussian solves Inpainting, SuperResolution and CompressedSensing problems, "
                         f"not {type(operator).__name__}")
    if not solves(operator):
        raise ValueError(f"the Gaussian prior takes at most {MAX_MEASUREMENTS} measurements; this "
                         f"{operator.describe()} has {math.prod(operator.output_shape)}")
    if not supports(G):
        raise ValueError(f"the Gaussian prior is for images of at most {MAX_VALUES} values; "
                         f"{G.name} makes {tuple(G.image_shape)}")
    timer = Timer()
    prior = prior_for(G, config.samples, config.components, progress=progress,
                      augment=augmentation(config.augment))
    with torch.no_grad():
        image = posterior_mean(y, operator, prior, remainder=config.remainder, scale=config.scale)
        if isinstance(operator, Inpainting) and operator.noise.sigma == 0:
            image = torch.where(operator.mask.expand_as(image) > 0, y, image)
        meas = operator.measurement_loss(image, y)
    secs = timer()
    history = [{"step": 0, "round": 0, "layer": -1, "loss": meas.tolist(), "measurement_loss": meas.tolist(),
                "time": secs}]  # one entry, as the classical methods'
    return Result(image=image, latents={}, layer=-1, measurement_loss=meas, history=history, method="gaussian",
                  config={**config.to_dict(), "residual": prior.residual, "kept_components": len(prior.variances)},
                  seconds=secs)


def fingerprint(G: LayeredGenerator) -> str:
    """A hash of the generator's name, image shape and weights (16 hex digits)."""
    h = hashlib.sha256(f"{G.name}:{tuple(G.image_shape)}".encode())
    for key, t in sorted(G.state_dict().items()):
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_MEMORY: dict[tuple[str, int, int, str], GaussianPrior] = {}


def cache_folder() -> Path:
    """Where fitted priors are kept: ``$ILO_GAUSSIAN_CACHE``, or ``gaussian/`` under
    :func:`ilo.generators.hub.cache_dir`."""
    from ..generators.hub import cache_dir

    own = os.environ.get("ILO_GAUSSIAN_CACHE", "").strip()
    return Path(own) if own else cache_dir() / "gaussian"


def cache_path(G: LayeredGenerator, samples: int, components: int, fp: str | None = None,
               augment: Augment = AUGMENT) -> Path:
    """The file of ``G``'s prior: its name, weights' :func:`fingerprint` (``fp`` when already
    known), samples, components, the augmentation's :attr:`Augment.tag` and :data:`FIT_VERSION`."""
    return cache_folder() / f"{G.name}-{fp or fingerprint(G)}-{samples}-{components}-{augment.tag}-{FIT_VERSION}.pt"


def _load(path: Path) -> GaussianPrior | None:
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        return GaussianPrior(d["mean"], d["basis"], d["variances"], float(d["residual"]),
                             tuple(int(s) for s in d["shape"])).check()  # type: ignore[arg-type]
    except Exception:  # missing, truncated, tampered or from another layout: refit
        return None


def _save(prior: GaussianPrior, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(fd)
    except OSError:  # a read-only cache: the prior stays in memory for this process
        return
    try:
        torch.save({"mean": prior.mean, "basis": prior.basis, "variances": prior.variances,
                    "residual": prior.residual, "shape": list(prior.shape)}, tmp)
        os.replace(tmp, path)
    except OSError:  # a full disk: no half-written file left behind
        Path(tmp).unlink(missing_ok=True)


def remembered() -> dict:
    """The priors this process holds in memory (:func:`prior_for`'s), to hand to another process
    of the same generator (:func:`remember`), e.g. workers that would each load or fit them."""
    return dict(_MEMORY)


def remember(priors: dict) -> None:
    """Hold ``priors`` (from :func:`remembered` in another process) in this process's memory."""
    _MEMORY.update(priors)


def prior_for(G: LayeredGenerator, samples: int | None = None, components: int | None = None,
              progress: bool = False, augment: Augment = AUGMENT) -> GaussianPrior:
    """The Gaussian prior of ``G`` (``samples``, ``components``; None: :data:`SAMPLES`,
    :data:`COMPONENTS`; ``augment``): from memory, the disk cache, or fitted (and cached;
    ``progress``: a bar while it is fitted)."""
    samples, components = samples or SAMPLES, components or COMPONENTS
    fp = fingerprint(G)  # hashes the weights: once per call
    key = (fp, samples, components, augment.tag)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_path(G, samples, components, fp, augment)
    prior = _load(path) if path.is_file() else None
    if prior is None or prior.shape != tuple(G.image_shape):
        prior = fit_prior(G, samples, components, progress=progress, augment=augment)
        _save(prior, path)
    _MEMORY[key] = prior
    return prior


__all__ = ["GaussianPrior", "Augment", "AUGMENT", "PLAIN", "augmentation", "GaussianConfig", "gaussian_solve", "fit_prior", "supports", "solves", "MAX_VALUES",
           "MAX_MEASUREMENTS", "LINEAR_MEAN", "remainder_for", "gaussian_inpaint", "posterior_mean", "prior_for", "fingerprint",
           "cache_path", "remembered", "remember", "SAMPLES", "COMPONENTS", "RESIDUAL_SCALE", "HARMONIC_SCALE", "REMAINDERS"]
