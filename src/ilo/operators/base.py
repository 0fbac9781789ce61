"""Forward-operator base class and noise models (deepinv-style ``Physics`` objects).

An operator is an ``nn.Module`` holding everything that defines the measurement (masks,
filters, sign patterns as registered buffers, drawn from an explicit ``torch.Generator``).
The same object simulates the observation and defines the loss::

    y = op(x, generator=g)                 # = op.noise(op.A(x)): simulate
    loss = op.measurement_loss(G(z), y)    # [B]: what the solvers minimise

Images are ``[B, C, H, W]`` in ``[-1, 1]`` (the generators' range).

An operator class also carries its task's semantics, so that no code outside the operators
(and the preset table, :mod:`ilo.solvers.presets`) switches on a task name:

- ``task``: the key of the task in :data:`ilo.operators.TASKS` and in the preset table;
- ``level``: one number saying how much is measured, with one meaning per task
  (``level_name``; e.g. the observed fraction, or the downsampling factor);
- :meth:`perceptual_pair`: what the perceptual loss terms compare (None: no image-space data);
- :meth:`describe`: a one-line description; :meth:`config`: a JSON record;
- :meth:`read_observation`: an observation file of the task;
- for restoring photographs (:mod:`ilo.faces`): ``local`` (each measurement depends on a few
  nearby pixels, so the operator can act on a region of a photo: :meth:`crop`),
  :meth:`observation_scale` (image pixels per observed pixel), :meth:`keep_observed` and
  ``classical_method`` (the classical method of :func:`ilo.solvers.solve` that restores a whole photo);
- class methods that build an operator from options (:meth:`from_options`), check a level
  (:meth:`check_level`) and list the levels a benchmark sweeps (:meth:`sweep_levels`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar
from collections.abc import Callable, Sequence

import torch
from torch import nn

RandomSource = torch.Generator | Sequence[torch.Generator] | None


def randn_like(x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``.

    ``generator`` may be one ``torch.Generator`` for the whole batch or a sequence with one
    per sample, so that a sample's noise does not depend on the batch it is in.
    """
    if generator is None or isinstance(generator, torch.Generator):
        dev = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in generator]
    ).to(x.device)


class NoiseModel(nn.Module):
    """Maps clean measurements to noisy ones; ``sigma`` is the std in measurement units."""

    sigma: float = 0.0

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract


