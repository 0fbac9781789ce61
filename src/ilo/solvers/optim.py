"""The optimisation loop shared by every latent-space solver.

``adam_loop`` runs Adam on a dict of per-sample tensors with a learning-rate schedule, an
optional projection after every step, and a callback that sees the objective of every
*feasible* iterate (the loss is evaluated before the step, at a point that was projected
after the previous one). Losses are summed over the batch, so each sample's gradients, and
with Adam's element-wise updates each sample's trajectory, do not depend on the batch.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .config import Schedule

Params = dict[str, torch.Tensor]


class StepInfo:
    """What a solver callback receives after each step."""

    __slots__ = ("step", "round", "layer", "loss", "measurement_loss", "image", "time")

    def __init__(self, step, round, layer, loss, measurement_loss, image, time):
        self.step, self.round, self.layer = step, round, layer
        self.loss, self.measurement_loss, self.image, self.time = loss, measurement_loss, image, time

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "round": self.round,
            "layer": self.layer,
            "loss": [round(float(v), 8) for v in self.loss],
            "measurement_loss": [round(float(v), 8) for v in self.measurement_loss],
            "time": round(self.time, 5),
        }


def adam_loop(
    params: Params,
    evaluate: Callable[[Params], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    schedule: Schedule,
    project: Callable[[Params], None] | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> Params:
    """Minimise ``evaluate(params)[0].sum()`` with Adam; returns the final (projected) params.

    Args:
        params: leaf tensors ``[B, ...]`` (modified in place).
        evaluate: returns ``(objective [B], measurement_loss [B], image [B, C, H, W])``.
        project: in-place projection applied under ``no_grad`` after every step.
        on_step: called with ``(t, objective, measurement_loss, image)`` (detached) per step.
    """
    if project is not None:  # start from a feasible point
        with torch.no_grad():
            project(params)
    leaves = [p.requires_grad_(True) for p in params.values()]
    opt = torch.optim.Adam(leaves, lr=lr)
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * schedule.factor(t, steps)
        objective, meas, image = evaluate(params)
        opt.zero_grad(set_to_none=True)
        objective.sum().backward()
        if on_step is not None:
            on_step(t, objective.detach(), meas.detach(), image.detach())
        opt.step()
        if project is not None:
            with torch.no_grad():
                project(params)
    for p in leaves:
        p.requires_grad_(False)
    return params


def make_evaluate(render: Callable[[Params], torch.Tensor], objective, operator, y: torch.Tensor,
                  fixed: Params) -> Callable[[Params], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``evaluate`` for :func:`adam_loop`: render the full state (``fixed`` entries plus the
    optimised ones), then its objective and its measurement loss (without gradient)."""

    def evaluate(p: Params):
        full = {**fixed, **p}
        x = render(full)
        obj = objective(x, y, full)
        with torch.no_grad():
            meas = operator.measurement_loss(x.detach(), y)
        return obj, meas, x

    return evaluate


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
