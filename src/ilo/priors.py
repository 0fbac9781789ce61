"""Sparsity priors with a proximal operator: total variation, l1 of wavelet or DCT coefficients.

A prior ``R`` maps images ``[B, C, H, W]`` to per-sample values ``[B]`` (:meth:`Prior.value`)
and has a proximal operator

.. math::
    \\operatorname{prox}_{tR}(v) = \\arg\\min_x \\tfrac12 \\|x - v\\|^2 + t\\, R(x),

with a per-sample step ``t`` (``[B]`` or a float), so that one batch can hold images with
different weights. These are the "prior step" of the proximal-gradient solver in
:mod:`ilo.solvers.deviation`, which serves both the classical TV / wavelet baselines and the
range extension of a generator's output (Dhar, Grover & Ermon 2018).

* :class:`TotalVariation`: isotropic TV per channel, ``sum_i ||(D x)_i||_2`` with forward
  differences (Neumann border); its prox is computed by FGP, the fast gradient projection on
  the dual (Beck & Teboulle 2009), in torch and batched.
* :class:`WaveletL1`: l1 of the detail coefficients of an orthogonal wavelet transform
  (PyWavelets, periodised, so the transform is orthogonal and the prox is exact soft
  thresholding); the coarsest approximation is not penalised.
* :class:`DCTL1`: l1 of the orthonormal 2-D DCT (scipy), the DC coefficient not penalised.

>>> import torch
>>> x = torch.zeros(2, 1, 8, 8); x[:, :, :, 4:] = 1.0
>>> TotalVariation().value(x).tolist()  # one unit jump along 8 rows
[8.0, 8.0]
>>> bool(TotalVariation().prox(x, 0.0).equal(x))
True
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

PRIORS = ("tv", "wavelet", "dct")


def _per_sample(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A step/weight as ``[B, 1, 1, 1]`` in ``x``'s dtype and device."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"weight must be a number or one per sample [{x.shape[0]}], got shape {list(t.shape)}")
    if bool((t < 0).any()):
        raise ValueError("weights must be >= 0")
    return t.view(-1, 1, 1, 1)


class Prior:
    """A convex regulariser with a proximal operator (see the module docstring)."""

    name = "prior"

    def value(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any warm start kept between prox calls (a solver calls this when it starts)."""

    def config(self) -> dict:
        return {"prior": self.name}


class _Image(NamedTuple):
    """An image ``[B, C, H, W]`` and its views without the last or the first row or column.
    (Views are made once per prox call: at these sizes making one costs about as much as a
    small tensor operation.)"""

    all: torch.Tensor
    head_rows: torch.Tensor  # [..., :-1, :]
    tail_rows: torch.Tensor  # [..., 1:, :]
    head_cols: torch.Tensor  # [..., :, :-1]
    tail_cols: torch.Tensor  # [..., :, 1:]

    @classmethod
    def of(cls, x: torch.Tensor) -> _Image:
        return cls(x, x[..., :-1, :], x[..., 1:, :], x[..., :, :-1], x[..., :, 1:])


class _Field(NamedTuple):
    """A vector field ``[B, C, 2, H, W]`` (vertical, horizontal components) and views of its
    components, also without their far border (the entries :func:`grad` leaves zero)."""

    all: torch.Tensor
    v: torch.Tensor  # [B, C, H, W]
    h: torch.Tensor
    v_head: torch.Tensor  # v[..., :-1, :]
    h_head: torch.Tensor  # h[..., :, :-1]

    @classmethod
    def of(cls, p: torch.Tensor) -> _Field:
        return cls(p, p[:, :, 0], p[:, :, 1], p[:, :, 0, :-1, :], p[:, :, 1, :, :-1])


def _grad_into(x: _Image, out: _Field) -> torch.Tensor:
    """:func:`grad` of ``x`` written into ``out``, whose far-border entries must be zero (they
    are not written)."""
    torch.sub(x.tail_rows, x.head_rows, out=out.v_head)
    torch.sub(x.tail_cols, x.head_cols, out=out.h_head)
    return out.all


