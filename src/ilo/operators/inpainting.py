"""Inpainting: observe a subset of the pixels, the same pixels in every channel."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import NoiseModel, Operator, RandomSource


class Inpainting(Operator):
    """Pixel-masking operator ``A(x) = x * mask`` (the output keeps the image's shape).

    ``mask`` is ``1`` on observed pixels and ``0`` on missing ones, shared by all channels.
    The operator is its own adjoint (a diagonal 0/1 matrix). Simulated observations are
    zero on missing pixels (noise is added, then the mask is applied again), and
    :meth:`measurement_loss` only looks at observed entries.

    Args:
        input_shape: per-sample image shape ``(C, H, W)``.
        mask: ``{0, 1}`` tensor ``[1 or B, 1, H, W]`` (bool or float); a leading ``1``
            shares the mask across the batch, ``B`` gives each sample its own.
        noise: noise model applied to ``A(x)`` (default: none).

    Use the constructors :meth:`random`, :meth:`box` and :meth:`from_image` rather than
    building masks by hand.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> op = Inpainting.random((3, 8, 8), observed=0.25, generator=g)
        >>> int(op.mask.sum())
        16
        >>> x = torch.rand(2, 3, 8, 8) * 2 - 1
        >>> y = op(x)
        >>> y.shape, float(op.measurement_loss(x, y).max())
        (torch.Size([2, 3, 8, 8]), 0.0)
    """

    task = "inpaint"
    level_name = "observed fraction"
    perceptual_target = "candidate"
    options = ("observed", "box", "mask")
    default_level = 0.1
    typical_seconds = 43.0
    local = True
    classical_method = "biharmonic"
    per_sample_buffers = ("mask",)

    mask: torch.Tensor  # buffer [1 or B, 1, H, W]

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        mask: torch.Tensor,
        noise: NoiseModel | None = None,
        *,
        _recipe: dict[str, Any] | None = None,
    ):
        super().__init__(input_shape, noise)
        _, h, w = self.input_shape
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
        if mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[2:]) != (h, w):
            raise ValueError(f"mask must have shape [1 or B, 1, {h}, {w}], got {list(mask.shape)}")
        mask = mask.float() if mask.dtype == torch.bool else mask.to(torch.get_default_dtype())
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask values must be 0 (missing) or 1 (observed)")
        if bool((mask.flatten(1).sum(1) == 0).any()):
            raise ValueError("mask observes no pixel")
        self.register_buffer("mask", mask)  # [1 or B, 1, H, W]
        self.output_shape = self.input_shape
        self._recipe = dict(_recipe) if _recipe is not None else {"kind": "tensor"}

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def random(
        cls,
        input_shape: tuple[int, int, int],
        observed: float,
        generator: torch.Generator,
        noise: NoiseModel | None = None,
    ) -> Inpainting:
        """Observe exactly ``round(observed * H * W)`` pixels drawn uniformly without replacement.

        The draw is ``torch.randperm(H * W, generator=generator)`` on the generator's device,
        so the same seed gives the same mask. ``observed`` must lie in ``(0, 1]``.
        """
        if isinstance(observed, bool) or not 0.0 < float(observed) <= 1.0:
            raise ValueError(f"observed fraction must be in (0, 1], got {observed!r}")
        _, h, w = (int(s) for s in input_shape)
        count = int(round(float(observed) * h * w))
        if count == 0:
            raise ValueError(f"observed={observed} of {h}x{w} pixels rounds to no pixel at all")
        order = torch.randperm(h * w, generator=generator, device=generator.device)
        flat = torch.zeros(h * w, device=generator.device)
        flat[order[:count]] = 1.0
        recipe = {"kind": "random", "observed": float(observed)}
        return cls(input_shape, flat.view(1, 1, h, w), noise, _recipe=recipe)

    @classmethod
    def box(
        cls,
        input_shape: tuple[int, int, int],
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        noise: NoiseModel | None = None,
    ) -> Inpainting:
        """Hide the box of columns ``[x0, x1)`` and rows ``[y0, y1)``; observe the rest.

        Requires ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``, and the box must not cover
        the whole image.
        """
        _, h, w = (int(s) for s in input_shape)
        for name, val in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1)):
            if isinstance(val, bool) or int(val) != val:
                raise ValueError(f"box coordinate {name} must be an integer, got {val!r}")
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(
                f"box [x0, x1) x [y0, y1) = [{x0}, {x1}) x [{y0}, {y1}) must satisfy "
                f"0 <= x0 < x1 <= W={w} and 0 <= y0 < y1 <= H={h}"
            )
        mask = torch.ones(1, 1, h, w)
        mask[..., y0:y1, x0:x1] = 0.0
        if not bool(mask.any()):
            raise ValueError("the box covers the whole image: nothing would be observed")
        recipe = {"kind": "box", "box": [x0, y0, x1, y1]}
        return cls(input_shape, mask, noise, _recipe=recipe)

    @classmethod
    def from_image(
        cls,
        input_shape: tuple[int, int, int],
        mask_array: Any,
        noise: NoiseModel | None = None,
        *,
        threshold: float = 0.0,
    ) -> Inpainting:
        """Mask from a user's mask picture: white (non-zero) pixels are observed.

        ``mask_array`` is anything ``numpy.asarray`` accepts (an array, a PIL image) of shape
        ``H x W`` or ``H x W x {1, 3, 4}``. A pixel is observed where its value (the largest of
        its colour channels) exceeds ``threshold`` (default: non-zero); for ``H x W x 4``
        (RGBA) fully transparent pixels are missing as well. Lossy (JPEG) masks with near-black
        noise should be thresholded, e.g. ``threshold=127`` for 8-bit pictures.
        """
        _, h, w = (int(s) for s in input_shape)
        arr = np.asarray(mask_array)
        if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
            colour = arr[..., : min(arr.shape[2], 3)].max(axis=2)
            observed = colour > threshold
            if arr.shape[2] == 4:
                observed &= arr[..., 3] > 0
        elif arr.ndim == 2:
            observed = arr > threshold
        else:
            raise ValueError(
                f"mask image must be H x W or H x W x {{1, 3, 4}} channels, got shape {arr.shape}"
            )
        if observed.shape != (h, w):
            raise ValueError(
                f"mask image is {observed.shape[0]}x{observed.shape[1]} (H x W) but the "
                f"operator's images are {h}x{w}; resize the mask first"
            )
        mask = torch.from_numpy(np.ascontiguousarray(observed)).view(1, 1, h, w)
        return cls(input_shape, mask, noise, _recipe={"kind": "image", "threshold": float(threshold)})

    # -- the task -------------------------------------------------------------------------
    @classmethod
    def from_options(cls, shape, generator, *, observed=None, box=None, mask=None, noise=None) -> Inpainting:
        """A random mask of ``observed`` fraction (from ``generator``), the ``box`` ``[x0, y0, x1, y1]``
        hidden, or the ``mask``: a picture at a path (white = observed) or a ``[1, 1, H, W]`` tensor
        (1 = observed); only one of them."""
        opts = cls.check_options({"observed": observed, "box": box, "mask": mask})
        if opts["box"] is not None:
            x0, y0, x1, y1 = opts["box"]
            return cls.box(shape, x0, y0, x1, y1, noise=noise)
        if isinstance(opts["mask"], torch.Tensor):
            return cls(shape, opts["mask"], noise)
        if opts["mask"] is not None:
            from ..images import read_image

            return cls.from_image(shape, np.asarray(read_image(opts["mask"])), noise)
        return cls.random(shape, opts["observed"], generator, noise)

    @classmethod
    def check_options(cls, options):
        if sum(options.get(k) is not None for k in cls.options) > 1:
            raise ValueError("give only one of an observed fraction, a box or a mask image")
        return super().check_options(options)

    @classmethod
    def check_level(cls, level, size=None) -> None:
        if isinstance(level, bool) or not 0.0 < float(level) <= 1.0:
            raise ValueError(f"observed fraction must be in (0, 1], got {level:g}")

    @classmethod
    def sweep_levels(cls, size, quick=False):
        return [0.1, 0.5] if quick else [0.01, 0.05, 0.1, 0.3, 0.5, 1.0]

    @classmethod
    def level_label(cls, level):
        """The observed fraction in percent.

        >>> Inpainting.level_label(0.05)
        '5%'
        """
        return f"{level * 100:g}%"

    @property
    def level(self) -> float:
        """The observed fraction of the pixels (mean over the masks)."""
        return float(self.mask.double().mean())

    def describe(self) -> str:
        return f"inpainting, {self.level * 100:.3g}% of pixels observed"

    def perceptual_pair(self, x, y):
        """The generated image and the "superimposed" image: observed pixels from ``y``, the
        generated ones in the holes (section 4.2 of the paper)."""
        m = self._mask_for(x)
        return x, (m * y + (1 - m) * x).detach()

    def crop(self, box):
        """The mask's pixels in ``box``; ValueError when none of them is observed.

        >>> op = Inpainting.box((3, 8, 8), 0, 0, 4, 8)
        >>> op.crop((2, 0, 6, 3)).mask[0, 0].tolist()
        [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
        """
        x0, y0, x1, y1 = box
        m = self.mask[..., y0:y1, x0:x1]
        if not bool(m.any()):
            raise ValueError(f"the mask observes no pixel in the region {tuple(box)}")
        return Inpainting((self.input_shape[0], y1 - y0, x1 - x0), m, self.noise)

    def keep_observed(self, x, y):
        """Observed pixels from ``y``, the others from ``x``."""
        m = self._mask_for(x)
        return m * y + (1 - m) * x

    def read_observation(self, path):
        """A picture at the image size; ``A`` is applied to it (missing pixels become zero)."""
        return self.A(super().read_observation(path))

    # -- operator -------------------------------------------------------------------------
    def _mask_for(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mask holds {self.mask.shape[0]} masks for a batch of {x.shape[0]}")
        return self.mask.to(x.dtype)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """``x * mask``: ``[B, C, H, W] -> [B, C, H, W]``."""
        return x * self._mask_for(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``y * mask`` (the operator is self-adjoint)."""
        return y * self._mask_for(y)

    def forward(self, x: torch.Tensor, generator: RandomSource = None) -> torch.Tensor:
        """Simulate ``mask * noise(mask * x)``: missing pixels stay exactly zero."""
        return self.noise(self.A(x), generator) * self._mask_for(x)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of ``(x - y)^2`` over the observed entries of each sample: ``[B]``.

        The count is per sample and per channel (``C * number of observed pixels``).
        """
        mask = self._mask_for(x)
        if y.shape != x.shape:
            raise ValueError(f"y must have the image's shape {list(x.shape)}, got {list(y.shape)}")
        se = ((x - y).pow(2) * mask).flatten(1).sum(1)  # [B]
        count = mask.flatten(1).sum(1) * x.shape[1]  # [1 or B]
        return se / count

    def observation_image(self, y: torch.Tensor) -> torch.Tensor:
        """Observed pixels as they are, missing pixels black (``-1``), clipped to ``[-1, 1]``."""
        mask = self._mask_for(y)
        return torch.where(mask > 0, y, torch.full_like(y, -1.0)).clamp(-1.0, 1.0)

    def config(self) -> dict:
        cfg = super().config()
        cfg["mask"] = dict(self._recipe)
        cfg["mask_batch"] = int(self.mask.shape[0])
        cfg["observed_fraction"] = float(self.mask.double().mean())
        return cfg
