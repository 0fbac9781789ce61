"""The held-out part of the measurements and its statistics: the split into fit and validation
parts (:func:`split`, :class:`HeldOut`), the units the held-out error is counted over
(:func:`held_out_units`), each candidate's error per unit (:func:`unit_errors`) and the standard
error of a paired difference (:func:`paired_se`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...operators import Inpainting
from ...operators.base import Operator
from ...rng import stream
from ..config import SelectionConfig


def is_box(operator: Operator) -> bool:
    """Whether ``operator`` hides a box-shaped hole (:meth:`Inpainting.box`)."""
    return isinstance(operator, Inpainting) and operator.config()["mask"].get("kind") == "box"



class HeldOut(Operator):
    """The measurements of ``base`` where ``keep`` is 1: ``A(x) = keep * base.A(x)``, the
    measurement loss the mean over the kept entries only. ``keep``: ``[1 or B, *output_shape]``
    of zeros and ones. The perceptual pair compares against the observation with the other
    entries taken from the candidate, so nothing outside ``keep`` is read from ``y``.
    """

    per_sample_buffers = ("keep",)
    keep: torch.Tensor  # buffer [1 or B, *output_shape]
    base: Operator

    def __init__(self, base: Operator, keep: torch.Tensor):
        super().__init__(base.input_shape, base.noise)
        self.base = base
        self.register_buffer("keep", keep.to(torch.get_default_dtype()))
        self.output_shape = base.output_shape
        self.linear, self.noisy = base.linear, base.noisy
        self.perceptual_target = "candidate" if base.perceptual_target is not None else None

    @property
    def level(self) -> float | None:
        return self.base.level

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep.to(x.dtype) * self.base.A(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.A_adjoint(self.keep.to(y.dtype) * y)

    def measurement_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.A(x) - self.keep.to(y.dtype) * y
        count = self.keep.expand_as(r).flatten(1).sum(1).clamp_min(1)
        return r.flatten(1).pow(2).sum(1) / count

    def perceptual_pair(self, x, y):
        k = self.keep.to(x.dtype)
        return self.base.perceptual_pair(x, k * y + (1 - k) * self.base.A(x).detach())

    def describe(self) -> str:
        return f"{self.base.describe()}, a subset of the measurements"

    def batch_repeat(self, r: int) -> HeldOut:
        new = copy.copy(self)
        new._modules = {**self._modules, "base": self.base.batch_repeat(r)}
        new._buffers = dict(self._buffers)
        if self.keep.shape[0] > 1:
            new._buffers["keep"] = self.keep.repeat_interleave(r, 0)
        return new


def split(operator: Operator, y: torch.Tensor, seeds: Sequence[int], config: SelectionConfig
          ) -> tuple[Operator, torch.Tensor, Operator, dict]:
    """Fit and validation parts of the observed entries: ``(fit operator, y restricted to it,
    validation operator, record)``; image ``i``'s split from the stream ``(seeds[i], "holdout")``."""
    gens = [stream(s, "holdout") for s in seeds]
    B = y.shape[0]
    if isinstance(operator, Inpainting):
        mask = operator.mask.expand(B, -1, -1, -1)
        if is_box(operator) and config.ring:
            held, kind = ring(mask, config.ring), "patches of the ring around the hole"
        elif is_box(operator):
            held, kind = _band_patches(mask, config.patch, gens), "patches next to the hole"
        else:
            u = torch.stack([torch.rand(mask.shape[1:], generator=g) for g in gens]).to(mask)
            held, kind = mask * (u < config.holdout).to(mask), "random observed pixels"
        held = _nonempty(held, mask)
        fit: Operator = Inpainting(operator.input_shape, mask - held, operator.noise)
        val: Operator = Inpainting(operator.input_shape, held, operator.noise)
        keep = mask - held
    else:
        shape = (1, *y.shape[2:]) if y.ndim == 4 else tuple(y.shape[1:])  # pixels: all channels together
        u = torch.stack([torch.rand(shape, generator=g) for g in gens]).to(y)
        held = _nonempty((u < config.holdout).to(y), torch.ones_like(u)).expand_as(y).contiguous()  # per pixel
        keep = 1 - held
        fit, val = HeldOut(operator, keep), HeldOut(operator, held)
        kind = "random measurements" if y.ndim != 4 else "random low-resolution pixels"
    record = {"rule": "holdout", "kind": kind, "fraction": config.holdout, "seeds": [int(s) for s in seeds],
              "stream": "holdout", "held_out": held.flatten(1).sum(1).tolist()}
    return fit, keep * y, val, record


