"""The optimisation loop shared by every latent-space solver.

``adam_loop`` runs Adam on a dict of per-sample tensors with a learning-rate schedule, an
optional projection after every step, and a callback that sees the objective of every
*feasible* iterate (the loss is evaluated before the step, at a point that was projected
after the previous one). Losses are summed over the batch, so each sample's gradients, and
with Adam's element-wise updates each sample's trajectory, do not depend on the batch.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any
from collections.abc import Callable

import torch

from .config import Schedule

Params = dict[str, torch.Tensor]


class StepInfo:
    """What a solver callback receives after each step.

    ``loss``, ``measurement_loss``: ``[B]`` per image at this step (CSGM: its best restart);
    ``image``: the iterate (CSGM: every restart, ``[B * R, C, H, W]``); ``best_loss [B]`` and
    ``best_image [B, C, H, W]``: per image, the iterate with the lowest measurement loss so far
    (what the solver would return if it stopped here, with ``select="measurement"``).
    """

    __slots__ = ("step", "round", "layer", "loss", "measurement_loss", "image", "time", "best_loss", "best_image")

    def __init__(self, step, round, layer, loss, measurement_loss, image, time, best_loss=None, best_image=None):
        self.step, self.round, self.layer = step, round, layer
        self.loss, self.measurement_loss, self.image, self.time = loss, measurement_loss, image, time
        self.best_loss, self.best_image = best_loss, best_image

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "round": self.round,
            "layer": self.layer,
            "loss": [round(float(v), 8) for v in self.loss],
            "measurement_loss": [round(float(v), 8) for v in self.measurement_loss],
            "best_measurement_loss": [round(float(v), 8) for v in self.best_loss] if self.best_loss is not None else None,
            "time": round(self.time, 5),
        }


def adam_loop(
    params: Params,
    evaluate: Callable[[Params, int], tuple[torch.Tensor, torch.Tensor, Any]],
    steps: int,
    lr: float,
    schedule: Schedule,
    project: Callable[[Params], None] | None = None,
    on_step: Callable[[int, torch.Tensor, torch.Tensor, Any], bool | None] | None = None,
) -> Params:
    """Minimise ``evaluate(params, t)[0].sum()`` with Adam; returns the final (projected) params.

    Args:
        params: leaf tensors ``[B, ...]`` (modified in place).
        evaluate: ``(params, t)`` at step ``t`` -> ``(objective [B], measurement_loss [B], output)``
            (output: e.g. the image).
        project: in-place projection applied under ``no_grad`` after every step.
        on_step: called with ``(t, objective, measurement_loss, image)`` (detached) per step; when
            it returns True the loop stops after this step's update (the learning-rate schedule
            stays that of ``steps``, so the iterates up to the stop are those of a full run).
    """
    if project is not None:  # start from a feasible point
        with torch.no_grad():
            project(params)
    leaves = [p.requires_grad_(True) for p in params.values()]
    opt = Adam(leaves, lr=lr)
    for t in range(steps):
        opt.lr = lr * schedule.factor(t, steps)
        objective, meas, image = evaluate(params, t)
        opt.zero_grad()
        objective.sum().backward()
        stop = on_step is not None and on_step(t, objective.detach(), meas.detach(), _detach(image))
        opt.step()
        if project is not None:
            with torch.no_grad():
                project(params)
        if stop:
            break
    for p in leaves:
        p.requires_grad_(False)
    return params


class Plateau:
    """Early stopping: :meth:`__call__` with the best loss so far per image (``[B]``, one call per
    step) says True once no image's best has fallen by more than the relative ``tolerance`` over
    the last ``patience`` steps (``best_t >= (1 - tolerance) * best_{t - patience}`` for all).

    >>> p = Plateau(patience=2, tolerance=0.01)
    >>> [p(torch.tensor([v])) for v in (1.0, 0.5, 0.499, 0.498)]
    [False, False, False, True]
    """

    def __init__(self, patience: int, tolerance: float):
        if patience < 1 or not 0 <= tolerance < 1:
            raise ValueError(f"early stopping needs patience >= 1 and 0 <= tolerance < 1, got {patience}, {tolerance}")
        self.patience, self.tolerance = patience, tolerance
        self.past: deque[torch.Tensor] = deque(maxlen=patience + 1)

    def __call__(self, best: torch.Tensor) -> bool:
        self.past.append(best.detach().clone())
        if len(self.past) <= self.patience:
            return False
        return bool((best >= (1 - self.tolerance) * self.past[0]).all())


class Adam:
    """Adam (Kingma & Ba 2015) on leaf tensors, with the arithmetic of ``torch.optim.Adam``'s
    single-tensor path (no weight decay, no amsgrad): the same iterates, bit for bit, on CPU.

    Written out because constructing ``torch.optim.Adam`` imports ``torch._dynamo``, which
    costs 1-2 s of a command's start-up on 2 cores. ``lr`` may be changed between steps.

    >>> x = torch.tensor([1.0], requires_grad=True); opt = Adam([x], lr=0.1)
    >>> (x * x).sum().backward(); opt.step(); round(x.item(), 4)
    0.9
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [0] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            t = float(self.steps[i])
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-(self.lr / (1 - beta1**t)))


def _detach(out: Any) -> Any:
    return {k: v.detach() for k, v in out.items()} if isinstance(out, dict) else out.detach()


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
