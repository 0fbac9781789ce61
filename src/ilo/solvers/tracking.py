"""Per-sample bookkeeping shared by the solvers: seeds, best iterates, history, progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..generators.base import LayeredGenerator, State
from ..rng import stream
from .optim import StepInfo, Timer


def resolve_seeds(seeds: int | Sequence[int] | None, batch: int) -> list[int]:
    """One seed per image: an int ``s`` gives ``s, s+1, ...``; a sequence is used as is."""
    if seeds is None:
        seeds = 0
    if isinstance(seeds, int):
        return [seeds + i for i in range(batch)]
    seeds = [int(s) for s in seeds]
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    return seeds


def stack_latents(generator: LayeredGenerator, seeds: list[int], per_seed: int) -> State:
    """``per_seed`` random starts per seed, start ``r`` from the stream ``(seed, "restart", r)`` of
    :mod:`ilo.rng` (so restart ``r`` is the same whatever the number of restarts):
    ``[len(seeds) * per_seed, ...]``, the starts of seed ``i`` at rows ``i * per_seed .. (i + 1) * per_seed - 1``."""
    return restart_latents(generator, [(s, r) for s in seeds for r in range(per_seed)])


def restart_latents(generator: LayeredGenerator, starts: Sequence[tuple[int, int]]) -> State:
    """The random starts ``(seed, r)`` (each from the stream ``(seed, "restart", r)``), one row each."""
    states = [generator.sample_latent(1, stream(s, "restart", r)) for s, r in starts]
    return {k: torch.cat([s[k] for s in states]) for k in states[0]}


def detach_state(state: State) -> State:
    return {k: v.detach().clone() for k, v in state.items()}


class BestTracker:
    """Keeps, per sample, the iterate with the lowest measurement loss seen so far."""

    def __init__(self, n: int, device: torch.device | str = "cpu"):
        self.loss = torch.full((n,), float("inf"), device=device)
        self.image: torch.Tensor | None = None
        self.state: State | None = None
        self.layer = torch.zeros(n, dtype=torch.long)

    def update(self, meas: torch.Tensor, image: torch.Tensor, layer: int, state: State | None = None) -> None:
        better = meas < self.loss
        if self.image is None:
            self.image = image.clone()
            self.state = detach_state(state) if state is not None else None
        elif better.any():
            self.image[better] = image[better]
            if state is not None and self.state is not None and set(state) == set(self.state):
                for k in state:
                    if state[k].shape == self.state[k].shape:
                        self.state[k][better] = state[k][better].detach()
        self.loss = torch.where(better, meas, self.loss)
        self.layer[better.cpu()] = layer


class Recorder:
    """History, progress bar, user callback and the best-so-far iterate of one solver run.

    :attr:`best` keeps, per image (``batch`` of them), the iterate with the lowest measurement
    loss seen so far (:meth:`track`); every step's :class:`StepInfo` and history entry carry it,
    so callers read the best-so-far curve instead of re-deriving it.
    """

    def __init__(self, total: int, desc: str, progress: bool, callback: Callable[[StepInfo], None] | None,
                 batch: int, device: torch.device | str = "cpu"):
        self.timer = Timer()
        self.history: list[dict] = []
        self.callback = callback
        self.best = BestTracker(batch, device)
        self.bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
        self.step = 0

    def track(self, meas: torch.Tensor, image: torch.Tensor, layer: int) -> None:
        """Offer per-image candidates ``image [B, ...]`` with measurement losses ``meas [B]``."""
        self.best.update(meas, image, layer)

    def __call__(self, round_: int, layer: int, loss: torch.Tensor, meas: torch.Tensor, image: torch.Tensor) -> None:
        """Record one step (after :meth:`track` was offered its iterate)."""
        info = StepInfo(self.step, round_, layer, loss.cpu(), meas.cpu(), image, self.timer(),
                        self.best.loss.cpu(), self.best.image)
        self.history.append(info.as_dict())
        if self.callback is not None:
            self.callback(info)
        self.step += 1
        self.bar.update(1)
        if self.step % 10 == 0:
            self.bar.set_postfix(loss=f"{float(meas.mean()):.4g}", layer=layer)

    def close(self) -> None:
        self.bar.close()