def _band_patches(mask: torch.Tensor, p: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Half of the ``p x p`` patches (drawn per image) of the observed band of width ``p``
    around the missing pixels: ``[B, 1, H, W]``."""
    H, W = mask.shape[-2:]
    band = F.max_pool2d(1 - mask, 2 * p + 1, stride=1, padding=p) * mask
    blocks = F.max_pool2d(band, p, stride=p, ceil_mode=True)
    pick = torch.stack([torch.rand(blocks.shape[1:], generator=g) for g in gens]).to(mask) < 0.5
    up = (blocks * pick).repeat_interleave(p, -2).repeat_interleave(p, -1)[..., :H, :W]
    return (up > 0).to(mask) * band


def ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Every observed pixel within ``width`` pixels (horizontally, vertically or diagonally) of
    a missing one: ``[B, 1, H, W]`` for a mask ``[B, 1, H, W]``. Held out whole, it enlarges a
    box-shaped hole by ``width`` on every side, so the candidates fitted on the rest must fill
    a bigger box and are scored where filling is as hard as in the hole.

    >>> m = torch.ones(1, 1, 5, 5); m[..., 2, 2] = 0
    >>> ring(m, 1)[0, 0].tolist()[1:4]
    [[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0]]
    """
    return F.max_pool2d(1 - mask, 2 * width + 1, stride=1, padding=width) * mask


def _nonempty(held: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``held`` with at least one entry per image, and at least one observed entry left out of it.
    ValueError where an image has fewer than two observed entries (nothing to hold out)."""
    held = held.clone()
    for i in range(held.shape[0]):
        obs = observed[i].flatten().nonzero().flatten()
        if len(obs) < 2:
            what = "pixel" if observed.ndim == 4 else "measurement"
            raise ValueError(f"the self-tuned ILO chooses its output on held-out measurements, and with "
                             f"{len(obs)} observed {what}{'s' * (len(obs) != 1)} there is nothing to hold out; "
                             "use another method (csgm, pulse, a classical one) or the paper's ILO (extend=False)")
        h = held[i].view(-1)
        if h.sum() == 0:
            h[obs[0]] = 1
        if (observed[i].flatten() - h).sum() == 0:
            h[obs[-1]] = 0
    return held


def held_out_units(y: torch.Tensor, patch: int | None = None) -> torch.Tensor:
    """The unit of every entry of an observation ``y [B, *output_shape]`` for the standard
    error of a held-out estimate: ``[*output_shape]`` integer labels. Image-shaped outputs:
    one unit per pixel (its channels together), or with ``patch`` one per ``patch x patch``
    block (the held-out patches next to a box, whose pixels are correlated); other outputs:
    one unit per measurement.

    >>> held_out_units(torch.zeros(1, 3, 2, 4), patch=2).tolist()[0]
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if y.ndim != 4:
        return torch.arange(y[0].numel(), device=y.device).view(y.shape[1:])
    H, W = y.shape[-2:]
    i, j = torch.arange(H, device=y.device)[:, None], torch.arange(W, device=y.device)[None, :]
    label = (i // patch) * -(-W // patch) + j // patch if patch else i * W + j
    return label.expand(y.shape[1:])


def unit_errors(val: Operator, cands: torch.Tensor, y: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Per-unit held-out squared errors of ``cands [K, B, C, H, W]`` on the validation part
    ``val`` (a :class:`HeldOut` or an :class:`~ilo.operators.Inpainting` mask) of ``y``, units
    from :func:`held_out_units`: ``[K, B, U]``, each unit's summed squared residual scaled so
    that an image's mean over its held-out units is its held-out estimate
    (``val.measurement_loss``); NaN for units with nothing held out."""
    mask = val.keep if isinstance(val, HeldOut) else val.get_buffer("mask")
    held = mask.to(y).expand_as(y).flatten(1)  # [B, N]
    idx = units.expand_as(y).flatten(1)
    B, U = y.shape[0], int(units.max()) + 1
    count = y.new_zeros(B, U).scatter_add_(1, idx, held)
    present = count > 0
    scale = present.sum(1, keepdim=True) / count.sum(1, keepdim=True)  # [B, 1]
    sums = torch.stack([y.new_zeros(B, U).scatter_add_(1, idx, (val.A(c) - held.view_as(y) * y).pow(2).flatten(1))
                        for c in cands])
    return (sums * scale).masked_fill(~present, float("nan"))


def paired_se(units: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Standard error of every candidate's held-out estimate minus the reference's:
    ``std(d) / sqrt(n)`` over an image's ``n`` held-out units of the paired differences
    ``d = units[k] - units[ref]``. ``units [K, B, U]`` (:func:`unit_errors`), ``ref [B]``:
    ``[K, B]``; 0 for the reference itself, infinite where ``n < 2`` and ``d`` is not zero
    (one unit has no spread to judge a difference by, so the candidate never beats the
    reference by a margin).

    >>> u = torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]])  # two candidates, one image, two units
    >>> paired_se(u, torch.tensor([1])).tolist()
    [[1.0], [0.0]]
    """
    base = units[ref, torch.arange(units.shape[1])]  # [B, U]
    present = ~base.isnan()
    n = present.sum(1).clamp_min(1)
    d = torch.where(present, units - base, torch.zeros_like(units))
    dev = torch.where(present, d - d.sum(2, keepdim=True) / n[:, None], torch.zeros_like(d))
    se = (dev.pow(2).sum(2) / (n - 1).clamp_min(1) / n).sqrt()
    return se.masked_fill((n < 2) & (d.abs().sum(2) > 0), float("inf"))
