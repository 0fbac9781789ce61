"""Classical baselines behind the solvers' signature: no generator, one knob each.

==============  ======================  ==============================================================
method          operator                what it does; ``weight`` (None = the tuned rule of the level)
==============  ======================  ==============================================================
``biharmonic``  Inpainting              biharmonic interpolation of the missing pixels (scikit-image)
``harmonic``    Inpainting              harmonic (membrane, Laplace) interpolation of the missing
                                        pixels: a sparse solve (SciPy); no knob
``tv-inpaint``  Inpainting              TV-regularised fit of the observed pixels from the biharmonic
                                        start; ``weight`` = λ
``bicubic``     SuperResolution         Keys (a = -0.5) bicubic upsampling aligned with the operator
``tv-superres`` SuperResolution         TV-regularised least squares with the operator, from bicubic;
                                        ``weight`` = λ
``bm3d-free``   Denoising               BM3D / CBM3D written for this project (:mod:`.bm3d_free`, free
                                        licence); ``weight`` = the sigma it assumes / sigma
``nlmeans``     Denoising               non-local means (scikit-image); ``weight`` = h / sigma
``tv-denoise``  Denoising               Chambolle's TV denoising (scikit-image); ``weight`` = λ / sigma
``adjoint``     CompressedSensing       ``s Aᵀy`` with the least-squares scale ``s``
``tv-cs``       CompressedSensing       TV-regularised least squares from the adjoint; ``weight`` = λ
``wavelet-cs``  CompressedSensing       l1 of db4 wavelet coefficients, least squares; ``weight`` = λ
==============  ======================  ==============================================================

The regularised least-squares methods are :func:`ilo.solvers.deviation.deviate` with
``x0 = 0`` (FISTA, ``min_x ½||Ax - y||² + λ R(x)``). The tuned weights (:data:`TUNED`) are
functions of the task's level (:func:`task_level`: observed fraction, factor, sigma255, m/n),
interpolated in log-log between the levels tuned on the tuning images
(``python -m ilo.bench.classical_tuning``, docs/CLASSICAL.md). They assume noiseless
measurements for every task but denoising. Images are ``[B, C, H, W]`` in ``[-1, 1]``.

>>> import torch
>>> from ilo.operators import SuperResolution
>>> op = SuperResolution((3, 16, 16), factor=2)
>>> x = torch.linspace(-1, 1, 16).expand(1, 3, 16, 16)
>>> res = classical(op(x), op, "bicubic")
>>> res.image.shape, bool((res.image - x).abs().max() < 0.05)
(torch.Size([1, 3, 16, 16]), True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ..operators.base import Operator
from ..operators.superres import _mirror, keys_cubic
from .deviation import deviate
from .optim import Timer
from .result import Result

#: the operator class each classical method solves
CLASSICAL = {
    "biharmonic": Inpainting,
    "harmonic": Inpainting,
    "tv-inpaint": Inpainting,
    "bicubic": SuperResolution,
    "tv-superres": SuperResolution,
    "bm3d-free": Denoising,
    "nlmeans": Denoising,
    "tv-denoise": Denoising,
    "adjoint": CompressedSensing,
    "tv-cs": CompressedSensing,
    "wavelet-cs": CompressedSensing,
}

#: tuned ``weight`` per method: (level, weight) pairs, interpolated log-log, constant outside
#: (tuning images and command in docs/CLASSICAL.md)
TUNED: dict[str, tuple[tuple[float, float], ...]] = {
    "tv-inpaint": ((0.05, 0.001), (0.9, 0.001)),
    "tv-superres": ((4, 1e-4), (8, 3e-4), (16, 3e-4)),
    "bm3d-free": ((10, 1.0), (50, 1.0)),
    "nlmeans": ((10, 0.8), (25, 0.6), (50, 0.4)),
    "tv-denoise": ((10, 0.7), (25, 0.7), (50, 1.0)),
    "tv-cs": ((0.05, 0.03), (0.1, 0.01)),
    "wavelet-cs": ((0.05, 0.03), (0.1, 0.3)),
}


@dataclass(frozen=True)
class ClassicalConfig:
    """Settings of a classical method.

    Attributes:
        weight: the method's regularisation strength (see the module table); None = the tuned
            rule at the operator's level (:func:`default_weight`).
        steps: FISTA iterations of the regularised least-squares methods.
        patch_size, patch_distance: NL-means patch side and search radius (pixels).
    """

    weight: float | None = None
    steps: int = 300
    patch_size: int = 5
    patch_distance: int = 6

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def total_steps(self) -> int:
        return self.steps


def task_level(operator: Operator, batch: int) -> torch.Tensor:
    """The level of ``operator``'s task per image ``[batch]`` (float64): the observed fraction
    (inpainting, per mask), the factor (super-resolution), sigma255 (denoising) or m/n (CS)."""
    if isinstance(operator, Inpainting):
        return operator.mask.double().flatten(1).mean(1).cpu().expand(batch)
    if isinstance(operator, SuperResolution):
        return torch.full((batch,), float(operator.factor), dtype=torch.float64)
    if isinstance(operator, Denoising):
        return torch.full((batch,), operator.sigma255, dtype=torch.float64)
    if isinstance(operator, CompressedSensing):
        return torch.full((batch,), operator.m / operator.n, dtype=torch.float64)
    raise ValueError(f"no task level for {type(operator).__name__}")


def default_weight(method: str, operator: Operator, batch: int) -> torch.Tensor:
    """The tuned ``weight`` of ``method`` at ``operator``'s level, per image: ``[batch]`` float64."""
    table = TUNED[method]
    lv = np.log([p[0] for p in table])
    wt = np.log([p[1] for p in table])
    level = task_level(operator, batch).numpy()
    return torch.from_numpy(np.exp(np.interp(np.log(np.maximum(level, 1e-12)), lv, wt)))


