"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..generators.base import State


@dataclass
class Result:
    """A reconstruction and how it was reached.

    Attributes:
        image: ``[B, C, H, W]`` in ``[-1, 1]``, the selected iterate per sample.
        latents: the state (at layer ``layer``) that produces ``image`` through ``tail(layer)``.
        layer: the generator layer the latents live at (0 = the input latent).
        measurement_loss: ``[B]``, the operator's measurement MSE of ``image``.
        history: one dict per optimisation step: ``step``, ``round``, ``layer``,
            ``loss`` (per-sample objective, list), ``measurement_loss`` (per-sample, list),
            ``time`` (seconds since the solver started).
        method: solver name; config: the resolved configuration (JSON-serialisable).
        seconds: wall time.
        selection: for a self-tuned ILO (:mod:`ilo.solvers.selection`), the candidates tried,
            their estimated errors per image and the choice (JSON-serialisable); else None.
        candidates: for a self-tuned ILO, every candidate on all measurements,
            ``[K, B, C, H, W]`` in the order of ``selection["candidates"]``, before the
            observed pixels are pasted back; else None.
        csgm_method: for a self-tuned ILO, the CSGM method's own run on all measurements that
            the self-tuning made (the challenger of the choice, or denoising's CSGM stage; or the
            ``init`` it was given), before any continuation: what ``solve(..., "csgm", <its
            config>)`` returns, up to float rounding where it ran in a batch with other rows (its
            ``config`` says which configuration). None where the self-tuning ran none: ILO's own
            CSGM stage (``SelectionConfig.csgm == "own"``), or a challenger not run because no
            image holds out ``csgm_min_units`` units; and for every other method.
    """

    image: torch.Tensor
    latents: State
    layer: int
    measurement_loss: torch.Tensor
    history: list[dict] = field(default_factory=list)
    method: str = ""
    config: dict = field(default_factory=dict)
    seconds: float = 0.0
    selection: dict | None = None
    candidates: torch.Tensor | None = None
    csgm_method: Result | None = None

    @property
    def steps(self) -> int:
        return len(self.history)
