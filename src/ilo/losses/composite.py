"""The objective a solver minimises: a weighted sum of loss terms chosen in a typed config.

Terms (weights in :class:`LossConfig`; a zero weight switches a term off):

- ``mse``: the operator's measurement loss ``mean |A(G) - y|^2`` per sample.

Every term returns a per-sample tensor ``[B]``; the objective is their weighted sum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..operators.base import Operator


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (no string parsing: one typed field per term)."""

    mse: float = 1.0

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, float) and v < 0:
                raise ValueError(f"loss weight {k} must be >= 0, got {v}")

    def to_dict(self) -> dict:
        return asdict(self)


class Objective:
    """``objective(x, y) -> [B]`` for generated images ``x`` and observations ``y``."""

    def __init__(self, config: LossConfig, operator: Operator):
        self.config, self.operator = config, operator

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        total = x.new_zeros(x.shape[0])
        if self.config.mse:
            total = total + self.config.mse * self.operator.measurement_loss(x, y)
        return total
