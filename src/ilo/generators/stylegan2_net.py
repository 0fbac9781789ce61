"""StyleGAN-2 networks (Karras et al. 2020, configs E/F, skip architecture) with NVIDIA's names.

Written from the architecture description; parameter and buffer names are those of NVIDIA's
``stylegan2-ada-pytorch`` / ``stylegan3`` (``training/networks*.py``) so that their state dicts
load with ``strict=True``. No custom CUDA ops, no compilation: runs on CPU and GPU as is.

Architecture (``G = synthesis ∘ mapping``)::

    z [B, z_dim] -> z / rms(z) -> fc0..fc{L-1} (equalised lr, lr multiplier 0.01,
                    leaky ReLU 0.2 with gain √2) -> w [B, w_dim]
    w -> broadcast to w+ [B, num_ws, w_dim] -> truncation w_avg + ψ (w - w_avg) (optional cutoff)
    b4:   const [C4, 4, 4] -> conv1 (3x3 modulated, demodulated) -> torgb (1x1, no demod) -> img
    b{r}: conv0 (3x3 transposed conv, stride 2, then [1,3,3,1] FIR) -> conv1 -> torgb,
          img = upsample2d(img) + torgb(x)                           (skip architecture)

Every synthesis layer adds ``noise_strength * noise`` (noise ``[B, 1, r, r]``), a bias, a leaky
ReLU with gain √2 and an optional clamp (``conv_clamp``). Synthesis layer ``i`` (``0 ..
num_ws - 2``) uses ``ws[:, i]``; the torgb of the block completed by layer ``i`` uses
``ws[:, i + 1]`` (the same w as the next block's first conv, as in the originals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2_ops import (
    DEFAULT_FILTER,
    LRELU_GAIN,
    LRELU_SLOPE,
    blur,
    check_shape,
    epilogue,
    is_channels_last,
    memory_format_for,
    modulated_conv2d,
    normalize_2nd_moment,
    per_sample_1x1,
    prefer_fused,
    restride,
    scaled_conv,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

NOISE_MODES = ("random", "const", "none")

# ---------------------------------------------------------------------------------------------
# modules (attribute names = NVIDIA's state-dict keys)


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: ``y = x (W g)^T + b m`` then the activation.

    ``g = lr_multiplier / sqrt(in_features)``, ``m = lr_multiplier``; ``activation`` is
    ``"linear"`` or ``"lrelu"`` (slope 0.2, gain √2). Keys: ``weight [out, in]``, ``bias [out]``.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, self.weight.t(), alpha=self.weight_gain)
        # lrelu(y) * g == lrelu(y * g) for g > 0: scale first so that both ops can run in place
        x = torch.mm(x, self.weight.t()).mul_(self.weight_gain * LRELU_GAIN).add_(b * LRELU_GAIN)
        return F.leaky_relu_(x, LRELU_SLOPE)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z -> w+ : normalisation, ``num_layers`` FC layers, broadcast, truncation toward ``w_avg``.

    Keys: ``fc{i}.weight``, ``fc{i}.bias``, ``w_avg`` (buffer ``[w_dim]``).

    >>> m = MappingNetwork(z_dim=8, w_dim=6, num_ws=4, num_layers=2)
    >>> m(torch.randn(3, 8)).shape  # [B, num_ws, w_dim]
    torch.Size([3, 4, 6])
    >>> sorted(m.state_dict())
    ['fc0.bias', 'fc0.weight', 'fc1.bias', 'fc1.weight', 'w_avg']
    """

    w_avg: torch.Tensor  # buffer

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, layer_features: int | None = None, lr_multiplier: float = 0.01):
        super().__init__()
        if z_dim <= 0 or num_layers <= 0:
            raise ValueError("z_dim and num_layers must be positive")
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        feats = [z_dim] + [layer_features or w_dim] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], "lrelu", lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None, broadcast: bool = True) -> torch.Tensor:
        """``z [B, z_dim]`` -> ``w+ [B, num_ws, w_dim]`` (``[B, w_dim]`` if not ``broadcast``).

        Truncation: ``w_avg + psi * (w - w_avg)``, applied to the first ``cutoff`` ws only if
        ``cutoff`` is given (with ``broadcast``).
        """
        check_shape(z, [None, self.z_dim], "z")
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if broadcast:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [B, num_ws, w_dim]
        if psi != 1:
            if cutoff is None or not broadcast:
                x = self.w_avg.lerp(x, psi)
            else:
                x = torch.cat([self.w_avg.lerp(x[:, :cutoff], psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x upsampling), noise, bias, leaky ReLU (gain √2), clamp.

    ``y = clamp(lrelu(modconv(x, W, affine(w)) + noise_strength * noise + bias) * √2)``.
    Keys: ``affine.{weight,bias}``, ``weight [O, I, 3, 3]``, ``bias [O]``, ``noise_const [r, r]``,
    ``noise_strength []``, ``resample_filter [4, 4]``.
    """

    resample_filter: torch.Tensor  # buffers; noise_const only when use_noise
    noise_const: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 use_noise: bool = True, conv_clamp: float | None = None, resample_filter: Sequence[float] = DEFAULT_FILTER,
                 kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.up, self.use_noise, self.conv_clamp = up, use_noise, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self._cache: dict[str, tuple] = {}

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None, impl: str = "fast",
                fused: bool | None = None) -> torch.Tensor:
        """``x [B, I, r/up, r/up]``, ``w [B, w_dim]``, unit-variance ``noise [B|1, 1, r, r]`` -> ``[B, O, r, r]``.

        ``impl="reference"``: NVIDIA's sequence of operations, NCHW, per-sample weights.
        ``impl="fast"``: the same maths rearranged (see :meth:`_forward_fast`).
        """
        r_in = self.resolution // 2 if self.up else self.resolution
        check_shape(x, [None, self.in_channels, r_in, r_in], f"input of the {self.resolution}px synthesis layer")
        if noise is not None:
            check_shape(noise, [None, 1, self.resolution, self.resolution], f"noise map of the {self.resolution}px layer")
        if not self.use_noise:
            noise = None
        styles = self.affine(w)  # [B, I]
        if impl == "fast":
            return self._forward_fast(x, styles, noise, fused)
        if impl != "reference":
            raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter)
        if noise is not None:
            x = x + noise * self.noise_strength
        x = F.leaky_relu(x + self.bias.reshape(1, -1, 1, 1), LRELU_SLOPE) * LRELU_GAIN
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def _derived(self, what: str) -> torch.Tensor:
        """Tensors derived from the weight, cached while it is frozen and unchanged.

        ``"sq"``: ``sum_taps W^2`` ``[O, I]``; ``"conv_cl"`` / ``"convT_cl"``: the weight (or its
        transposed-convolution layout ``[I, O, k, k]``) in channels_last, so that oneDNN does not
        reorder it on every call.
        """
        wt = self.weight
        make = {
            "sq": lambda w: w.square().sum(dim=[2, 3]),
            "conv_cl": lambda w: w.contiguous(memory_format=torch.channels_last),
            "convT_cl": lambda w: w.transpose(0, 1).contiguous(memory_format=torch.channels_last),
        }[what]
        if wt.requires_grad and torch.is_grad_enabled():
            return make(wt)
        key = (wt._version, wt.data_ptr(), wt.dtype, wt.device)
        hit = self._cache.get(what)
        if hit is None or hit[0] != key:
            hit = self._cache[what] = (key, make(wt.detach()))
        return hit[1]

    def _forward_fast(self, x: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None, fused: bool | None) -> torch.Tensor:
        """Same maths as the reference, fewer passes over memory.

        * ``dcoefs = rsqrt(s^2 @ (sum_taps W^2)^T + 1e-8)``: no ``[B, O, I, k, k]`` temporaries.
        * ``lrelu(y) * g == lrelu(g * y)`` (g > 0): the gain √2 is folded into the demodulation
          coefficients, the bias and the noise strength; the bias rides in the convolution.
        * *fused* (per-sample weights) or *non-fused* (``x * s``, shared conv, ``* dcoefs``),
          whichever is cheaper (:func:`prefer_fused`).
        """
        b, cin, h, wd = x.shape
        cout = self.out_channels
        g = LRELU_GAIN
        dg = (styles.square() @ self._derived("sq").t() + 1e-8).rsqrt() * g  # [B, O]
        gb = self.bias * g
        cl = is_channels_last(x)
        if fused is None:
            fused = prefer_fused(styles, self.weight, cin * h * wd + cout * (4 if self.up else 1) * h * wd, cl)
        if fused:
            wt = self._derived("conv_cl") if cl and b == 1 else self.weight
            wmod = wt.unsqueeze(0) * (dg.unsqueeze(2) * styles.unsqueeze(1)).reshape(b, cout, cin, 1, 1)
            xin = x if b == 1 else x.reshape(1, b * cin, h, wd)
            mf = torch.channels_last if cl else torch.contiguous_format  # weight layout = activation layout: no reorders
            if self.up:
                wt = wmod.transpose(1, 2).reshape(b * cin, cout, *wmod.shape[-2:]).contiguous(memory_format=mf)
                y = F.conv_transpose2d(xin, wt, stride=2, groups=b)
                y = restride(y.reshape(b, cout, *y.shape[2:]))
                y = blur(y, self.resample_filter, pad=1, gain=4.0, bias=gb)
            else:
                wt = wmod.reshape(b * cout, cin, *wmod.shape[-2:]).contiguous(memory_format=mf)
                y = F.conv2d(xin, wt, bias=gb.repeat(b), padding=self.padding, groups=b)
                y = y.reshape(b, cout, *y.shape[2:])
        else:
            if self.up:
                wt = self._derived("convT_cl") if cl else self.weight.transpose(0, 1)
                y = restride(scaled_conv(x, styles, wt, transposed=True))
                y = blur(y, self.resample_filter, pad=1, gain=4.0)
            else:
                y = scaled_conv(x, styles, self._derived("conv_cl") if cl else self.weight)
            y = epilogue(y, dg, gb, None if noise is None else (noise, self.noise_strength * g))
        if fused:
            if noise is not None:
                y = y.addcmul_(noise, self.noise_strength * g)
            y = F.leaky_relu_(y, LRELU_SLOPE)
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y

    @property
    def padding(self) -> int:
        return self.weight.shape[-1] // 2

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, bias, optional clamp. Keys: ``affine.*``, ``weight``, ``bias``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, impl: str = "fast") -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [B, I]
        if impl == "reference":
            x = modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias.reshape(1, -1, 1, 1)
        elif prefer_fused(styles, self.weight, x[0].numel(), is_channels_last(x)):
            x = per_sample_1x1(x, self.weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1), self.bias)
        else:
            x = scaled_conv(x, styles, self.weight) + self.bias.reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (``const`` | ``conv0`` with upsampling), ``conv1``, ``torgb``; ``resample_filter`` buffer."""

    resample_filter: torch.Tensor  # buffer

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 use_noise: bool = True, conv_clamp: float | None = None, resample_filter: Sequence[float] = DEFAULT_FILTER):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        layer = partial(SynthesisLayer, w_dim=w_dim, resolution=resolution, use_noise=use_noise, conv_clamp=conv_clamp,
                        resample_filter=resample_filter)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = layer(in_channels, out_channels, up=True)
        self.conv1 = layer(out_channels, out_channels)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2


class SynthesisNetwork(nn.Module):
    """w+ -> image: blocks ``b4 .. b{img_resolution}`` with ``min(channel_base // r, channel_max)`` channels."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                 use_noise: bool = True, conv_clamp: float | None = None, resample_filter: Sequence[float] = DEFAULT_FILTER):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1) or img_resolution > 1 << 14:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, img_resolution.bit_length())]
        self.channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        if min(self.channels.values()) < 1:
            raise ValueError(f"channel_base={channel_base} gives no channels at {img_resolution}px")
        # layers[i] = (block resolution, "conv0" | "conv1"); layer i uses ws[:, i]
        self.layers: list[tuple[int, str]] = []
        for r in self.block_resolutions:
            cin = self.channels[r // 2] if r > 4 else 0
            setattr(self, f"b{r}", SynthesisBlock(cin, self.channels[r], w_dim, r, img_channels, use_noise, conv_clamp, resample_filter))
            self.layers += [(r, "conv0"), (r, "conv1")] if r > 4 else [(r, "conv1")]
        self.num_ws = len(self.layers) + 1
        self.use_noise = use_noise

    def layer(self, i: int) -> SynthesisLayer:
        r, name = self.layers[i]
        return getattr(getattr(self, f"b{r}"), name)

    def forward(self, ws: torch.Tensor, noises: Sequence[torch.Tensor | None] | dict | None = None, noise_mode: str = "const",
                impl: str = "fast", fused: bool | None = None, channels_last: bool | None = None) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` (or ``[B, w_dim]``) -> image ``[B, C, R, R]``.

        ``noises``: one unit-variance map ``[B|1, 1, r, r]`` per layer, as a list or as a state-like
        dict ``{"noise{i}": ...}``; ``None`` entries, missing keys or no ``noises`` follow
        ``noise_mode``: ``"const"`` (default: the stored maps), ``"random"`` (fresh draws), ``"none"``.
        """
        if isinstance(noises, dict):
            noises = [noises.get(f"noise{i}") for i in range(len(self.layers))]
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.num_ws, 1)
        check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        if noises is not None and len(noises) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} noise maps, got {len(noises)}")
        x = img = None
        for i in range(len(self.layers)):
            noise = noises[i] if noises is not None else None
            x, img = self.run_layer(i, x, img, ws[:, i], ws[:, i + 1], noise, noise_mode, impl, fused, channels_last)
        assert img is not None  # there is always a first layer (the 4px block's conv1)
        return img.contiguous()

    def run_layer(self, i: int, x: torch.Tensor | None, img: torch.Tensor | None, w: torch.Tensor, w_rgb: torch.Tensor,
                  noise: torch.Tensor | None, noise_mode: str, impl: str = "fast", fused: bool | None = None,
                  channels_last: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesis layer ``i`` (and the torgb + skip sum of its block when it completes one) -> ``(x, img)``.

        Layer 0 starts from the block's constant (``x`` and ``img`` may be ``None``); every later
        layer needs the ``x`` and ``img`` of the layer before it.
        """
        r, name = self.layers[i]
        block = getattr(self, f"b{r}")
        if i == 0:
            x = block.const.unsqueeze(0).repeat(w.shape[0], 1, 1, 1)
        elif x is None or img is None:
            raise ValueError(f"synthesis layer {i} needs the activations x and the image img of layer {i - 1}")
        if impl == "fast":
            x = x.contiguous(memory_format=memory_format_for(x, channels_last))
        else:
            x = x.contiguous()
        layer = getattr(block, name)
        if noise is None and layer.use_noise and noise_mode != "none":
            noise = self.noise_for(i, x.shape[0], noise_mode, x.device, x.dtype)
        x = layer(x, w, noise, impl=impl, fused=fused)
        if name == "conv1":
            y = block.torgb(x, w_rgb, impl=impl)
            if img is not None:
                up = upsample2d(img, block.resample_filter) if impl == "fast" else upfirdn2d(img, block.resample_filter, 2, (2, 1, 2, 1), 4.0)
                y = up + y
            img = y
        assert img is not None  # layer 0 is the first block's conv1, which makes the first image
        return x, img

    def noise_for(self, i: int, n: int, mode: str, device: torch.device, dtype: torch.dtype = torch.float32,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Unit-variance noise map ``[n, 1, r, r]`` for layer ``i`` in ``mode`` ("const" or "random")."""
        layer = self.layer(i)
        if mode == "const":
            return layer.noise_const.to(device, dtype)[None, None].repeat(n, 1, 1, 1)
        if mode == "random":
            r = layer.resolution
            gdev = generator.device if generator is not None else device
            return torch.randn(n, 1, r, r, generator=generator, device=gdev).to(device, dtype)
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        raise ValueError("noise_mode 'none' has no noise map")


