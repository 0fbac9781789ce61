"""How much of the generator's face to paste, chosen per face on held-out measurements (no truth).

A 64-px generator of synthetic faces caps what it can draw of a real face in a photo; where the
task's classical restoration is better (non-local means at sigma 25, biharmonic interpolation
from 30 % of the pixels), pasting the generator's face over it loses (docs/FACES.md). So every
face's output inside its region is a blend,

.. math::
    x = C + a \\, \\alpha \\, (X - C), \\qquad a \\in \\{1/4, 1/2, 3/4, 1\\},
    \\quad X \\in \\{W P,\\; W P + C(y - A W P)\\},

or the classical restoration ``C`` (the background) alone; ``W P`` is the generator's face warped
into the photo, ``W P + C(y - A W P)`` the same face plus the classical restoration of its
residual observation (``"residual"``: what the measurements say the face lacks, restored by the
task's classical method; :func:`classical_without` with ``base``), ``alpha`` the feathered window
(:func:`~ilo.faces.paste.feather_window`). ``"face@1"`` is the pasted face as it was before this
choice.

The candidate is chosen as the self-tuned ILO chooses (:mod:`ilo.solvers.selection`): a random
``fraction`` of the measurements the face determines (pixels, all channels together; the
face's :class:`~ilo.faces.warp.WarpedOperator` weight) is held out (:func:`held_out`, from the
stream ``(seed, "holdout")``); the solve runs on the rest (``P_fit``: the same solve as the face's
own, one batch of two rows, :func:`fit_and_all`) and the classical method restores the photo
(and the residual) without them (``C_fit``, :func:`classical_without`: inpainting leaves them
unobserved, the other tasks fill them by biharmonic interpolation of the observation first);
each candidate built from ``P_fit`` and ``C_fit`` is scored by its squared error on the held-out
measurements (:func:`estimates`), and the one with the lowest estimate plus ``z`` standard
errors of its paired difference to ``C`` alone (the reference) is taken (:func:`choose_weight`).
The output pastes the candidate of that kind and weight built from the face solved on all
measurements (:func:`residual_image`, :func:`paste_region`). The held-out fraction (0.15) is the
self-tuning's default; the margin ``z`` = 0 (the lowest estimate) and the residual candidates
were decided on the tuning photos (docs/FACES.md: the margin replayed at 0 to 3 from one run,
0 best for every task by up to 0.1 dB; with the residual candidates +0.03 to +0.18 dB).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..operators import Inpainting
from ..operators.base import Operator
from ..rng import stream
from ..solvers.selection.choice import choose as choose_candidate
from ..solvers.selection.heldout import paired_se
from .align import sampling_grid
from .paste import classical_restore, feather_window
from .warp import WarpedOperator, warp

#: the blending weights tried per face (0: the classical restoration, 1: the generator's face)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the fraction of a face's measurements held out, and the margin in standard errors
HOLDOUT, Z = 0.15, 0.0
#: observation pixels of context around a face's region for the classical restoration without the held-out part
PAD = 8


@dataclass(frozen=True)
class WeightChoice:
    """The choice of one face's paste: the candidates tried (``"classical"``, ``"face@<a>"``,
    ``"residual@<a>"``), their held-out estimates (mean squared error over the held-out pixels,
    channels summed) and standard errors against ``"classical"``, the chosen one, its weight and
    kind (``"face"``: the generator's face, ``"residual"``: the face plus the classical
    restoration of its residual), and how many pixels were held out with which seed."""

    candidates: list[str]
    estimates: list[float]
    se: list[float]
    choice: str
    weight: float
    kind: str
    held_out: int
    seed: int
    z: float = Z
    fraction: float = HOLDOUT

    def to_dict(self) -> dict:
        return {"rule": "holdout", "candidates": self.candidates, "estimated_mse": self.estimates,
                "estimated_se": self.se, "choice": self.choice, "weight": self.weight, "kind": self.kind,
                "held_out_pixels": self.held_out, "seed": self.seed, "stream": "holdout", "z": self.z,
                "fraction": self.fraction}


def held_out(wop: WarpedOperator, seed: int, fraction: float = HOLDOUT) -> torch.Tensor:
    """``[1, 1, h, w]`` (the measurement grid of ``wop``'s inner operator) of zeros and ones: a
    random ``fraction`` of the pixels the face determines (``wop.weight`` nonzero in any channel),
    from the stream ``(seed, "holdout")``: at least one, and at least one left to fit; none where
    the face determines fewer than two pixels (nothing to choose by: :func:`choose` keeps the
    classical restoration)."""
    used = (wop.weight.amax(1, keepdim=True) > 0).to(wop.weight.dtype)
    u = torch.rand(used.shape[1:], generator=stream(seed, "holdout"))[None].to(used)
    held = used * (u < fraction).to(used)
    where = used.flatten().nonzero().flatten()
    if len(where) < 2:
        return torch.zeros_like(used)
    if not bool(held.any()):
        held.view(-1)[int(where[0])] = 1
    if bool(held.sum() == used.sum()):
        held.view(-1)[int(where[-1])] = 0
    return held


def fit_and_all(wop: WarpedOperator, held: torch.Tensor) -> WarpedOperator:
    """``wop`` for a batch of two rows: the first measures everything but ``held``, the second
    everything (its own weight)."""
    w = wop.weight
    out = wop.with_buffers(weight=torch.cat([w * (1 - held.to(w)), w]))
    assert isinstance(out, WarpedOperator)
    return out


def classical_without(observed: torch.Tensor, op: Operator, box: tuple[int, int, int, int], held: torch.Tensor,
                      pad: int = PAD, base: tuple[torch.Tensor, WarpedOperator] | None = None) -> torch.Tensor:
    """The classical restoration (``op.classical_method``) of the photo region ``box`` (observation
    pixels) from ``observed [1, C, H, W]`` without the ``held [1, 1, h, w]`` pixels of that region:
    ``[1, C, scale * h, scale * w]``. It is computed on the region widened by ``pad`` pixels, so the
    method sees the context it sees on the whole photo. Inpainting leaves the held pixels
    unobserved; the other tasks' observations get them by biharmonic interpolation first.
    With ``base = (face [1, C, S, S], wop)`` the method restores the residual observation of the
    face warped into the photo (``y - A(W face)``) and the warped face is added back: the
    generator's face corrected by what the measurements say it lacks."""
    from ..solvers import solve

    H, W = observed.shape[-2:]
    x0, y0, x1, y1 = box
    bx0, by0, bx1, by1 = max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)
    big = op.crop((bx0, by0, bx1, by1))
    y = observed[..., by0:by1, bx0:bx1]
    h = torch.zeros_like(y[:, :1])
    h[..., y0 - by0:y1 - by0, x0 - bx0:x1 - bx0] = held.to(y)
    added = torch.zeros(1, *big.input_shape, dtype=y.dtype)
    if base is not None:
        face, wop = base
        added = warp(face.clamp(-1, 1).to(y), sampling_grid(wop.transform, tuple(face.shape[-2:]), (bx0, by0, bx1, by1),
                                                              wop.scale))
        y = y - big.A(added)

    def restore(obs: torch.Tensor, on: Operator) -> torch.Tensor:  # a residual is not clamped to the images' range
        return classical_restore(obs, on) if base is None else solve(obs, on, None, big.classical_method).image

    if isinstance(big, Inpainting):
        out = restore(y * (1 - h), Inpainting(big.input_shape, big.mask * (1 - h), big.noise))
    elif bool(h.any()):
        filled = solve(y, Inpainting(tuple(y.shape[1:]), 1 - h), None, "biharmonic").image
        out = restore(torch.where(h.bool(), filled, y), big)
    else:
        out = restore(y, big)
    out = out + added if base is not None else out
    s = out.shape[-1] // y.shape[-1]
    return out[..., (y0 - by0) * s:(y1 - by0) * s, (x0 - bx0) * s:(x1 - bx0) * s]