def bicubic_upsampling(n: int, factor: int, border: str = "reflect", a: float = -0.5) -> np.ndarray:
    """The ``[n * factor, n]`` float64 matrix of 1-D bicubic upsampling (Keys kernel ``a``)
    aligned with :class:`~ilo.operators.SuperResolution`: low-resolution pixel ``i`` sits at
    high-resolution coordinate ``(i + 0.5) * factor - 0.5``; taps outside ``[0, n)`` are
    mirrored (``"reflect"``) or dropped and the rest renormalised (``"truncate"``, like PIL).

    >>> np.allclose(bicubic_upsampling(5, 3).sum(1), 1.0), bicubic_upsampling(4, 1).tolist() == np.eye(4).tolist()
    (True, True)
    """
    big = n * factor
    pos = (np.arange(big) + 0.5) / factor - 0.5  # [big], in low-resolution pixel units
    j = np.floor(pos)[:, None].astype(np.int64) + np.arange(-1, 3)[None, :]  # [big, 4]
    w = keys_cubic(j - pos[:, None], a)
    if border == "truncate":
        w = np.where((j >= 0) & (j < n), w, 0.0)
        j = np.clip(j, 0, n - 1)
    else:
        j = _mirror(j, n)
    mat = np.zeros((big, n))
    np.add.at(mat, (np.repeat(np.arange(big), 4), j.ravel()), w.ravel())
    return mat / mat.sum(1, keepdims=True)


def _numpy_images(y: torch.Tensor) -> list[np.ndarray]:
    """``[B, C, H, W]`` -> B float64 arrays ``[H, W, C]``."""
    return [im.permute(1, 2, 0).numpy() for im in y.detach().cpu().double()]


def _torch_images(ims: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    out = torch.stack([torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1) for a in ims])
    return out.to(like.dtype).to(like.device)


def _biharmonic(y: torch.Tensor, op: Inpainting) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    missing = (op.mask.expand(y.shape[0], -1, -1, -1)[:, 0] == 0).cpu().numpy()  # [B, H, W]
    ims = [inpaint_biharmonic(a, m, channel_axis=-1) if m.any() else a for a, m in zip(_numpy_images(y), missing)]
    return _torch_images(ims, y)


