"""Compressed sensing with a partial circulant matrix with random signs, applied by FFTs."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import torch

from .base import NoiseModel, Operator

DENSE_LIMIT = 4096


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """FFTs run in float64 for float64 inputs and in float32 (complex64) otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class CompressedSensing(Operator):
    """``A = P_Ω C(g) D`` over the flattened image (``n = C * H * W`` entries).

    * ``D = diag(s)``, ``s`` i.i.d. uniform random signs ``±1``;
    * ``C(g)`` circular convolution with ``g ~ N(0, I_n / m)``,
      ``(C(g) u)_k = Σ_j g_j u_{(k - j) mod n}``;
    * ``P_Ω`` keeps the ``m`` entries of a uniformly random subset ``Ω`` (sorted).

    With the ``1/m`` variance, ``E ||A x||^2 = ||x||^2`` for every fixed ``x``.
    ``A`` and ``A_adjoint = D C(g)^T P_Ω^T`` (``C^T``: circular correlation, the conjugate
    spectrum) run with real FFTs, ``O(n log n)`` time; the buffers are ``O(n)``: the
    spectrum of ``g`` (stored as real/imaginary pairs), the signs and the indices of ``Ω``.
    No ``m x n`` matrix is ever formed (except by :meth:`dense_matrix`, for tests).

    Draws, in this order and on the generator's device: signs, ``g``, ``Ω``.

    Args:
        input_shape: per-sample image shape ``(C, H, W)``.
        measurements: a fraction of ``n`` in ``(0, 1]`` (``m = max(1, round(frac * n))``)
            or an ``int`` count ``1 <= m <= n``.
        generator: the ``torch.Generator`` the matrix is drawn from.
        noise: noise model applied to ``A(x)`` (default: none).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> op = CompressedSensing((1, 4, 4), measurements=0.5, generator=g)
        >>> op.m, op(torch.ones(2, 1, 4, 4)).shape
        (8, torch.Size([2, 8]))
        >>> M = op.dense_matrix()  # [m, n], small sizes only
        >>> x = torch.randn(1, 1, 4, 4)
        >>> bool(torch.allclose(op.A(x), x.flatten(1) @ M.T, atol=1e-5))
        True
    """

    task = "cs"
    level_name = "measurements m/n"
    options = ("measurements",)
    default_level = 0.1
    typical_seconds = 34.0

    signs: torch.Tensor  # buffer [n]
    g_spectrum: torch.Tensor  # buffer, real view of the complex spectrum
    indices: torch.Tensor  # buffer [m] int64

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        measurements: float | int,
        generator: torch.Generator,
        noise: NoiseModel | None = None,
    ):
        super().__init__(input_shape, noise)
        self.n = n = math.prod(self.input_shape)
        self.m = m = self._count(measurements, n)
        dev = generator.device
        signs = torch.randint(0, 2, (n,), generator=generator, device=dev).mul_(2).sub_(1)
        g = torch.randn(n, generator=generator, device=dev).div_(math.sqrt(m))
        omega = torch.randperm(n, generator=generator, device=dev)[:m].sort().values
        spectrum = torch.fft.rfft(g.double())  # [n // 2 + 1] complex128, stored rounded
        self.register_buffer("signs", signs.to(torch.get_default_dtype()))  # [n]
        # A real view [n // 2 + 1, 2] so that .double() / .half() convert it with the rest.
        self.register_buffer("g_spectrum", torch.view_as_real(spectrum).to(torch.get_default_dtype()).contiguous())
        self.register_buffer("indices", omega)  # [m] int64, sorted
        self.output_shape = (m,)

    @classmethod
    def from_options(cls, shape, generator, *, measurements=None, noise=None) -> CompressedSensing:
        return cls(shape, float(cls.check_options({"measurements": measurements})["measurements"]), generator, noise)

    @classmethod
    def check_level(cls, level, size=None) -> None:
        if isinstance(level, bool) or not 0.0 < float(level) <= 1.0:
            raise ValueError(f"measurement fraction must be in (0, 1], got {level:g}")

    @classmethod
    def sweep_levels(cls, size, quick=False):
        return [0.05, 0.25] if quick else [0.01, 0.05, 0.1, 0.25, 0.5]

    @classmethod
    def level_label(cls, level):
        return f"{level * 100:g}%"

    @property
    def level(self) -> float:
        """The fraction of measurements ``m / n``."""
        return self.m / self.n

    def describe(self) -> str:
        return f"compressed sensing, partial circulant, m = {self.level * 100:.3g}% of n"

    def read_observation(self, path):
        """``m`` measurements from a ``.npy`` file: ``[1 or B, m]``."""
        import numpy as np

        from ..images import ImageError

        p = Path(path)
        if p.suffix != ".npy":
            raise ValueError(f"compressed-sensing observations are .npy files of {self.m} measurements, got {p.name}")
        if not p.is_file():
            raise ImageError(f"observation not found: {p}")
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"cannot read {p}: {e}") from None
        a = a.reshape(1, -1) if a.ndim == 1 else a
        if a.shape[-1] != self.m:
            raise ValueError(f"{p.name} holds {a.shape[-1]} measurements; the operator (same level and seed) has {self.m}")
        return torch.from_numpy(a.astype(np.float32))

    @staticmethod
    def _count(measurements: float | int, n: int) -> int:
        if isinstance(measurements, bool):
            raise TypeError("measurements must be a fraction (float) or a count (int), not a bool")
        if isinstance(measurements, numbers.Integral):
            if not 1 <= measurements <= n:
                raise ValueError(f"measurement count must be in [1, n={n}], got {measurements}")
            return int(measurements)
        frac = float(measurements)
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"measurement fraction must be in (0, 1], got {measurements!r}")
        return max(1, int(round(frac * n)))

    def _spectrum(self, work: torch.dtype) -> torch.Tensor:
        return torch.view_as_complex(self.g_spectrum.to(work))  # [n // 2 + 1]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, m]``: ``P_Ω irfft(rfft(g) * rfft(s * x))``."""
        self.check_input(x)
        work = _work_dtype(x.dtype)
        # Written so that at most two [B, n]-sized temporaries are alive at a time.
        spec = torch.fft.rfft(x.flatten(1).to(work) * self.signs.to(work))  # [B, n // 2 + 1]
        conv = torch.fft.irfft(spec.mul_(self._spectrum(work)), n=self.n)  # [B, n]
        del spec
        return conv.index_select(1, self.indices).to(x.dtype)  # [B, m]

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``[B, m] -> [B, C, H, W]``: ``s * irfft(conj(rfft(g)) * rfft(P_Ω^T y))``."""
        if y.ndim != 2 or y.shape[1] != self.m:
            raise ValueError(f"expected [B, {self.m}], got {list(y.shape)}")
        work = _work_dtype(y.dtype)
        v = y.new_zeros(y.shape[0], self.n, dtype=work).index_copy(1, self.indices, y.to(work))  # [B, n]
        spec = torch.fft.rfft(v)  # [B, n // 2 + 1]
        del v
        corr = torch.fft.irfft(spec.mul_(self._spectrum(work).conj()), n=self.n)  # [B, n]
        del spec
        return corr.mul_(self.signs.to(work)).to(y.dtype).view(y.shape[0], *self.input_shape)

    def gram(self) -> torch.Tensor:
        """``A Aᵀ = P_Ω C(g) C(g)ᵀ P_Ωᵀ`` ``[m, m]`` in float64 (``D Dᵀ = I``): ``C(g) C(g)ᵀ`` is the
        circulant of ``g``'s circular autocorrelation ``r = irfft(|rfft(g)|²)``, so entry ``(i, j)``
        is ``r[(Ω_i - Ω_j) mod n]``: one FFT instead of ``m`` adjoints and ``m`` forwards."""
        r = torch.fft.irfft(self._spectrum(torch.float64).abs().pow(2), n=self.n)  # [n]
        return r[(self.indices[:, None] - self.indices[None, :]) % self.n]

    def dense_matrix(self) -> torch.Tensor:
        """The ``[m, n]`` matrix of ``A`` (in the buffers' dtype), for tests; ``n <= 4096`` only."""
        if self.n > DENSE_LIMIT:
            raise ValueError(f"dense_matrix is for tests: n = {self.n} > {DENSE_LIMIT}")
        eye = torch.eye(self.n, dtype=self.signs.dtype, device=self.signs.device)
        return self.A(eye.view(self.n, *self.input_shape)).T.contiguous()  # [m, n]

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        """The back-projection ``A^T y`` as an image, min-max stretched to ``[-1, 1]`` per sample."""
        img = self.A_adjoint(y)
        flat = img.flatten(1)
        lo = flat.min(1, keepdim=True).values
        hi = flat.max(1, keepdim=True).values
        span = hi - lo
        out = (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny) * 2 - 1
        return torch.where(span > 0, out, torch.zeros_like(out)).view_as(img)

    def config(self) -> dict:
        cfg = super().config()
        cfg.update(measurements=self.m, fraction=self.m / self.n, matrix="partial_circulant_random_signs")
        return cfg

    def extra_repr(self) -> str:
        return f"m={self.m}, n={self.n}"
