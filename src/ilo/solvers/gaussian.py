"""A Gaussian prior fitted to a generator's outputs, and its linear MMSE inpainting.

The generator's images, flattened to ``D = C * H * W`` values, are modelled as
``x = mean + V c + r`` with ``c ~ N(0, diag(variances))`` over the ``k`` leading principal
components ``V [D, k]`` of ``samples`` generated images (a randomised SVD) and an isotropic
remainder ``r ~ N(0, residual * I)`` holding the variance the components leave out. Under that
prior the posterior mean given observed pixels ``y_O = x_O + n`` (noise variance ``s²``) is
closed-form (Woodbury: a ``k x k`` solve per image):

    w     = (y_O - m_O - V_O (βΛ⁻¹ + V_Oᵀ V_O)⁻¹ V_Oᵀ (y_O - m_O)) / β,   β = γ · residual + s²
    x̂     = m + V Λ V_Oᵀ w + γ · residual · P_Oᵀ w

with ``m`` the prior's mean, or any image it is centred at (``base``: a stage of ILO, whose
residual is then filled by the prior's covariance), and ``γ`` = ``residual_scale``: how much
more the remainder is trusted than the components, > 1 on real faces, whose departures from
the generator's distribution the remainder has to carry (γ = 4 was best of 1-32 on the real
tuning faces at 5-30 % observed; docs/BENCHMARKS.md "A Gaussian prior from the generator").

It is a linear estimator: on sparse random masks of real faces it beats biharmonic
interpolation (the prior knows where eyes and mouths are; biharmonic only smooths), on a box
it loses to harmonic inpainting (a large hole needs more than second-order statistics of a
synthetic-face generator). The self-tuning uses it for random inpainting
(:data:`~ilo.solvers.classical.RESIDUAL_METHODS`), alone and on each stage's residual.

Fitting costs ``samples`` generator forwards and one randomised SVD (about 30 s for the
digiface DCGAN at 8192 samples on 2 cores), once per generator: :func:`prior_for` keeps it in
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
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..generators.base import LayeredGenerator
from ..operators import Inpainting
from ..operators.base import Operator
from .optim import Timer
from .result import Result

#: the fit's defaults, generated images and principal components; ``$ILO_GAUSSIAN_SAMPLES`` and
#: ``$ILO_GAUSSIAN_COMPONENTS`` override them (the test suite's small, fast priors, in every process)
def _env_count(name: str, default: int) -> int:
    """An integer >= 2 from the environment variable ``name``; ``default`` if unset or not one."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 1 else default


SAMPLES = _env_count("ILO_GAUSSIAN_SAMPLES", 8192)
COMPONENTS = _env_count("ILO_GAUSSIAN_COMPONENTS", 1024)
#: γ, the remainder's variance scale (module docstring)
RESIDUAL_SCALE = 4.0


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


