"""The choice among the candidates from their estimated errors: the margin's reference
(:func:`first_reference`), scores with ``z`` standard errors (:func:`choose`), and the convex blends
of two candidates that may replace the choice (:func:`with_blends`, :func:`challenge`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...operators.base import Operator
from ..config import SelectionConfig
from .heldout import paired_se, unit_errors


def first_reference(reference: str, errors: torch.Tensor, sparse_units: int) -> torch.Tensor:
    """``[B]`` bool: where the margin's reference is the first classical method instead of the
    one with the lowest held-out estimate: every image under ``reference == "first"``, under
    ``"auto"`` (away from a box) the images with fewer than ``sparse_units`` held-out units,
    none otherwise. ``errors [B, U]``: one candidate's per-unit errors (:func:`unit_errors`; NaN:
    nothing held out in that unit). With few units the lowest estimate is noise: at 5 % random
    inpainting it picked TV inpainting, 2.5 dB below biharmonic on average, on faces where
    biharmonic was better (docs/BENCHMARKS.md, "Sparse random inpainting's reference").

    >>> e = torch.tensor([[1.0, 2.0, float("nan")], [1.0, 2.0, 3.0]])  # 2 and 3 units
    >>> first_reference("auto", e, 3).tolist(), first_reference("first", e, 3).tolist()
    ([True, False], [True, True])
    """
    if reference == "first":
        return torch.ones(errors.shape[0], dtype=torch.bool, device=errors.device)
    if reference == "auto":
        return (~errors.isnan()).sum(1) < sparse_units
    return torch.zeros(errors.shape[0], dtype=torch.bool, device=errors.device)


def choose(est: torch.Tensor, eligible: torch.Tensor | None = None, se: torch.Tensor | None = None,
           z: float = 0.0) -> torch.Tensor:
    """Per image the eligible candidate with the lowest score ``est + z * se`` (``est`` alone
    where ``z`` is 0 or ``se`` is None; NaN scores never chosen). ``est``, ``se``,
    ``eligible`` (bool, None: all): ``[K, B]``; returns ``[B]``.

    >>> est, se = torch.tensor([[1.0], [0.8]]), torch.tensor([[0.0], [0.3]])
    >>> choose(est).tolist(), choose(est, se=se, z=1.0).tolist()
    ([1], [0])
    """
    return scores(est, eligible, se, z).argmin(0)


def scores(est: torch.Tensor, eligible: torch.Tensor | None = None, se: torch.Tensor | None = None,
           z: float = 0.0) -> torch.Tensor:
    """The scores :func:`choose` minimises: ``est + z * se``, infinite where NaN or not
    ``eligible``. ``[K, B]``."""
    score = est + z * se if se is not None and z else est
    score = torch.nan_to_num(score, nan=float("inf"))
    return score.masked_fill(~eligible, float("inf")) if eligible is not None else score


def blend_pairs(score: torch.Tensor, est: torch.Tensor, alone: torch.Tensor, ref: torch.Tensor | None,
                pairs: Sequence[str]) -> torch.Tensor:
    """Per image the two candidates of every blend pair (:attr:`~ilo.solvers.config.SelectionConfig.blend_pairs`):
    ``[P, 2, B]`` indices, the first weighted ``a``, the second ``1 - a``. ``score``
    (:func:`scores`), ``est``: ``[K, B]``; ``alone [K]`` bool: the classical methods alone;
    ``ref [B]``: the margin's reference (``"reference"`` needs it, ``"classical"`` two
    classical methods: :func:`usable_pairs`). Where an image has no second candidate with a
    finite score the pair is the first twice (the reference alone, for ``"reference"``), so
    the blend is that candidate itself.

    >>> score = torch.tensor([[0.5], [0.9], [1.0], [0.7]])  # csgm, round1, biharmonic (ref), tv-inpaint
    >>> alone = torch.tensor([False, False, True, True])
    >>> blend_pairs(score, score, alone, torch.tensor([2]), ["reference", "classical", "top"])[:, :, 0].tolist()
    [[0, 2], [2, 3], [0, 3]]
    """
    inf = float("inf")
    out = []
    for kind in pairs:
        if kind == "reference":
            if ref is None:
                raise ValueError("a blend with the reference needs a classical method")
            others = score.scatter(0, ref[None], inf)  # every candidate but the reference
            first = torch.where(others.min(0).values < inf, others.argmin(0), ref)
            out.append(torch.stack([first, ref]))
            continue
        s = torch.nan_to_num(est, nan=inf).masked_fill(~alone[:, None], inf) if kind == "classical" else score
        top = s.topk(2, 0, largest=False)  # the lowest two, lowest first
        second = torch.where(top.values[1] < inf, top.indices[1], top.indices[0])
        out.append(torch.stack([second, top.indices[0]] if kind == "classical" else [top.indices[0], second]))
    return torch.stack(out)


def usable_pairs(pairs: Sequence[str], methods: int) -> tuple[str, ...]:
    """The blend pairs that exist with ``methods`` classical methods: ``"reference"`` needs
    one, ``"classical"`` two.

    >>> usable_pairs(["reference", "classical", "top"], 1)
    ('reference', 'top')
    """
    return tuple(p for p in pairs if methods >= {"reference": 1, "classical": 2}.get(p, 0))


def blend_names(pairs: Sequence[str], weights: Sequence[float]) -> list[str]:
    """The names of the blends of :func:`blend`, pair-major: ``"blend@<a>"`` for the
    ``"reference"`` pair, ``"blend-<pair>@<a>"`` for the others.

    >>> blend_names(["reference", "top"], [0.25, 0.5])
    ['blend@0.25', 'blend@0.5', 'blend-top@0.25', 'blend-top@0.5']
    """
    return [f"blend{'' if p == 'reference' else '-' + p}@{a:g}" for p in pairs for a in weights]


def blend(cands: torch.Tensor, pairs: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Convex blends ``a * cands[first] + (1 - a) * cands[second]`` per image, for every pair of
    ``pairs [P, 2, B]`` (:func:`blend_pairs`) and weight ``a``: ``[P * A, B, C, H, W]`` from
    ``cands [K, B, C, H, W]``, pair-major; where ``first == second``, that candidate exactly.

    >>> c = torch.tensor([[[0.0]], [[4.0]]])  # two candidates, one image, one value
    >>> blend(c, torch.tensor([[[1], [0]]]), [0.25, 0.5]).flatten().tolist()
    [1.0, 2.0]
    """
    rows = torch.arange(cands.shape[1], device=cands.device)
    out = []
    for first, second in pairs:
        a_img, b_img = cands[first, rows], cands[second, rows]
        same = (first == second).view(-1, *[1] * (cands.ndim - 2))
        out += [torch.where(same, a_img, a * a_img + (1 - a) * b_img) for a in weights]
    return torch.stack(out) if out else cands[:0]