def grid_laplacian(height: int, width: int):
    """The graph Laplacian ``[H*W, H*W]`` (scipy CSR) of the 4-neighbour pixel grid with
    reflecting borders: degree 4 everywhere, a border pixel's outside neighbour is itself.

    >>> L = grid_laplacian(2, 3)
    >>> L.shape, float(abs(L.sum(1)).max())  # constants are in its null space
    ((6, 6), 0.0)
    """
    import scipy.sparse as sp

    ids = np.arange(height * width).reshape(height, width)
    rows, cols = [], []
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):  # neighbours, clipped at the border (reflecting)
        ii = np.clip(np.arange(height)[:, None] + di, 0, height - 1).repeat(width, 1)
        jj = np.clip(np.arange(width)[None, :] + dj, 0, width - 1).repeat(height, 0)
        rows.append(ids.ravel())
        cols.append(ids[ii, jj].ravel())
    r, c = np.concatenate(rows), np.concatenate(cols)
    adj = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(height * width, height * width))
    return (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()


def _harmonic(y: torch.Tensor, op: Inpainting) -> torch.Tensor:
    """Harmonic interpolation: every missing pixel the mean of its four neighbours (Laplace's
    equation with the observed pixels as boundary values and reflecting image borders), per
    image and channel. A missing region touching no observed pixel is filled with 0.

    >>> from ilo.operators import Inpainting
    >>> op = Inpainting.box((1, 1, 5), 1, 0, 4, 1)  # row 0, columns 1..3 missing
    >>> x = torch.tensor([[[[0.0, 9.0, 9.0, 9.0, 4.0]]]])
    >>> _harmonic(op(x), op).flatten().tolist()  # linear between the ends
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    B, C, H, W = y.shape
    lap = grid_laplacian(H, W)
    missing = (op.mask.expand(B, -1, -1, -1)[:, 0] == 0).reshape(B, -1).cpu().numpy()  # [B, HW]
    out = y.detach().cpu().double().reshape(B, C, H * W).numpy().copy()
    for b in range(B):
        u = missing[b]
        if not u.any():
            continue
        a = lap[u][:, u] + sp.identity(int(u.sum())) * 1e-9  # nonsingular where a region sees no pixel
        rhs = -(lap[u][:, ~u] @ out[b][:, ~u].T)  # [missing, C]
        out[b][:, u] = splu(a.tocsc()).solve(rhs).T
    return torch.from_numpy(out).reshape(B, C, H, W).to(y)


def _bicubic(y: torch.Tensor, op: SuperResolution) -> torch.Tensor:
    _, h, w = op.output_shape
    uh = torch.from_numpy(bicubic_upsampling(h, op.factor, op.border)).to(y)
    uw = torch.from_numpy(bicubic_upsampling(w, op.factor, op.border)).to(y)
    return uh @ y @ uw.T


def _adjoint(y: torch.Tensor, op: CompressedSensing) -> torch.Tensor:
    back = op.A_adjoint(y)
    forth = op.A(back)
    scale = (forth * y).sum(1) / forth.pow(2).sum(1).clamp_min(1e-30)  # least-squares scale, [B]
    return back * scale.view(-1, 1, 1, 1)


def _nlmeans(y: torch.Tensor, op: Denoising, h: torch.Tensor, config: ClassicalConfig) -> torch.Tensor:
    from skimage.restoration import denoise_nl_means

    s = op.noise.sigma
    ims = [denoise_nl_means(a, h=float(k) * s, sigma=s, patch_size=config.patch_size,
                            patch_distance=config.patch_distance, fast_mode=True, channel_axis=-1)
           for a, k in zip(_numpy_images(y), h)]
    return _torch_images(ims, y)


def _tv_denoise(y: torch.Tensor, op: Denoising, weight: torch.Tensor) -> torch.Tensor:
    from skimage.restoration import denoise_tv_chambolle

    s = op.noise.sigma
    ims = [denoise_tv_chambolle(a, weight=float(k) * s, channel_axis=-1) for a, k in zip(_numpy_images(y), weight)]
    return _torch_images(ims, y)


def _denoise(y: torch.Tensor, op: Denoising, method: str, weight: torch.Tensor, config: ClassicalConfig) -> torch.Tensor:
    """The classical denoiser ``method`` on ``y [B, C, H, W]`` at ``weight [B]`` (not clamped)."""
    if method == "bm3d-free":
        from .bm3d_free import bm3d_free

        return bm3d_free(y, weight * op.noise.sigma)
    return _nlmeans(y, op, weight, config) if method == "nlmeans" else _tv_denoise(y, op, weight)


def _direct_result(image, y, operator, method, config: dict, timer: Timer) -> Result:
    image = image.clamp(-1, 1)
    meas = operator.measurement_loss(image, y)
    secs = timer()
    history = [{"step": 0, "round": 0, "layer": -1, "loss": meas.tolist(), "measurement_loss": meas.tolist(),
                "time": secs}]
    return Result(image=image, latents={}, layer=-1, measurement_loss=meas, history=history, method=method,
                  config=config, seconds=secs)


#: the prior of each regularised least-squares method (it starts from :func:`direct_estimate`)
_PRIORS = {"tv-inpaint": "tv", "tv-superres": "tv", "tv-cs": "tv", "wavelet-cs": "wavelet"}


def direct_estimate(y: torch.Tensor, op: Operator) -> torch.Tensor:
    """The direct estimate of the operator's class: biharmonic, bicubic or adjoint ``[B, C, H, W]``
    (not clamped: it also interpolates residuals)."""
    if isinstance(op, Inpainting):
        return _biharmonic(y, op)
    if isinstance(op, SuperResolution):
        return _bicubic(y, op)
    if isinstance(op, CompressedSensing):
        return _adjoint(y, op)
    raise ValueError(f"no direct estimate for {type(op).__name__}")  # pragma: no cover - CLASSICAL names the classes


def classical(y: torch.Tensor, operator: Operator, method: str, config: ClassicalConfig | None = None) -> Result:
    """Solve ``y = operator(x)`` with the classical ``method`` (see the module table).

    Args:
        y: observations ``[B, ...]`` of ``operator``.
        operator: an operator of the class the method solves (else ValueError).
        method: one of :data:`CLASSICAL`.
        config: settings; None = :class:`ClassicalConfig` defaults (tuned weights).
    """
    if method not in CLASSICAL:
        raise ValueError(f"unknown classical method {method!r}; choose from {', '.join(CLASSICAL)}")
    kind = CLASSICAL[method]
    if not isinstance(operator, kind):
        raise ValueError(f"{method} solves {kind.__name__} problems, not {type(operator).__name__}")
    config = config if config is not None else ClassicalConfig()
    if not isinstance(config, ClassicalConfig):
        raise TypeError(f"method {method!r} needs a ClassicalConfig, got {type(config).__name__}")
    if config.weight is not None and not (math.isfinite(config.weight) and config.weight >= 0):
        raise ValueError(f"weight must be a finite number >= 0, got {config.weight!r}")
    timer = Timer()
    batch = y.shape[0]
    weight = None
    if method in TUNED:
        weight = (torch.full((batch,), float(config.weight), dtype=torch.float64) if config.weight is not None
                  else default_weight(method, operator, batch))
    resolved = {**config.to_dict(), "weight": weight.tolist() if weight is not None else None,
                "level": task_level(operator, batch).tolist()}
    with torch.no_grad():
        if isinstance(operator, Denoising):
            assert weight is not None  # every denoiser is in TUNED
            image = y.clone() if operator.noise.sigma == 0 else _denoise(y, operator, method, weight, config)
            return _direct_result(image, y, operator, method, resolved, timer)
        image = _harmonic(y, operator) if isinstance(operator, Inpainting) and method == "harmonic" \
            else direct_estimate(y, operator)
        if method in _PRIORS:
            assert weight is not None  # every regularised method is in TUNED
            res = deviate(y, operator, torch.zeros_like(image), _PRIORS[method], weight.to(image), config.steps, init=image)
            res.method, res.config, res.seconds = method, {**resolved, **res.config, "weight": resolved["weight"]}, timer()
            return res
        return _direct_result(image, y, operator, method, resolved, timer)


#: the method name of the generator's Gaussian prior (:mod:`ilo.solvers.gaussian`; not a
#: classical method: it needs the generator, so :func:`classical` does not run it)
GAUSSIAN = "gaussian"
#: the self-tuning's candidate names for the generator's Gaussian prior, and the remainder each
#: uses (:data:`ilo.solvers.gaussian.REMAINDERS`): ``"gaussian"`` the default (harmonic)
PRIOR_METHODS = {GAUSSIAN: "harmonic", "gaussian-isotropic": "isotropic"}

#: the classical methods whose reconstructions of the residual ``y - A(stage)`` are ILO's
#: self-tuning candidates (:func:`on_residual`), per operator class, and for inpainting,
#: super-resolution and compressed sensing the generator's Gaussian prior (:data:`GAUSSIAN`, for
#: compressed sensing with the isotropic remainder; the selection's own,
#: :func:`ilo.solvers.selection.wants_prior`; next to a box ``SelectionConfig.box_classical``
#: replaces these) (bicubic left out: below
#: TV super-resolution on every tuning face, and a second candidate only adds selection noise;
#: for denoising our BM3D, 1.8-2.6 dB above NL-means on the tuning faces, docs/CLASSICAL.md;
#: the ``bm3d`` package is an option, non-commercial; docs/BENCHMARKS.md)
RESIDUAL_METHODS: dict[type[Operator], tuple[str, ...]] = {
    Inpainting: (GAUSSIAN, "biharmonic", "tv-inpaint"),  # first: the margin's reference on sparse masks
    SuperResolution: (GAUSSIAN, "tv-superres"),  # first: the reference where few low-resolution pixels are held out
    Denoising: ("bm3d-free",),
    CompressedSensing: ("gaussian-isotropic", "tv-cs"),  # the prior: +0.70 / +0.50 dB at 5 / 10 % (session 23)
}


def on_residual(y: torch.Tensor, operator: Operator, method: str, base: torch.Tensor, *,
                weight: torch.Tensor | None = None, estimate: torch.Tensor | None = None,
                config: ClassicalConfig | None = None) -> torch.Tensor:
    """``base + C(y - A(base))``: the classical ``method`` (or ``"bm3d"``) applied to the residual
    observation of ``base [B, C, H, W]``, clamped to ``[-1, 1]``; with ``base = 0`` the method's
    own reconstruction. The regularised least-squares methods solve for the deviation from
    ``base`` (:func:`~ilo.solvers.deviation.deviate` with ``x0 = base``) from ``base + estimate``.

    Args:
        y: observations ``[B, ...]``; operator: a linear operator (any, for the direct and
            regularised methods given ``weight`` and ``estimate``; the method's own class otherwise).
        weight: per image ``[B]`` (default: the tuned rule at the operator's level).
        estimate: the direct estimate of the residual ``[B, C, H, W]`` (default
            :func:`direct_estimate` of it), e.g. for an operator holding out measurements.

    >>> from ilo.operators import Inpainting
    >>> op = Inpainting.random((1, 8, 8), observed=0.5, generator=torch.Generator().manual_seed(0))
    >>> x = torch.linspace(-1, 1, 8).expand(1, 1, 8, 8)
    >>> out = on_residual(op(x), op, "biharmonic", torch.zeros_like(x))  # C(y) itself
    >>> torch.allclose(out, classical(op(x), op, "biharmonic").image)
    True
    """
    config = config if config is not None else ClassicalConfig()
    base = base.detach()
    with torch.no_grad():
        r = y - operator.A(base)
        if weight is None and method in TUNED:
            weight = default_weight(method, operator, y.shape[0])
        if isinstance(operator, Denoising):
            if method == "bm3d":  # BM3D is scale-equivariant: the residual (in [-2, 2]) at half scale
                from .bm3d import BM3DConfig, bm3d_denoise

                half = BM3DConfig(sigma255=operator.sigma255 / 2)
                return (base + 2 * bm3d_denoise(r / 2, operator, half).image).clamp(-1, 1)
            if CLASSICAL.get(method) is not Denoising:
                raise ValueError(f"{method} is not a denoiser")
            assert weight is not None  # every denoiser is in TUNED
            return (base + _denoise(r, operator, method, weight, config)).clamp(-1, 1)
        if CLASSICAL.get(method) in (None, Denoising):
            raise ValueError(f"{method!r} does not reconstruct from measurements; choose from "
                             f"{', '.join(m for m, c in CLASSICAL.items() if c is not Denoising)}")
        if method == "harmonic" and not isinstance(operator, Inpainting):
            raise ValueError(f"harmonic solves Inpainting problems, not {type(operator).__name__}")
        if estimate is not None:
            est = estimate
        elif isinstance(operator, Inpainting) and method == "harmonic":
            est = _harmonic(r, operator)
        else:
            est = direct_estimate(r, operator)
        if method in _PRIORS:
            assert weight is not None  # every regularised method is in TUNED
            return deviate(y, operator, base, _PRIORS[method], weight.to(base), config.steps, init=base + est,
                          history=False).image
        return (base + est).clamp(-1, 1)


__all__ = ["GAUSSIAN", "PRIOR_METHODS", "classical", "on_residual", "direct_estimate", "RESIDUAL_METHODS", "ClassicalConfig", "CLASSICAL", "TUNED", "default_weight", "task_level", "bicubic_upsampling"]
