"""The CSGM method as the choice's challenger: its run and probe (:func:`run_challenger`), its
challenge on the held-out part (:func:`challenge_csgm`) and its continuation on all measurements
where it is chosen (:func:`refit_csgm`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...operators.base import Operator
from ..config import SelectionConfig
from ..result import Result
from .choice import challenge
from .heldout import paired_se, unit_errors


def refit_csgm(cands: torch.Tensor, redo: torch.Tensor, y: torch.Tensor, operator: Operator, start: Result,
                first: Callable[..., Result], fraction: float, k: int = 0) -> list[bool]:
    """Where ``redo [B]`` (bool: the choice is the CSGM candidate, row ``k`` of ``cands [K, B, ...]``,
    CSGM's solution ``start``, or a blend of it), continue CSGM from it on all measurements
    (``first(y, operator, start)``, for ``fraction`` of its steps; 0: not) and put the result in
    its place where it fits all of them better: which images changed."""
    if fraction <= 0 or not bool(redo.any()):
        return [False] * len(redo)
    refit = first(y, operator, start)
    with torch.no_grad():
        better = redo & (operator.measurement_loss(refit.image, y) < operator.measurement_loss(cands[k], y))
    cands[k, better] = refit.image[better]
    return better.tolist()


def run_challenger(first: Callable[..., Result], y: torch.Tensor, operator: Operator, y_fit: torch.Tensor,
                    fit: Operator, sel: SelectionConfig) -> tuple[Result, Result]:
    """The ``"challenge"`` CSGM method's run (``first``, :func:`self_tune`) under
    ``sel.csgm_basin``: ``(its solution, the run whose held-out estimate scores it)``.
    ``"fit"``: the CSGM method on the fit part (``y_fit``, ``fit``), both. ``"all"``: the CSGM
    method on all measurements (``y``, ``operator``: what the CSGM method alone returns) and,
    to score it, its continuation on the fit part for ``sel.csgm_probe`` of its steps (one restart)."""
    if sel.csgm_basin == "fit":
        res = first(y_fit, fit)
        return res, res
    res = first(y, operator)
    return res, first(y_fit, fit, res, sel.csgm_probe)


def challenge_csgm(image: torch.Tensor, choice: torch.Tensor, cands_fit: torch.Tensor, est: torch.Tensor,
                    se: torch.Tensor | None, eligible: torch.Tensor | None, val: Operator, y: torch.Tensor,
                    units: torch.Tensor, z: float, min_units: int = 1, sparse_below: int = 0,
                    ratio: float = 1.0) -> tuple:
    """The CSGM method's solution on the fit part (or its continuation there), ``image [B, C, H, W]``, against the ``choice [B]``
    among the fit part's candidates ``cands_fit [K, B, ...]`` (blends included): it replaces the
    choice only where its held-out estimate plus ``z`` standard errors of their paired difference
    (over ``units``, :func:`paired_se`) lies below the choice's estimate (:func:`challenge`), and
    at least ``min_units`` units are held out; on images with fewer than ``sparse_below`` units,
    only where its estimate is also below the choice's divided by ``ratio``. Returns the choice (``K`` where it was taken),
    ``est``, ``se`` and ``eligible`` with its row appended, and a record of its estimate, standard
    error, the units and where it was taken."""
    B = y.shape[0]
    rows = torch.arange(B, device=y.device)
    with torch.no_grad():
        own = val.measurement_loss(image, y)  # [B]
        errors = unit_errors(val, torch.stack([cands_fit[choice, rows], image]), y, units)  # [2, B, U]
    diff_se = paired_se(errors, torch.zeros_like(choice))[1]
    pair_est, pair_se = torch.stack([est[choice, rows], own]), torch.stack([torch.zeros_like(own), diff_se])
    n = (~errors[0].isnan()).sum(-1)  # [B] held-out units
    take = (challenge(pair_est, pair_se, None, torch.zeros_like(choice), 1, z) == 1) & (n >= min_units)
    take &= (n >= sparse_below) | (own * ratio <= pair_est[0])
    K = est.shape[0]
    new = torch.where(take, torch.full_like(choice, K), choice)
    est = torch.cat([est, own[None]])
    se = None if se is None else torch.cat([se, diff_se[None]])
    eligible = None if eligible is None else torch.cat([eligible, eligible.new_ones(1, B)])
    return new, est, se, eligible, {"estimated_mse": own.tolist(), "estimated_se": diff_se.tolist(),
                                    "choice_estimated_mse": pair_est[0].tolist(), "units": n.tolist(),
                                    "taken": take.tolist(), "run": True,
                                    **({"sparse_below": sparse_below, "ratio": ratio} if sparse_below else {})}
