"""Data-fidelity terms: how far a candidate image is from the data, apart from the physics.

The operator (:mod:`ilo.operators`) says how data are made; a fidelity term says how far a
candidate ``x [B, C, H, W]`` is from the data ``y``: ``fidelity(x, y, operator) -> [B]``.
The solvers' objective (:class:`ilo.losses.composite.Objective`) weighs one fidelity term
(by ``LossConfig.mse``) beside the perceptual terms and the latent regulariser.

- :class:`MeasurementMSE` (the default): the operator's measurement loss ``mean |A(x) - y|^2``;
- :class:`ilo.losses.classifier.ClassifierGuidance`: a classifier's cross-entropy for a class.
"""

from __future__ import annotations

import torch


class DataFidelity:
    """``fidelity(x, y, operator) -> [B]``; :meth:`batch_repeat` adapts per-sample state to a
    batch whose samples are repeated ``r`` times in a row (restarts)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch_repeat(self, r: int) -> DataFidelity:
        return self

    def config(self) -> dict:
        return {"fidelity": type(self).__name__}


class MeasurementMSE(DataFidelity):
    """The operator's measurement loss, ``operator.measurement_loss(x, y)``: ``[B]``.

    >>> from ilo.operators import Denoising
    >>> x = torch.zeros(2, 3, 4, 4)
    >>> MeasurementMSE()(x, x + 0.5, Denoising((3, 4, 4), 10)).tolist()
    [0.25, 0.25]
    """

    def __call__(self, x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
        return operator.measurement_loss(x, y)

    def config(self) -> dict:
        return {"fidelity": "measurement mse"}
