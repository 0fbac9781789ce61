"""The layered-generator interface that every solver works with.

A generator ``G`` is a chain of ``num_layers`` stages. The *state* between stages is a
``dict[str, Tensor]`` (so side inputs such as StyleGAN-2's per-layer styles, noise maps and
the partial RGB image of the skip branch travel with the feature map). State ``0`` is the
latent; the last stage returns the image:

    state_0 = {"z": z}                                   # the latent, see ``sample_latent``
    state_k = run(state_0, 0, k)                          # = head(k)(state_0)
    image   = run(state_k, k, num_layers)["image"]        # = tail(k)(state_k)

The split is exact by construction: ``tail(k)(head(k)(s)) == G(s)`` for every ``k`` (tested),
which is what Intermediate Layer Optimization needs (the official ILO code breaks this for
StyleGAN-2 by dropping the skip branch; ours carries it in the state).

Images are ``[B, C, H, W]`` tensors in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

State = dict[str, torch.Tensor]


class LayeredGenerator(nn.Module):
    """Base class: a generator exposed as ``num_layers`` stages with exact head/tail splits.

    Subclasses implement :meth:`stage` (one step ``k -> k+1`` of the chain),
    :meth:`sample_latent` and set ``image_shape``, ``num_layers`` and ``name``.
    The final stage must return a state holding ``"image"``.
    """

    name: str = "generator"
    family: str = "layered"  # key of the preset table (ilo.solvers.presets); subclasses name theirs
    image_shape: tuple[int, int, int] = (3, 64, 64)
    num_layers: int = 1

    # -- to implement ---------------------------------------------------------------------
    def stage(self, k: int, state: State) -> State:  # pragma: no cover - abstract
        """Apply stage ``k`` (mapping state ``k`` to state ``k + 1``)."""
        raise NotImplementedError

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> State:
        """Draw ``n`` latents from the generator's prior as state ``0``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def latent_state(self, z: torch.Tensor) -> State:
        """Wrap a raw latent tensor as state ``0``."""
        return {"z": z}

    def trainable_keys(self, k: int) -> tuple[str, ...]:
        """Which entries of state ``k`` an optimiser may change (default: all of them)."""
        return tuple(self.layer_shapes()[k].keys())

    def layer_shapes(self) -> list[dict[str, tuple[int, ...]]]:
        """Per-sample shapes of every entry of states ``0 .. num_layers - 1`` (no batch dim)."""
        with torch.no_grad():
            s = self.sample_latent(1, torch.Generator().manual_seed(0))
            out = []
            for k in range(self.num_layers):
                out.append({key: tuple(v.shape[1:]) for key, v in s.items()})
                s = self.stage(k, s)
        return out

    # -- derived ---------------------------------------------------------------------------
    def run(self, state: State, start: int, stop: int) -> State:
        """Apply stages ``start .. stop - 1`` to a state at layer ``start``."""
        if not 0 <= start <= stop <= self.num_layers:
            raise ValueError(f"need 0 <= start <= stop <= {self.num_layers}, got {start}, {stop}")
        for k in range(start, stop):
            state = self.stage(k, state)
        return state

    def head(self, k: int) -> Callable[[State], State]:
        """``G1``: latent state -> state at layer ``k``."""
        return lambda state: self.run(state, 0, k)

    def tail(self, k: int) -> Callable[[State], torch.Tensor]:
        """``G2``: state at layer ``k`` -> image ``[B, C, H, W]`` in ``[-1, 1]``."""
        return lambda state: self.run(state, k, self.num_layers)["image"]

    def forward(self, state: State | torch.Tensor) -> torch.Tensor:
        """Full generator ``G``; accepts a latent state or a raw latent tensor."""
        if isinstance(state, torch.Tensor):
            state = self.latent_state(state)
        return self.tail(0)(state)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def per_sample_generators(seeds: list[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per image, so that a result never depends on its batch."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def randn_per_sample(
    shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Stack one standard-normal draw of ``shape`` from each generator: ``[len(generators), *shape]``."""
    return torch.stack([torch.randn(shape, generator=g, device=g.device) for g in generators]).to(device)