def blends(classical: torch.Tensor, face: torch.Tensor, wop: WarpedOperator,
           weights: tuple[float, ...] = WEIGHTS) -> torch.Tensor:
    """:func:`region_blends` towards the aligned ``face [1, C, S, S]`` warped into the region."""
    return region_blends(classical, wop.warp(face.clamp(-1, 1)), wop, weights)


def region_blends(classical: torch.Tensor, image: torch.Tensor, wop: WarpedOperator,
                  weights: tuple[float, ...] = WEIGHTS) -> torch.Tensor:
    """``[K, 1, C, h', w']``: ``C + a * alpha * (image - C)`` on the region for every weight ``a``
    (module docstring), from the region's classical restoration ``classical [1, C, h', w']`` and
    an image of the region ``image [1, C, h', w']``."""
    alpha = warp(feather_window(wop.input_shape[-1]).to(image), wop.grid)
    return torch.stack([classical + a * alpha * (image - classical) for a in weights])


def paste_region(canvas: torch.Tensor, image: torch.Tensor, wop: WarpedOperator, weight: float) -> torch.Tensor:
    """``canvas [1, C, H', W']`` with ``wop``'s region (at the output's scale) blended towards
    ``image [1, C, h', w']`` by ``weight`` times the face's window, as :func:`region_blends` builds it."""
    x0, y0, x1, y1 = (v * wop.scale for v in wop.box)
    out = canvas.clone()
    out[..., y0:y1, x0:x1] = region_blends(canvas[..., y0:y1, x0:x1], image.to(canvas), wop, (weight,))[0]
    return out