def with_blends(cands_fit: torch.Tensor, val: Operator, y: torch.Tensor, units: torch.Tensor | None,
                est: torch.Tensor, se: torch.Tensor | None, eligible: torch.Tensor | None,
                errors: torch.Tensor | None, ref: torch.Tensor | None, alone: torch.Tensor, config: SelectionConfig,
                kinds: Sequence[str], against: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The held-out choice's candidates with their convex blends (``config.blend`` weights,
    pairs ``kinds``, :func:`usable_pairs` of ``config.blend_pairs``): ``(pairs [P, 2, B], est,
    se, eligible)``, the last three with the ``P * A`` blends' rows appended (:func:`blend_names`
    order). The pairs come from the scores :func:`choose` uses (``est + z * se``); each blend of
    the fit part's candidates
    ``cands_fit [K, B, ...]`` is scored like them: its held-out estimate on ``val`` and, where
    there are per-unit errors ``errors [K, B, U]`` (:func:`unit_errors` over ``units``), the
    standard error of its paired difference to ``against [B]`` (the choice among the other
    candidates, :func:`challenge`) or, None, to the reference ``ref [B]``. A blend is
    eligible (its two candidates are). ``alone [K]`` bool: the classical methods alone."""
    pairs = blend_pairs(scores(est, eligible, se, config.z), est, alone, ref, kinds)
    fit_blends = blend(cands_fit, pairs, config.blend)  # [P * A, B, ...]
    est = torch.cat([est, torch.stack([val.measurement_loss(c, y) for c in fit_blends])])
    base = against if against is not None else ref
    if errors is not None and base is not None and units is not None and se is not None:
        rows = torch.arange(y.shape[0], device=y.device)
        paired = torch.cat([errors[base, rows][None], unit_errors(val, fit_blends, y, units)])  # base's errors, then the blends'
        se = torch.cat([se, paired_se(paired, torch.zeros_like(base))[1:]])
    if eligible is not None:
        eligible = torch.cat([eligible, eligible.new_ones(len(fit_blends), y.shape[0])])
    return pairs, est, se, eligible


def challenge(est: torch.Tensor, se: torch.Tensor | None, eligible: torch.Tensor | None, base: torch.Tensor,
              K: int, z: float) -> torch.Tensor:
    """The choice ``base [B]`` among the first ``K`` candidates unless a blend (rows ``K`` on of
    ``est``, ``se``, ``eligible [K + P * A, B]``) scores below ``base``'s estimate: the blend
    with the lowest estimate plus ``z`` standard errors of its paired difference to ``base``
    (:func:`with_blends` with ``against=base``). ``[B]``.

    >>> est = torch.tensor([[1.0, 1.0], [0.9, 0.8]]); se = torch.tensor([[0.0, 0.0], [0.2, 0.1]])
    >>> challenge(est, se, None, torch.tensor([0, 0]), 1, 1.0).tolist()
    [0, 1]
    """
    rows = torch.arange(est.shape[1], device=est.device)
    s = scores(est[K:], None if eligible is None else eligible[K:], None if se is None else se[K:], z)
    best = s.argmin(0)
    take = s[best, rows] < est[base, rows]
    return torch.where(take, K + best, base)


def made_of(choice: torch.Tensor, k: int, pairs: torch.Tensor, K: int, weights: int) -> torch.Tensor:
    """``[B]`` bool: where the ``choice [B]`` is candidate ``k`` or a blend of it (rows ``K`` on,
    ``weights`` per pair of ``pairs [P, 2, B]``, :func:`blend`).

    >>> made_of(torch.tensor([0, 3, 4, 1]), 0, torch.tensor([[[0, 1, 2, 1], [2, 0, 1, 2]]]), K=3, weights=2).tolist()
    [True, True, False, False]
    """
    rows = torch.arange(len(choice), device=choice.device)
    j = (choice - K).clamp_min(0) // weights  # the pair of a chosen blend
    return (choice == k) | ((choice >= K) & (pairs.permute(0, 2, 1)[j, rows] == k).any(1))
