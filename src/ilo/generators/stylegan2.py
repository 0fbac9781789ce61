"""StyleGAN-2 as a layered generator: one stage per synthesis layer, exact head/tail splits.

The networks are those of :mod:`ilo.generators.stylegan2_net` (NVIDIA's state-dict keys, so
their checkpoints load with ``strict=True``); the kernels are in :mod:`ilo.generators.stylegan2_ops`.

Layered interface for ILO (one stage per synthesis layer, ``num_layers = num_ws - 1``)::

    state 0:  {"ws": [B, num_ws, w_dim], "noise0": [B,1,4,4], ..., "noise{L-1}": [B,1,R,R]}
    state k:  {"x":   [B, C, r, r]       feature map after synthesis layer k - 1,
               "img": [B, 3, r', r']     partial RGB image of the skip branch (r' = r, or r / 2
                                         right after a block's conv0),
               "ws":  [B, num_ws - k, w_dim]   the w vectors not consumed yet (ws[:, k:]),
               "noise{k}" ... "noise{L-1}"     the noise maps not consumed yet}
    stage L-1 returns {"image": [B, 3, R, R]}

Stage ``k`` runs synthesis layer ``k`` (``b4.conv1``, ``b8.conv0``, ``b8.conv1``, ...); a stage
that completes a block also runs its ``torgb`` and adds the upsampled skip image. Because the
skip image travels in the state, ``tail(k)(head(k)(s)) == G(s)`` exactly for every ``k`` (the
official ILO code dropped it). ``trainable_keys(k)`` are all entries of state ``k``.

Noise maps in the state are unit-variance maps (the layer multiplies them by its learnt
``noise_strength``). ``noise_mode`` decides how :meth:`StyleGAN2Generator.sample_latent`
fills them: ``"random"`` (drawn from the ``torch.Generator``), ``"const"`` (the stored
``noise_const`` maps: deterministic) or ``"none"`` (zeros). A state without a ``noise{i}`` entry
uses ``noise_mode`` for that layer (``"random"`` then draws from the global RNG).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import LayeredGenerator, State
from .stylegan2_net import NOISE_MODES, MappingNetwork, SynthesisNetwork
from .stylegan2_ops import DEFAULT_FILTER, check_shape

# ---------------------------------------------------------------------------------------------
# the layered generator


class StyleGAN2Generator(LayeredGenerator):
    """StyleGAN-2 (config E/F, skip) as a :class:`LayeredGenerator`; NVIDIA state-dict keys.

    Args:
        img_resolution: output size, a power of two >= 4.
        z_dim, w_dim: latent sizes. img_channels: output channels.
        mapping_layers: FC layers of the mapping network; ``mapping_lr_multiplier`` its lr multiplier.
        layer_features: width of the hidden mapping layers (default ``w_dim``).
        channel_base, channel_max: ``channels(r) = min(channel_base // r, channel_max)``.
        conv_clamp: clamp synthesis activations to ``±conv_clamp`` (``None``: off).
        use_noise: per-layer noise inputs. resample_filter: FIR taps (default ``[1, 3, 3, 1]``).
        noise_mode: ``"random"``, ``"const"`` or ``"none"``, used by :meth:`sample_latent`,
            :meth:`latent_state` and missing noise entries.
        truncation_psi, truncation_cutoff: defaults for :meth:`sample_latent` / :meth:`latent_state`.
        impl: ``"fast"`` (default) or ``"reference"`` (NVIDIA's sequence of plain ops, NCHW,
            per-sample weights; the path the fast one is tested against).
        fused_modconv: fast path only: ``None`` (choose per layer by cost), ``True`` (per-sample
            weights) or ``False`` (scaled activations, shared weights).
        channels_last: fast path only: activation memory format; ``None`` = channels_last on CPU.

    >>> g = StyleGAN2Generator(16, z_dim=8, w_dim=8, channel_base=64, channel_max=8).eval()
    >>> s = g.sample_latent(2, torch.Generator().manual_seed(0))
    >>> g.num_layers, s["ws"].shape, g(s).shape
    (5, torch.Size([2, 6, 8]), torch.Size([2, 3, 16, 16]))
    >>> bool(torch.allclose(g.tail(3)(g.head(3)(s)), g(s), atol=1e-6))
    True
    """
    family = "stylegan2"  # key of the preset table (ilo.solvers.presets)

    def __init__(
        self,
        img_resolution: int = 1024,
        *,
        z_dim: int = 512,
        w_dim: int = 512,
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        layer_features: int | None = None,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        noise_mode: str = "random",
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        impl: str = "fast",
        fused_modconv: bool | None = None,
        channels_last: bool | None = None,
        name: str = "stylegan2",
    ):
        super().__init__()
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, use_noise, conv_clamp, resample_filter)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, layer_features, mapping_lr_multiplier)
        self.z_dim, self.w_dim, self.img_resolution, self.img_channels = z_dim, w_dim, img_resolution, img_channels
        self.use_noise = use_noise
        self.noise_mode, self.truncation_psi, self.truncation_cutoff = noise_mode, truncation_psi, truncation_cutoff
        if impl not in ("fast", "reference"):
            raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
        self.impl, self.fused_modconv, self.channels_last = impl, fused_modconv, channels_last
        self.name = name
        self.image_shape = (img_channels, img_resolution, img_resolution)
        self.num_layers = len(self.synthesis.layers)
        self.config = dict(
            img_resolution=img_resolution, z_dim=z_dim, w_dim=w_dim, img_channels=img_channels, mapping_layers=mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier, layer_features=layer_features, channel_base=channel_base,
            channel_max=channel_max, conv_clamp=conv_clamp, use_noise=use_noise, resample_filter=tuple(resample_filter),
        )

    # -- conveniences -----------------------------------------------------------------------
    @property
    def noise_resolutions(self) -> list[int]:
        """Resolution of the noise map of each synthesis layer (``noise{i}`` is ``[B, 1, r_i, r_i]``)."""
        return [r for r, _ in self.synthesis.layers]

    def noise_keys(self, start: int = 0) -> tuple[str, ...]:
        return tuple(f"noise{i}" for i in range(start, self.num_layers)) if self.use_noise else ()

    def make_noises(self, n: int, generator: torch.Generator | Sequence[torch.Generator] | None = None,
                    noise_mode: str | None = None) -> dict[str, torch.Tensor]:
        """Unit-variance noise maps ``{"noise{i}": [n, 1, r_i, r_i]}`` in ``noise_mode`` (zeros for "none")."""
        mode = noise_mode or self.noise_mode
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        out = {}
        dev = self.device
        for i, key in enumerate(self.noise_keys()):
            r = self.noise_resolutions[i]
            if mode == "none":
                out[key] = torch.zeros(n, 1, r, r, device=dev)
            elif mode == "const":
                out[key] = self.synthesis.noise_for(i, n, mode, dev)
            elif isinstance(generator, Sequence):  # one generator per sample
                out[key] = torch.cat([self.synthesis.noise_for(i, 1, mode, dev, generator=g) for g in generator])
            else:
                out[key] = self.synthesis.noise_for(i, n, mode, dev, generator=generator)
        return out

    def state_from_ws(self, ws: torch.Tensor, noises: dict[str, torch.Tensor] | None = None,
                      generator: torch.Generator | None = None, noise_mode: str | None = None) -> State:
        """State 0 from ``w [B, w_dim]`` or ``w+ [B, num_ws, w_dim]``; noise maps made if not given."""
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.num_ws, 1)
        check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        state: State = {"ws": ws}
        state.update(noises if noises is not None else self.make_noises(ws.shape[0], generator, noise_mode))
        return state

    def sample_latent(self, n: int, generator: torch.Generator | Sequence[torch.Generator] | None = None, *,
                      psi: float | None = None, cutoff: int | None = None, noise_mode: str | None = None) -> State:
        """State 0 for ``n`` draws: ``z ~ N(0, I)`` mapped to w+ (truncated with ``psi``), and noise maps.

        ``generator`` may be one ``torch.Generator`` or one per sample (then each sample draws its
        z and then its noise maps from its own generator, so it does not depend on the batch).
        The mapping runs without gradient: the state is a starting point to optimise.
        """
        psi = self.truncation_psi if psi is None else psi
        cutoff = self.truncation_cutoff if cutoff is None else cutoff
        mode = noise_mode or self.noise_mode
        dev = self.device
        if isinstance(generator, Sequence):
            if len(generator) != n:
                raise ValueError(f"got {len(generator)} generators for {n} samples")
            zs, noise_list = [], []
            for g in generator:
                zs.append(torch.randn(1, self.z_dim, generator=g, device=g.device).to(dev))
                noise_list.append(self.make_noises(1, g, mode))
            z = torch.cat(zs)
            noises = {k: torch.cat([d[k] for d in noise_list]) for k in self.noise_keys()}
        else:
            gdev = generator.device if generator is not None else dev
            z = torch.randn(n, self.z_dim, generator=generator, device=gdev).to(dev)
            noises = self.make_noises(n, generator, mode)
        with torch.no_grad():
            ws = self.mapping(z, psi=psi, cutoff=cutoff)
        return self.state_from_ws(ws, noises)

    def latent_state(self, z: torch.Tensor) -> State:
        """State 0 from a raw tensor: ``z [B, z_dim]`` (mapped, differentiably) or ``w+ [B, num_ws, w_dim]``.

        Noise maps follow ``noise_mode`` (``"random"`` draws from the global RNG).
        """
        if z.ndim == 2:
            ws = self.mapping(z, psi=self.truncation_psi, cutoff=self.truncation_cutoff)
        elif z.ndim == 3:
            ws = z
        else:
            raise ValueError(f"expected z [B, {self.z_dim}] or w+ [B, {self.num_ws}, {self.w_dim}], got {list(z.shape)}")
        return self.state_from_ws(ws)

    def generate(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None, noise_mode: str | None = None) -> torch.Tensor:
        """``G(z)`` like NVIDIA's ``G(z, c, truncation_psi, truncation_cutoff, noise_mode)``: image ``[B, C, R, R]``."""
        ws = self.mapping(z, psi=psi, cutoff=cutoff)
        return self.synthesis(ws, noise_mode=noise_mode or self.noise_mode, **self._run_options())

    def _run_options(self) -> dict:
        return dict(impl=self.impl, fused=self.fused_modconv, channels_last=self.channels_last)

    # -- the layered interface -------------------------------------------------------------------
    def trainable_keys(self, k: int) -> tuple[str, ...]:
        """State entries an optimiser may change at layer ``k``: ws and noises (and x, img for k > 0)."""
        if not 0 <= k < self.num_layers:
            raise ValueError(f"k must be in [0, {self.num_layers}), got {k}")
        return (("ws",) if k == 0 else ("x", "img", "ws")) + self.noise_keys(k)

    def stage(self, k: int, state: State) -> State:
        """Synthesis layer ``k`` (plus its block's torgb and skip sum when it completes the block)."""
        if not 0 <= k < self.num_layers:
            raise ValueError(f"stage index must be in [0, {self.num_layers}), got {k}")
        ws = state["ws"]
        check_shape(ws, [None, self.num_ws - k, self.w_dim], f"state {k} 'ws'")
        if k == 0:
            x = img = None
        else:
            if "x" not in state or "img" not in state:
                raise ValueError(f"state {k} needs 'x' and 'img' (got {sorted(state)}); build it with head({k})")
            x, img = state["x"], state["img"]
        noise = state.get(f"noise{k}")
        x, img = self.synthesis.run_layer(k, x, img, ws[:, 0], ws[:, 1], noise, self.noise_mode, **self._run_options())
        if k == self.num_layers - 1:
            return {"image": img.contiguous()}
        out: State = {"x": x, "img": img, "ws": ws[:, 1:]}
        for key in self.noise_keys(k + 1):
            if key in state:
                out[key] = state[key]
        return out