def estimates(cands: torch.Tensor, wop: WarpedOperator, y: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """Each candidate's squared error per held-out pixel (channels summed): ``[K, 1, U]`` for
    ``cands [K, 1, C, h', w']``, the region's observation ``y [1, C, h, w]`` and ``held``."""
    sel = held[0, 0].bool()
    return torch.stack([(wop.inner.A(c) - y).pow(2).sum(1)[0][sel][None] for c in cands])


def choose_weight(errors: torch.Tensor, z: float = Z) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(index of the chosen candidate, estimates [K], standard errors [K])`` from the per-pixel
    errors ``[K, 1, U]`` (:func:`estimates`): the lowest estimate plus ``z`` standard errors of
    its paired difference to the first candidate (the classical restoration, whose margin is 0).

    >>> e = torch.tensor([[[1.0, 1.0, 1.0]], [[0.5, 0.6, 0.4]], [[0.9, 0.0, 1.9]]])
    >>> choose_weight(e)[0]
    1
    """
    est = errors.mean(-1)  # [K, 1]
    se = paired_se(errors, torch.tensor([0]))
    # the self-tuning's rule (without a margin the estimate alone: 0 x an infinite se is no score)
    return int(choose_candidate(est, se=se, z=z)[0]), est[:, 0], se[:, 0]


def choose(observed: torch.Tensor, op: Operator, wop: WarpedOperator, face_fit: torch.Tensor, held: torch.Tensor,
           seed: int, residual: bool = True) -> WeightChoice:
    """One face's paste (module docstring): ``face_fit [1, C, S, S]`` solved without the
    ``held`` measurements of ``wop``'s region of ``observed``; with ``residual`` also the blends
    towards the face plus the classical restoration of its residual. Nothing held out (a face
    that determines fewer than two pixels, :func:`held_out`): the classical restoration."""
    if not bool(held.any()):
        return WeightChoice(["classical"], [], [], "classical", 0.0, "face", 0, seed)
    box = wop.box
    y = observed[..., box[1]:box[3], box[0]:box[2]]
    classical = classical_without(observed, op, box, held)
    cands, names = [blends(classical, face_fit, wop)], ["classical"] + [f"face@{a:g}" for a in WEIGHTS[1:]]
    if residual:
        corrected = classical_without(observed, op, box, held, base=(face_fit, wop))
        cands.append(region_blends(classical, corrected, wop, WEIGHTS[1:]))
        names += [f"residual@{a:g}" for a in WEIGHTS[1:]]
    k, est, se = choose_weight(estimates(torch.cat(cands), wop, y, held))
    kind, _, a = names[k].partition("@")
    return WeightChoice(names, est.tolist(), se.tolist(), names[k], float(a or 0), kind if a else "face",
                        int(held.sum()), seed)


def residual_image(observed: torch.Tensor, op: Operator, wop: WarpedOperator, face: torch.Tensor) -> torch.Tensor:
    """The face warped into its region plus the classical restoration of its residual, from every
    measurement: ``[1, C, h', w']`` (what ``"residual@<a>"`` pastes)."""
    return classical_without(observed, op, wop.box, torch.zeros(1, 1, *wop.weight.shape[-2:]), base=(face, wop))


__all__ = ["WEIGHTS", "HOLDOUT", "Z", "WeightChoice", "held_out", "fit_and_all", "classical_without",
           "blends", "region_blends", "paste_region", "estimates", "choose_weight", "choose", "residual_image"]