class NoNoise(NoiseModel):
    """Noiseless measurements."""

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        return y


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y + sigma * n``, optionally clipped to ``clip = (lo, hi)``.

    Args:
        sigma: standard deviation in measurement units (>= 0).
        clip: value range to clip to after adding noise (e.g. ``(-1, 1)`` for images), or None.
    """

    def __init__(self, sigma: float, clip: tuple[float, float] | None = None):
        super().__init__()
        if not sigma >= 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.clip = clip

    def forward(self, y: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        out = y + self.sigma * randn_like(y, generator)
        return out.clamp(*self.clip) if self.clip is not None else out

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, clip={self.clip}"


class Operator(nn.Module):
    """A forward operator ``y = noise(A(x))``.

    Subclasses implement :meth:`A` (and :meth:`A_adjoint` when ``linear``).
    ``input_shape`` is the per-sample image shape ``(C, H, W)`` the operator accepts.
    """

    linear: bool = True
    #: the task's key in :data:`ilo.operators.TASKS` and the preset table
    task: str = "operator"
    #: what :attr:`level` measures (one meaning per task)
    level_name: str = "level"
    #: the options :meth:`from_options` reads (:class:`ilo.pipeline.ProblemSpec` fields); the first is the level
    options: tuple[str, ...] = ()
    #: the level used when no option is given
    default_level: float | None = None
    #: True when the task's observations are noisy (Stochastic Noise Addition applies)
    noisy: bool = False
    #: what the target of :meth:`perceptual_pair` depends on: ``"observation"`` (``y`` only, so its
    #: features can be computed once), ``"candidate"`` (also ``x``), or None (no image-space target)
    perceptual_target: str | None = None
    #: True when each measurement depends on a few nearby pixels only (:meth:`crop` works)
    local: bool = False
    #: the generator-free method of :func:`ilo.solvers.solve` that restores a whole photo (None: none)
    classical_method: str | None = None
    #: the self-tuned ILO's CSGM stage under ``SelectionConfig.csgm = "auto"`` (``"method"``,
    #: ``"own"`` or ``"challenge"``; docs/BENCHMARKS.md, "All 29 eval faces", "In range" and
    #: "Super-resolution in range (session 8)")
    self_tuning_csgm: str = "method"
    #: seconds of the default self-tuned ILO at its default level on the demo's four 64-px images
    #: (200 steps × 2 restarts, one thread, idle; docs/PERFORMANCE.md §20): a hint to start the
    #: longest solves first where several run side by side (:func:`ilo.demo.solve_tasks`)
    typical_seconds: float = 30.0
    #: names of buffers that may hold one entry per sample (first dim = batch), e.g. a mask per image
    per_sample_buffers: tuple[str, ...] = ()
    #: the shape of one sample's measurement, set by each subclass's ``__init__``
    output_shape: tuple[int, ...]

    def __init__(self, input_shape: tuple[int, int, int], noise: NoiseModel | None = None):
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        self.input_shape: tuple[int, int, int] = (c, h, w)
        self.noise = noise if noise is not None else NoNoise()

    # -- to implement ---------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is not linear")

    # -- shared ---------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} expects [B, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")

    def forward(self, x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        """Simulate an observation: ``noise(A(x))``."""
        return self.noise(self.A(x), generator)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error between ``A(x)`` and ``y``: ``[B]``."""
        r = self.A(x) - y
        return r.flatten(1).pow(2).mean(1)

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        """A picture of the observation for display, ``[B, C, h, w]`` in ``[-1, 1]``."""
        return y

    @property
    def level(self) -> float | None:
        """How much is measured, in the unit of :attr:`level_name` (None: the operator has no level)."""
        return None

    def perceptual_pair(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The two images ``[B, C', H', W']`` the perceptual loss terms compare for a candidate
        ``x`` and the observation ``y``, or None when the task has no image-space observation."""
        return None

    def describe(self) -> str:
        """A one-line description of the measurement."""
        return type(self).__name__

    def read_observation(self, path: str | Path) -> torch.Tensor:
        """An observation of this operator from an image file: ``[1, C, h, w]`` (``output_shape``).

        Raises ValueError (:class:`ilo.images.ImageError` for unreadable files) on a wrong size.
        """
        from ..images import pil_to_tensor, read_image

        p = Path(path)
        im = read_image(p).convert("RGB")
        _, h, w = self.output_shape
        if im.size != (w, h):
            raise ValueError(f"observation {p.name} is {im.size[0]}x{im.size[1]}; this operator needs {w}x{h} "
                             "(the generator's frame; the faces of a photograph at its own size: ilo restore)")
        return pil_to_tensor(im)

    def gram(self) -> torch.Tensor | None:
        """``A Aᵀ`` ``[m, m]`` in float64 where the operator has it in closed form (one matrix for
        the whole batch); None where it does not (a caller then forms it from ``A`` and ``A_adjoint``)."""
        return None

    def crop(self, box: tuple[int, int, int, int]) -> Operator:
        """The operator restricted to the observed pixels ``box = (x0, y0, x1, y1)`` (observation
        coordinates, end exclusive): it acts on the image region under them. Local operators only."""
        raise ValueError(f"{type(self).__name__} measures the whole image; it cannot act on a region")

    def keep_observed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]`` with the pixels that ``y`` determines exactly put back (default: ``x``)."""
        return x

    # -- the task's semantics at class level ------------------------------------------------
    #: ``from_options(shape, generator, **options)``: the operator for images of ``shape`` from the
    #: task's :attr:`options` (None = not given), random parts drawn from ``generator``. A class
    #: method of each task's class, whose keyword-only parameters are exactly its :attr:`options`
    #: (hence declared here as a callable, not a method every class must accept ``**options`` in).
    from_options: ClassVar[Callable[..., Operator]]

    @classmethod
    def observation_scale(cls, options: dict[str, Any]) -> int:
        """Image pixels per observed pixel along each side for these options (1: same grid)."""
        return 1

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in; ValueError on options that are invalid for any image size."""
        level = options.get(cls.options[0]) if cls.options else None
        if cls.options and level is None and all(options.get(k) is None for k in cls.options):
            options = {**options, cls.options[0]: cls.default_level}
            level = cls.default_level
        if level is not None:
            cls.check_level(level)
        return options

    @classmethod
    def level_options(cls, level: float) -> dict[str, Any]:
        """The options of :meth:`from_options` that ask for ``level``."""
        return {cls.options[0]: level}

    @classmethod
    def stack(cls, ops: Sequence[Operator]) -> Operator:
        """One operator for a batch from operators of one image each that differ only in their
        per-sample buffers (e.g. a mask per image): those are concatenated, ``[len(ops), ...]``."""
        return ops[0].with_buffers(**{n: torch.cat([op.get_buffer(n) for op in ops]) for n in cls.per_sample_buffers})

    @classmethod
    def check_level(cls, level: float, size: int | None = None) -> None:
        """ValueError unless ``level`` is a valid level (for images ``size`` pixels wide, when given)."""

    @classmethod
    def sweep_levels(cls, size: int, quick: bool = False) -> list[float]:
        """The levels a benchmark sweeps for images ``size`` pixels wide (two with ``quick``)."""
        return []

    @classmethod
    def level_label(cls, level: float) -> str:
        """A short label of a level for tables and grids."""
        return f"{level:g}"

    def batch_repeat(self, r: int) -> Operator:
        """The operator for a batch where every sample is repeated ``r`` times in a row
        (``x.repeat_interleave(r, 0)``), e.g. for restarts run as one batch. Shared buffers
        are reused; per-sample buffers are repeated."""
        per_sample = [n for n in self.per_sample_buffers if getattr(self, n).shape[0] > 1]
        if r == 1 or not per_sample:
            return self
        return self.with_buffers(**{n: self.get_buffer(n).repeat_interleave(r, 0) for n in per_sample})

    def with_buffers(self, **buffers: torch.Tensor) -> Operator:
        """A copy of the operator with the named per-sample buffers (:attr:`per_sample_buffers`)
        replaced, e.g. another mask per image; every other buffer, module and attribute is
        shared with this operator, which is left unchanged. A new buffer must have the old
        one's shape past its first (batch) dimension, ``[1 or B', ...]``; its values are not
        checked (e.g. that a mask holds zeros and ones).

        >>> from ilo.operators import Inpainting
        >>> op = Inpainting.random((1, 4, 4), observed=0.5, generator=torch.Generator().manual_seed(0))
        >>> two = op.with_buffers(mask=torch.cat([op.mask, 1 - op.mask]))
        >>> two.mask.shape[0], op.mask.shape[0], bool((two.A(torch.ones(2, 1, 4, 4)).sum((1, 2, 3)) == 8).all())
        (2, 1, True)
        """
        new = copy.copy(self)
        new._buffers = dict(self._buffers)
        for n, b in buffers.items():
            if n not in self.per_sample_buffers:
                raise ValueError(f"{type(self).__name__} has no per-sample buffer {n!r}; "
                                 f"its per-sample buffers: {', '.join(self.per_sample_buffers) or 'none'}")
            old = self.get_buffer(n)
            if b.ndim != old.ndim or b.shape[1:] != old.shape[1:]:
                raise ValueError(f"buffer {n!r} must have shape [B, {', '.join(map(str, old.shape[1:]))}], "
                                 f"got {list(b.shape)}")
            new._buffers[n] = b
        return new

    def config(self) -> dict:
        """JSON-serialisable description (written next to results)."""
        return {"task": self.task, "level_name": self.level_name, "level": self.level,
                "input_shape": list(self.input_shape), "noise_sigma": self.noise.sigma}


class Identity(Operator):
    """``y = x``, noiseless: the observation is an image itself (e.g. the face classifier
    guidance starts from, whose distance from the candidate is then the measurement loss).

    >>> op = Identity((3, 4, 4))
    >>> x = torch.zeros(1, 3, 4, 4)
    >>> bool(torch.equal(op(x), x)), op.perceptual_pair(x, x + 1)[1].shape
    (True, torch.Size([1, 3, 4, 4]))
    """

    task = "identity"
    perceptual_target = "observation"

    def __init__(self, input_shape: tuple[int, int, int], noise: NoiseModel | None = None):
        super().__init__(input_shape, noise)
        self.output_shape = self.input_shape

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        self.check_input(x)
        return x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self.check_input(y)
        return y

    def perceptual_pair(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def describe(self) -> str:
        return "the image itself"