def fit_prior(G: LayeredGenerator, samples: int = SAMPLES, components: int = COMPONENTS, seed: int = 0,
              batch: int = 256, progress: bool = False) -> GaussianPrior:
    """The Gaussian prior of ``samples`` images of ``G`` (latents from ``torch.Generator`` seed
    ``seed``): their mean, the ``components`` leading principal directions and variances (a
    randomised SVD, 3 power iterations, its projections seeded by ``seed`` too) and the
    remainder's variance per value. The same arguments give the same prior. ``progress``: a
    bar over the samples, then the SVD."""
    from tqdm.auto import tqdm

    if samples < 2 or components < 1:
        raise ValueError(f"need samples >= 2 and components >= 1, got {samples} and {components}")
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=samples + samples // 2, desc=f"Gaussian prior of {G.name} (once, then cached)", unit="img",
               disable=not progress, leave=False, dynamic_ncols=True)
    parts = []
    with torch.no_grad():
        for i in range(0, samples, batch):
            parts.append(G(G.sample_latent(min(batch, samples - i), gen)).flatten(1).float().cpu())
            bar.update(parts[-1].shape[0])
    X = torch.cat(parts)  # [N, D]
    del parts
    N, D = X.shape
    k = min(components, N - 1, D)
    mean = X.mean(0)
    X -= mean
    total = float(X.square().sum()) / (N - 1)
    with torch.random.fork_rng(devices=[]):  # the SVD's random projections: reproducible, the caller's RNG untouched
        torch.manual_seed(seed)
        _, S, V = torch.svd_lowrank(X, q=k, niter=3)
    bar.update(samples // 2)  # the SVD: about as long as half the samples
    bar.close()
    variances = S.square() / (N - 1)
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
    ``components``) and ``residual_scale`` (γ)."""

    samples: int | None = None  # None: SAMPLES
    components: int | None = None  # None: COMPONENTS
    residual_scale: float = RESIDUAL_SCALE

    def __post_init__(self):
        if (self.samples is not None and self.samples < 2) or (self.components is not None and self.components < 1) \
                or not self.residual_scale > 0:
            raise ValueError(f"invalid Gaussian config: samples={self.samples}, components={self.components}, "
                             f"residual_scale={self.residual_scale}")

    def to_dict(self) -> dict:
        return {"samples": self.samples or SAMPLES, "components": self.components or COMPONENTS,
                "residual_scale": self.residual_scale}


def gaussian_solve(y: torch.Tensor, operator: Operator, G: LayeredGenerator, config: GaussianConfig | None = None,
                   progress: bool = False) -> Result:
    """The ``gaussian`` method: the posterior mean of :func:`prior_for` ``G`` given inpainting
    observations ``y [B, C, H, W]``, observed pixels kept where the noise model is noiseless."""
    config = config if config is not None else GaussianConfig()
    if not isinstance(operator, Inpainting):
        raise ValueError(f"gaussian solves Inpainting problems, not {type(operator).__name__}")
    if not supports(G):
        raise ValueError(f"the Gaussian prior is for images of at most {MAX_VALUES} values; "
                         f"{G.name} makes {tuple(G.image_shape)}")
    timer = Timer()
    prior = prior_for(G, config.samples, config.components, progress=progress)
    with torch.no_grad():
        image = gaussian_inpaint(y, operator, prior, residual_scale=config.residual_scale)
        if operator.noise.sigma == 0:
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


_MEMORY: dict[tuple[str, int, int], GaussianPrior] = {}


def cache_folder() -> Path:
    """Where fitted priors are kept: ``$ILO_GAUSSIAN_CACHE``, or ``gaussian/`` under
    :func:`ilo.generators.hub.cache_dir`."""
    from ..generators.hub import cache_dir

    own = os.environ.get("ILO_GAUSSIAN_CACHE", "").strip()
    return Path(own) if own else cache_dir() / "gaussian"


def cache_path(G: LayeredGenerator, samples: int, components: int, fp: str | None = None) -> Path:
    """The file of ``G``'s prior: its name, weights' :func:`fingerprint` (``fp`` when already
    known), samples and components."""
    return cache_folder() / f"{G.name}-{fp or fingerprint(G)}-{samples}-{components}.pt"


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


def prior_for(G: LayeredGenerator, samples: int | None = None, components: int | None = None,
              progress: bool = False) -> GaussianPrior:
    """The Gaussian prior of ``G`` (``samples``, ``components``; None: :data:`SAMPLES`,
    :data:`COMPONENTS`): from memory, the disk cache, or fitted (and cached; ``progress``: a bar
    while it is fitted)."""
    samples, components = samples or SAMPLES, components or COMPONENTS
    fp = fingerprint(G)  # hashes the weights: once per call
    key = (fp, samples, components)
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_path(G, samples, components, fp)
    prior = _load(path) if path.is_file() else None
    if prior is None or prior.shape != tuple(G.image_shape):
        prior = fit_prior(G, samples, components, progress=progress)
        _save(prior, path)
    _MEMORY[key] = prior
    return prior


__all__ = ["GaussianPrior", "GaussianConfig", "gaussian_solve", "fit_prior", "supports", "MAX_VALUES", "gaussian_inpaint", "prior_for", "fingerprint", "cache_path",
           "SAMPLES", "COMPONENTS", "RESIDUAL_SCALE"]
