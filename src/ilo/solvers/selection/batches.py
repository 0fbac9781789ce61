"""Several runs as one batch: the fit part's problem and the whole one side by side (:func:`paired`),
ILO's fit and refit in one batch of ``2B`` (:func:`fit_and_refit`), and one copy's rows of such a
run (:func:`copy_rows`, :func:`result_rows`)."""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable

import torch

from ...operators.base import Operator
from ..result import Result
from .pool import Stage
from .heldout import HeldOut


def copy_rows(t: torch.Tensor, images: int, copies: int, k: int) -> torch.Tensor:
    """Copy ``k`` of every image from ``t [images * copies * n, ...]``, whose rows hold image 0's
    copies first (``n`` rows each, e.g. restarts), then image 1's: ``[images * n, ...]``.

    >>> copy_rows(torch.arange(12), images=2, copies=3, k=1).tolist()
    [2, 3, 8, 9]
    """
    return t.unflatten(0, (images, copies, -1))[:, k].flatten(0, 1)


def fit_and_refit(run: Callable[..., tuple[Result, list[Stage]]], y_fit: torch.Tensor, fit: Operator,
                  y: torch.Tensor, operator: Operator, start: Result | None = None
                  ) -> tuple[tuple[Result, list[Stage]], tuple[Result, list[Stage]]]:
    """Self-tuning's two ILO runs, on the fit part (``fit``, ``y_fit``) and on all measurements,
    as one batch of ``2B`` (image ``i``'s fit at row ``2i``, its refit at ``2i + 1``, both from
    its seed): ``((result, stages) of the fit, (result, stages) of the refit)``, each as the
    run alone would give it up to float rounding; both results hold the shared wall time.
    ``fit``: a :class:`HeldOut` part of ``operator``, or an operator of its class that differs
    in its per-sample buffers only (e.g. an inpainting mask). ``start``: a CSGM result (``B``
    rows) both runs start from instead of their own CSGM stage."""
    B = y.shape[0]
    res, stages = run(*paired(y_fit, fit, y, operator), 2, start)

    def part(k: int) -> tuple[Result, list[Stage]]:
        rows = lambda t: copy_rows(t, B, 2, k)
        return result_rows(res, B, 2, k), [(name, rows(img), rows(loss)) for name, img, loss in stages]

    return part(0), part(1)


def paired(y_fit: torch.Tensor, fit: Operator, y: torch.Tensor, operator: Operator) -> tuple[torch.Tensor, Operator]:
    """The fit part's problem (``y_fit``, ``fit``) and the whole one (``y [B, ...]``, ``operator``)
    as one batch of ``2B``: image ``i``'s fit part at row ``2i``, all its measurements at ``2i + 1``.
    ``fit``: a :class:`HeldOut` part of ``operator``, or an operator of its class that differs in
    its per-sample buffers only (e.g. an inpainting mask)."""
    B = y.shape[0]
    pair = lambda a, b: torch.stack([a.expand(B, *a.shape[1:]), b.expand(B, *b.shape[1:])], 1).flatten(0, 1)
    if isinstance(fit, HeldOut):
        both: Operator = HeldOut(fit.base.batch_repeat(2), pair(fit.keep, torch.ones_like(fit.keep[:1])))
    else:
        assert type(fit) is type(operator), "fit must be a HeldOut or an operator of the same class"
        both = operator.with_buffers(**{n: pair(fit.get_buffer(n), operator.get_buffer(n)) for n in operator.per_sample_buffers})
    return pair(y_fit, y), both


def result_rows(res: Result, images: int, copies: int, k: int) -> Result:
    """Copy ``k`` of every image of ``res`` (a run with ``copies`` rows per image, as
    :func:`paired` lays them out): its image, latents, losses and history."""
    rows = lambda t: copy_rows(t, images, copies, k)
    history = [{key: v[k::copies] if isinstance(v, list) else v for key, v in h.items()} for h in res.history]
    return replace(res, image=rows(res.image), latents={n: rows(v) for n, v in res.latents.items()},
                   measurement_loss=rows(res.measurement_loss), history=history)