def _divergence_into(p: _Field, out: _Image) -> torch.Tensor:
    """``-grad_adjoint(p)`` written into ``out``, for a ``p`` whose far-border entries are zero
    (three passes instead of five)."""
    torch.add(p.v, p.h, out=out.all)
    out.tail_rows.sub_(p.v_head)
    out.tail_cols.sub_(p.h_head)
    return out.all


def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with a zero at the far border: ``[B, C, H, W] -> [B, C, 2, H, W]``
    (vertical, horizontal)."""
    return _grad_into(_Image.of(x), _Field.of(x.new_zeros((*x.shape[:2], 2, *x.shape[2:]))))


def grad_adjoint(p: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`grad` (minus the divergence): ``[B, C, 2, H, W] -> [B, C, H, W]``.
    The entries of ``p`` at the far border, which :func:`grad` leaves zero, are ignored."""
    p = p.clone()
    p[:, :, 0, -1, :] = 0
    p[:, :, 1, :, -1] = 0
    return _divergence_into(_Field.of(p), _Image.of(torch.empty_like(p[:, :, 0]))).neg_()


class TotalVariation(Prior):
    """Isotropic total variation per channel; prox by FGP (Beck & Teboulle 2009).

    Args:
        iterations: FGP iterations per prox call. Each call starts from the dual of the
            previous call of the same shape (a warm start: inside an outer solver successive
            prox inputs are close, so a few iterations suffice); :meth:`reset` forgets it, so
            a solver that resets at its start is deterministic.
    """

    name = "tv"

    def __init__(self, iterations: int = 10):
        if int(iterations) < 1:
            raise ValueError(f"TV prox iterations must be >= 1, got {iterations!r}")
        self.iterations = int(iterations)
        self._dual: torch.Tensor | None = None

    def reset(self) -> None:
        self._dual = None

    def value(self, x: torch.Tensor) -> torch.Tensor:
        g = _Field.of(grad(x))
        return torch.addcmul(g.v * g.v, g.h, g.h).sqrt_().flatten(1).sum(1)

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``argmin_x ½||x - v||² + t TV(x)`` via the dual ``x = v - t Dᵀp``, ``|p_i| <= 1``.

        Written for small batches (the self-tuning's 2-24 images of 64 px), where the cost is
        per tensor operation more than per pixel: 13 operations per iteration, into buffers
        and views made once per call. The dual's far-border entries start at zero and stay
        zero (the gradient has none there), which :func:`_divergence_into` relies on. Not
        differentiable (the output is detached, as the other priors' prox).
        """
        v, t = v.detach(), _per_sample(t, v).detach()  # t: [B, 1, 1, 1]
        shape = (*v.shape[:2], 2, *v.shape[2:])  # [B, C, 2, H, W]
        warm = self._dual is not None and self._dual.shape == shape
        dual = self._dual.to(v) if warm else v.new_zeros(shape)  # the prior's own buffer: updated in place
        step = (1 / (8 * t.clamp_min(torch.finfo(v.dtype).tiny))).unsqueeze(2)  # [B, 1, 1, 1, 1]
        # the dual p, the extrapolated point r, the next dual q, the gradient D u
        p, r, q, g = (_Field.of(a) for a in (dual, dual.clone(), torch.empty_like(dual), v.new_zeros(shape)))
        u, div = _Image.of(torch.empty_like(v)), _Image.of(torch.empty_like(v))
        n = torch.empty_like(v)
        n_all = n.unsqueeze(2)  # [B, C, 1, H, W]
        s = 1.0
        for _ in range(self.iterations):
            torch.addcmul(v, _divergence_into(r, div), t, out=u.all)  # u = v - t Dᵀr
            torch.addcmul(r.all, _grad_into(u, g), step, out=q.all)  # q = r + D u / (8 t)
            torch.mul(q.v, q.v, out=n).addcmul_(q.h, q.h).rsqrt_().clamp_max_(1.0)  # 1 / max(1, |q_i|)
            q.all.mul_(n_all)  # project on |q_i| <= 1
            s_next = (1 + (1 + 4 * s * s) ** 0.5) / 2
            torch.lerp(p.all, q.all, 1 + (s - 1) / s_next, out=r.all)  # r = q + (s - 1) / s_next (q - p)
            p, q, s = q, p, s_next
        self._dual = p.all
        return torch.addcmul(v, _divergence_into(p, div), t)

    def config(self) -> dict:
        return {"prior": self.name, "iterations": self.iterations}


class _OrthogonalL1(Prior):
    """l1 of the coefficients of an orthogonal transform, some coefficients unpenalised."""

    def _analyse(self, x: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def _synthesise(self, coeffs, shape) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _penalised(self, coeffs) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = self._analyse(x.detach().cpu().double().numpy())
        total = sum(np.abs(c).reshape(c.shape[0], -1).sum(1) for c in self._penalised(coeffs))
        return torch.as_tensor(total, dtype=x.dtype, device=x.device)

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Soft thresholding of the penalised coefficients by ``t`` (exact: the transform is orthogonal)."""
        t = _per_sample(t, v).cpu().double().numpy()
        coeffs = self._analyse(v.detach().cpu().double().numpy())
        for c in self._penalised(coeffs):
            tc = t.reshape((-1,) + (1,) * (c.ndim - 1))
            c[...] = np.sign(c) * np.maximum(np.abs(c) - tc, 0.0)
        out = self._synthesise(coeffs, v.shape)
        return torch.from_numpy(np.ascontiguousarray(out)).to(v.dtype).to(v.device)


class WaveletL1(_OrthogonalL1):
    """l1 of the detail coefficients of a periodised orthogonal wavelet transform (PyWavelets).

    Args:
        wavelet: an orthogonal PyWavelets wavelet name (``"db4"``, ``"haar"``, ``"sym4"``, ...).
        levels: decomposition levels (capped by the image size).
    """

    name = "wavelet"

    def __init__(self, wavelet: str = "db4", levels: int = 3):
        import pywt

        w = pywt.Wavelet(wavelet)
        if not w.orthogonal:
            raise ValueError(f"wavelet {wavelet!r} is not orthogonal; use e.g. 'db4', 'sym4' or 'haar'")
        if int(levels) < 1:
            raise ValueError(f"wavelet levels must be >= 1, got {levels!r}")
        self.wavelet, self.levels = wavelet, int(levels)

    def _level(self, shape) -> int:
        import pywt

        return max(1, min(self.levels, pywt.dwtn_max_level(shape[-2:], self.wavelet)))

    def _analyse(self, x: np.ndarray):
        import pywt

        return pywt.wavedec2(x, self.wavelet, mode="periodization", level=self._level(x.shape), axes=(-2, -1))

    def _penalised(self, coeffs) -> list[np.ndarray]:
        return [c for details in coeffs[1:] for c in details]

    def _synthesise(self, coeffs, shape) -> np.ndarray:
        import pywt

        return pywt.waverec2(coeffs, self.wavelet, mode="periodization", axes=(-2, -1))

    def config(self) -> dict:
        return {"prior": self.name, "wavelet": self.wavelet, "levels": self.levels}


class DCTL1(_OrthogonalL1):
    """l1 of the orthonormal 2-D DCT-II coefficients (scipy), the DC term unpenalised."""

    name = "dct"

    def _analyse(self, x: np.ndarray):
        from scipy.fft import dctn

        c = dctn(x, type=2, norm="ortho", axes=(-2, -1))
        dc = c[..., :1, :1].copy()
        c[..., :1, :1] = 0.0
        return [dc, c]

    def _penalised(self, coeffs) -> list[np.ndarray]:
        return [coeffs[1]]

    def _synthesise(self, coeffs, shape) -> np.ndarray:
        from scipy.fft import idctn

        c = coeffs[1]
        c[..., :1, :1] = coeffs[0]
        return idctn(c, type=2, norm="ortho", axes=(-2, -1))


def make_prior(name: str | Prior) -> Prior:
    """A prior by name (``"tv"``, ``"wavelet"``, ``"dct"``); a :class:`Prior` passes through."""
    if isinstance(name, Prior):
        return name
    if name == "tv":
        return TotalVariation()
    if name == "wavelet":
        return WaveletL1()
    if name == "dct":
        return DCTL1()
    raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")


__all__ = ["Prior", "TotalVariation", "WaveletL1", "DCTL1", "make_prior", "grad", "grad_adjoint", "PRIORS"]
