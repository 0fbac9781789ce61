"""One stage of a latent-space solver as an object: render, objective, constraints, steps, lr.

CSGM is one :class:`Round` on the input latent; ILO is CSGM followed by one round per
intermediate layer (l1 balls around the round's start); ILO's "back to range" is a round
whose objective is the distance to the previous round's solution instead of the data term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..generators.base import State
from ..projections import Constraint
from .config import Schedule
from .optim import adam_loop


@dataclass
class Round:
    """Projected Adam on some entries of a state (Algorithm 1's lines 1, 4 and 5 each are one).

    Args:
        render: the full state (optimised and ``fixed`` entries) -> an output (an image, or a
            deeper state for back-to-range).
        objective: ``(output, state, step) -> [B]``, minimised (summed over the batch); ``step``
            is the Adam step's index, None for an evaluation outside the loop.
        constraints: per optimised entry, the sets projected onto after every step, in order.
        steps, lr, schedule: the Adam budget.
        measure: ``output -> [B]``, the loss tracked without gradient (the measurement loss);
            None = the objective's value.
    """

    render: Callable[[State], Any]
    objective: Callable[[Any, State, int | None], torch.Tensor]
    steps: int
    lr: float
    constraints: Mapping[str, Sequence[Constraint]] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    measure: Callable[[Any], torch.Tensor] | None = None

    def evaluate(self, params: State, fixed: State, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``(objective [B], tracked loss [B] (detached), output)`` at ``{**fixed, **params}``
        (``step``: the Adam step's index, handed to the objective)."""
        full = {**fixed, **params}
        out = self.render(full)
        obj = self.objective(out, full, step)
        if self.measure is None:
            return obj, obj.detach(), out
        with torch.no_grad():
            meas = self.measure(out.detach())
        return obj, meas, out

    def project_(self, params: State) -> None:
        for k, sets in self.constraints.items():
            for c in sets:
                c.project_(params[k])

    def run(self, params: State, fixed: State,
            on_step: Callable[[int, torch.Tensor, torch.Tensor, Any], bool | None] | None = None) -> State:
        """Optimise ``params`` (modified in place, returned detached); ``on_step(t, objective,
        tracked loss, output)`` after every step's evaluation (True: stop after this step)."""
        adam_loop(params, lambda p, t: self.evaluate(p, fixed, t), self.steps, self.lr, self.schedule, self.project_, on_step)
        return {k: v.detach() for k, v in params.items()}
