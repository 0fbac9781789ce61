"""StyleGAN-2 generator (Karras et al. 2020, configs E/F, skip architecture) in plain PyTorch.

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

Two implementations of the same maths (tested equal to float tolerance), chosen by ``impl``:

* ``"reference"``: NVIDIA's sequence of plain ops in FP32 (per-sample weights with a grouped
  convolution; up-sampling by transposed convolution then ``upfirdn2d`` with the ``[1,3,3,1]``
  filter; noise, bias, leaky ReLU, gain, clamp), NCHW. The ``fp16`` options of NVIDIA's configs
  only change the precision their CUDA code runs in and are ignored.
* ``"fast"`` (default): demodulation coefficients from ``sum_taps W^2`` (no per-sample weight
  temporaries), the gain folded into the coefficients and the bias into the convolution,
  *fused* or *non-fused* modulation per layer, whichever is cheaper (non-fused whenever
  gradients flow to the styles of a frozen generator: it needs no weight gradient),
  ``channels_last`` activations on CPU (faster with oneDNN), cached weight layouts.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayeredGenerator, State

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEFAULT_FILTER = (1, 3, 3, 1)
NOISE_MODES = ("random", "const", "none")


# ---------------------------------------------------------------------------------------------
# functional pieces


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """2-D FIR filter ``[n, n]``: outer product of ``taps`` normalised to unit sum."""
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"resample filter must be a non-empty 1-D list of taps, got {taps!r}")
    f = torch.outer(t, t)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _check_shape(t: torch.Tensor, shape: Sequence[int | None], what: str) -> None:
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{what}: expected shape {want}, got {list(t.shape)}")


def _memory_format(x: torch.Tensor, channels_last: bool | None) -> torch.memory_format:
    if channels_last is None:
        channels_last = x.device.type == "cpu"
    return torch.channels_last if channels_last else torch.contiguous_format


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, pad: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Reference upfirdn (``scipy.signal.upfirdn`` semantics, NCHW, per channel).

    Inserts ``up - 1`` zeros after every pixel, zero-pads by ``pad = (left, right, top, bottom)``,
    then convolves (true convolution, "valid") with ``f * gain``. ``f``: ``[n, n]``.
    """
    b, c, h, w = x.shape
    if up > 1:
        u = x.new_zeros(b, c, h * up, w * up)
        u[:, :, ::up, ::up] = x
        x = u
    x = F.pad(x, list(pad))
    k = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """FIR upsampling by 2: ``upfirdn2d(x, f, up=2, pad=[(n+1)//2, (n-2)//2] * 2, gain=4)``.

    Done as one depthwise transposed convolution (a stride-2 transposed convolution *is* zero
    insertion followed by a convolution); the same maths as the reference. ``[B, C, H, W] ->
    [B, C, 2H, 2W]``.
    """
    c, n = x.shape[1], f.shape[-1]
    if n % 2:
        raise ValueError("upsample2d needs an even-length filter")
    k = (f * 4).to(x.dtype)[None, None].expand(c, 1, n, n)
    return F.conv_transpose2d(x, k, stride=2, padding=n // 2 - 1, groups=c)


def _blur(x: torch.Tensor, f: torch.Tensor, pad: int, gain: float, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise true convolution with ``f * gain`` and zero padding ``pad`` (optionally + bias)."""
    c, n = x.shape[1], f.shape[-1]
    k = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(c, 1, n, n).contiguous()
    return F.conv2d(x, k, bias=bias, padding=pad, groups=c)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _restride(y: torch.Tensor) -> torch.Tensor:
    """Canonical strides for a batch-1 channels_last tensor (same memory, no copy).

    oneDNN's transposed convolution may return a batch stride that is irrelevant for one sample
    but makes the next convolution mistake the layout and copy the tensor.
    """
    b, c, h, w = y.shape
    if b == 1 and _is_channels_last(y) and y.stride(0) != c * h * w:
        return y.as_strided(y.shape, (c * h * w, 1, w * c, c))
    return y


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference StyleGAN-2 modulated convolution ("same" padding), optionally upsampling by 2.

    ``w'[b,o,i] = W[o,i] s[b,i]``; with ``demodulate`` each output filter is scaled by
    ``rsqrt(sum_{i,taps} w'^2 + 1e-8)``. With ``up`` the convolution is transposed with stride 2
    and followed by the FIR filter with gain 4 and padding 1 (NVIDIA's ``conv2d_resample``).
    Per-sample weights, grouped convolution, NCHW: the plain path every fast path is tested against.

    Args:
        x: ``[B, I, H, W]``; weight: ``[O, I, k, k]``; styles: ``[B, I]``.

    Returns:
        ``[B, O, H, W]`` (``[B, O, 2H, 2W]`` with ``up``).
    """
    b, cin, h, wd = x.shape
    cout, _, kh, kw = weight.shape
    _check_shape(styles, [b, cin], "styles")
    wmod = weight.unsqueeze(0) * styles.reshape(b, 1, cin, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        wmod = wmod * (wmod.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = x.reshape(1, b * cin, h, wd)
    if up:
        if resample_filter is None:
            raise ValueError("up=True needs the resample filter")
        wt = wmod.transpose(1, 2).reshape(b * cin, cout, kh, kw)  # transposed-conv layout [I, O/groups, k, k]
        y = F.conv_transpose2d(x, wt, stride=2, groups=b)
        y = upfirdn2d(y, resample_filter, pad=(1, 1, 1, 1), gain=4.0)
    else:
        y = F.conv2d(x, wmod.reshape(b * cout, cin, kh, kw), padding=kh // 2, groups=b)
    return y.reshape(b, cout, *y.shape[2:])


def _prefer_fused(styles: torch.Tensor, weight: torch.Tensor, act_numel: int, channels_last: bool) -> bool:
    """Fused (per-sample weights) or non-fused (scaled activations) modulated convolution?

    With gradients to the styles but a frozen weight (ILO), the non-fused form needs only the
    input gradient of a fixed-weight convolution, while the fused one also needs a weight
    gradient (a second convolution's worth of work): non-fused. Otherwise compare the
    elements touched: modulating ``B`` weights vs scaling input and output activations;
    a batch > 1 in channels_last would need copies to group the convolution: non-fused.
    """
    b = styles.shape[0]
    if torch.is_grad_enabled() and styles.requires_grad and not weight.requires_grad:
        return False
    if b > 1 and channels_last:
        return False
    return weight.numel() < act_numel


class _ScaledConv(torch.autograd.Function):
    """``conv(x * s, W)`` (3x3 "same", or transposed with stride 2) for a frozen ``W``.

    Autograd would keep ``x * s`` (an activation-sized tensor) for the convolution's backward;
    the input gradient of a convolution does not depend on its input, so this keeps only ``x``
    (alive anyway) and ``s``: ``g_x = s * conv^T(g)``, ``g_s = sum_hw x * conv^T(g)``.
    """

    @staticmethod
    def forward(ctx, x, s, weight, transposed):  # noqa: D102 - see the class docstring
        pad = 0 if transposed else weight.shape[-1] // 2
        if x.shape[0] == 1:  # one sample: scale the (small) weight instead of the activations
            ws = weight * (s.reshape(-1, 1, 1, 1) if transposed else s.reshape(1, -1, 1, 1))
            y = F.conv_transpose2d(x, ws, stride=2) if transposed else F.conv2d(x, ws, padding=pad)
        else:
            xs = x * s.reshape(*s.shape, 1, 1)
            y = F.conv_transpose2d(xs, weight, stride=2) if transposed else F.conv2d(xs, weight, padding=pad)
        ctx.save_for_backward(x, s, weight)
        ctx.transposed, ctx.pad = transposed, pad
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        x, s, weight = ctx.saved_tensors
        stride = [2, 2] if ctx.transposed else [1, 1]
        gxs = torch.ops.aten.convolution_backward(
            gy, x, weight, None, stride, [ctx.pad, ctx.pad], [1, 1], ctx.transposed, [0, 0], 1, [True, False, False]
        )[0]  # the input's values are not read for the input gradient: x stands in for x * s
        gx = gxs * s.reshape(*s.shape, 1, 1) if ctx.needs_input_grad[0] else None
        gs = (gxs * x).sum(dim=[2, 3]) if ctx.needs_input_grad[1] else None
        return gx, gs, None, None


def _scaled_conv(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``conv(x * s, weight)``; memory-lean under autograd when only ``x`` and ``s`` need gradients."""
    if torch.is_grad_enabled() and (x.requires_grad or s.requires_grad) and not weight.requires_grad:
        return _ScaledConv.apply(x, s, weight, transposed)
    xs = x * s.reshape(*s.shape, 1, 1)
    if transposed:
        return F.conv_transpose2d(xs, weight, stride=2)
    return F.conv2d(xs, weight, padding=weight.shape[-1] // 2)


class _Epilogue(torch.autograd.Function):
    """``r = lrelu(y * d + b + noise * ns)`` (slope 0.2), keeping ``r`` rather than ``y`` for backward.

    The gradient of ``d`` needs ``y``: with ``g_pre`` the gradient before the leaky ReLU,
    ``sum_px g_pre * y * d = sum_px g * r - b sum_px g_pre - ns sum_px g_pre * noise`` (because
    ``g_pre * lrelu^-1(r) == g * r``); the pixel sums of ``g_pre`` and ``g_pre * noise`` come
    from one batched matmul. ``y [B, O, H, W]``, ``d [B, O]``, ``b [O]``, ``noise [B|1, 1, H, W]``
    or ``None``, ``ns`` a scalar tensor.
    """

    @staticmethod
    def forward(ctx, y, d, b, noise, ns):  # noqa: D102 - see the class docstring
        r = torch.addcmul(b.reshape(1, -1, 1, 1), y, d.reshape(*d.shape, 1, 1))
        if noise is not None:
            r.addcmul_(noise, ns)
        F.leaky_relu_(r, LRELU_SLOPE)
        ctx.save_for_backward(r, d, b, noise, ns)
        return r

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        r, d, b, noise, ns = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_pre = torch.ops.aten.leaky_relu_backward(g, r, LRELU_SLOPE, True)  # gradient before the leaky ReLU
        gy = g_pre * d.reshape(*d.shape, 1, 1) if need[0] else None
        gd = gb = gnoise = gns = None
        if need[1] or need[2] or (noise is not None and need[4]):
            # per-channel sums over pixels of g_pre and of g_pre * noise, as one batched matmul
            bsz, c, h, w = g_pre.shape
            if _is_channels_last(g_pre):
                gm = g_pre.permute(0, 2, 3, 1).reshape(bsz, h * w, c)  # a view: [B, HW, C]
            else:
                gm = g_pre.reshape(bsz, c, h * w).transpose(1, 2)
            vecs = [torch.ones(1, 1, h * w, dtype=g.dtype, device=g.device).expand(bsz, 1, h * w)]
            if noise is not None:
                vecs.append(noise.reshape(noise.shape[0], 1, h * w).expand(bsz, 1, h * w))
            sums = torch.bmm(torch.cat(vecs, dim=1), gm)  # [B, 1 or 2, C]
            s_pix = sums[:, 0]
            s_noise = sums[:, 1] if noise is not None else None
            if need[1]:
                # y * d = lrelu^-1(r) - b - noise * ns, and g_pre * lrelu^-1(r) == g * r
                num = (g * r).sum(dim=[2, 3]) - b * s_pix
                if noise is not None:
                    num = num - ns * s_noise
                gd = num / d
            if need[2]:
                gb = s_pix.sum(dim=0)
            if noise is not None and need[4]:
                gns = s_noise.sum()
        if noise is not None and need[3]:
            gnoise = g_pre.sum(dim=1, keepdim=True) * ns
            if noise.shape[0] == 1 and gnoise.shape[0] > 1:
                gnoise = gnoise.sum(dim=0, keepdim=True)
        return gy, gd, gb, gnoise, gns


def _epilogue(y: torch.Tensor, d: torch.Tensor, b: torch.Tensor, noise: torch.Tensor | None, ns: torch.Tensor | None) -> torch.Tensor:
    """``lrelu(y * d + b + noise * ns)``; memory-lean under autograd (see :class:`_Epilogue`)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (y, d, b, noise, ns)):
        return _Epilogue.apply(y, d, b, noise, ns)
    r = torch.addcmul(b.reshape(1, -1, 1, 1), y, d.reshape(*d.shape, 1, 1))
    if noise is not None:
        r.addcmul_(noise, ns)
    return F.leaky_relu_(r, LRELU_SLOPE)


def _per_sample_1x1(x: torch.Tensor, wmod: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``y[b] = wmod[b] @ x[b] + bias`` for a 1x1 conv with per-sample weights ``[B, O, I]`` (no copies)."""
    b, cin, h, w = x.shape
    cout = wmod.shape[1]
    if _is_channels_last(x):
        xv = x.permute(0, 2, 3, 1).reshape(b, h * w, cin)  # a view: [B, HW, I]
        y = torch.baddbmm(bias.reshape(1, 1, cout), xv, wmod.transpose(1, 2))
        return y.reshape(b, h, w, cout).permute(0, 3, 1, 2)
    y = torch.baddbmm(bias.reshape(1, cout, 1), wmod, x.reshape(b, cin, h * w))
    return y.reshape(b, cout, h, w)


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
    """

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
        _check_shape(z, [None, self.z_dim], "z")
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
        _check_shape(x, [None, self.in_channels, r_in, r_in], f"input of the {self.resolution}px synthesis layer")
        if noise is not None:
            _check_shape(noise, [None, 1, self.resolution, self.resolution], f"noise map of the {self.resolution}px layer")
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
          whichever is cheaper (:func:`_prefer_fused`).
        """
        b, cin, h, wd = x.shape
        cout, kk = self.out_channels, self.weight.shape[-1] ** 2
        g = LRELU_GAIN
        dg = (styles.square() @ self._derived("sq").t() + 1e-8).rsqrt() * g  # [B, O]
        gb = self.bias * g
        cl = _is_channels_last(x)
        if fused is None:
            fused = _prefer_fused(styles, self.weight, cin * h * wd + cout * (4 if self.up else 1) * h * wd, cl)
        if fused:
            wt = self._derived("conv_cl") if cl and b == 1 else self.weight
            wmod = wt.unsqueeze(0) * (dg.unsqueeze(2) * styles.unsqueeze(1)).reshape(b, cout, cin, 1, 1)
            xin = x if b == 1 else x.reshape(1, b * cin, h, wd)
            mf = torch.channels_last if cl else torch.contiguous_format  # weight layout = activation layout: no reorders
            if self.up:
                wt = wmod.transpose(1, 2).reshape(b * cin, cout, *wmod.shape[-2:]).contiguous(memory_format=mf)
                y = F.conv_transpose2d(xin, wt, stride=2, groups=b)
                y = _restride(y.reshape(b, cout, *y.shape[2:]))
                y = _blur(y, self.resample_filter, pad=1, gain=4.0, bias=gb)
            else:
                wt = wmod.reshape(b * cout, cin, *wmod.shape[-2:]).contiguous(memory_format=mf)
                y = F.conv2d(xin, wt, bias=gb.repeat(b), padding=self.padding, groups=b)
                y = y.reshape(b, cout, *y.shape[2:])
        else:
            if self.up:
                wt = self._derived("convT_cl") if cl else self.weight.transpose(0, 1)
                y = _restride(_scaled_conv(x, styles, wt, transposed=True))
                y = _blur(y, self.resample_filter, pad=1, gain=4.0)
            else:
                y = _scaled_conv(x, styles, self._derived("conv_cl") if cl else self.weight)
            y = _epilogue(y, dg, gb, noise, self.noise_strength * g if noise is not None else None)
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
        elif _prefer_fused(styles, self.weight, x[0].numel(), _is_channels_last(x)):
            x = _per_sample_1x1(x, self.weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1), self.bias)
        else:
            x = _scaled_conv(x, styles, self.weight) + self.bias.reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (``const`` | ``conv0`` with upsampling), ``conv1``, ``torgb``; ``resample_filter`` buffer."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 use_noise: bool = True, conv_clamp: float | None = None, resample_filter: Sequence[float] = DEFAULT_FILTER):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        kw = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise, conv_clamp=conv_clamp, resample_filter=resample_filter)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
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
        _check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        if noises is not None and len(noises) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} noise maps, got {len(noises)}")
        x = img = None
        for i in range(len(self.layers)):
            noise = noises[i] if noises is not None else None
            x, img = self.run_layer(i, x, img, ws[:, i], ws[:, i + 1], noise, noise_mode, impl, fused, channels_last)
        return img.contiguous()

    def run_layer(self, i: int, x: torch.Tensor | None, img: torch.Tensor | None, w: torch.Tensor, w_rgb: torch.Tensor,
                  noise: torch.Tensor | None, noise_mode: str, impl: str = "fast", fused: bool | None = None,
                  channels_last: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Synthesis layer ``i`` (and the torgb + skip sum of its block when it completes one)."""
        r, name = self.layers[i]
        block = getattr(self, f"b{r}")
        if i == 0:
            x = block.const.unsqueeze(0).repeat(w.shape[0], 1, 1, 1)
        if impl == "fast":
            x = x.contiguous(memory_format=_memory_format(x, channels_last))
        else:
            x = x.contiguous()
        layer = getattr(block, name)
        if noise is None and layer.use_noise:
            noise = self.noise_for(i, x.shape[0], noise_mode, x.device, x.dtype)
        x = layer(x, w, noise, impl=impl, fused=fused)
        if name == "conv1":
            y = block.torgb(x, w_rgb, impl=impl)
            if img is not None:
                up = upsample2d(img, block.resample_filter) if impl == "fast" else upfirdn2d(img, block.resample_filter, 2, (2, 1, 2, 1), 4.0)
                y = up + y
            img = y
        return x, img

    def noise_for(self, i: int, n: int, mode: str, device: torch.device, dtype: torch.dtype = torch.float32,
                  generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Unit-variance noise map ``[n, 1, r, r]`` for layer ``i`` in ``mode`` (``None`` for "none")."""
        layer = self.layer(i)
        if mode == "const":
            return layer.noise_const.to(device, dtype)[None, None].repeat(n, 1, 1, 1)
        if mode == "random":
            r = layer.resolution
            gdev = generator.device if generator is not None else device
            return torch.randn(n, 1, r, r, generator=generator, device=gdev).to(device, dtype)
        if mode == "none":
            return None
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")


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
            elif mode == "random" and isinstance(generator, (list, tuple)):
                out[key] = torch.cat([self.synthesis.noise_for(i, 1, mode, dev, generator=g) for g in generator])
            else:
                out[key] = self.synthesis.noise_for(i, n, mode, dev, generator=generator)
        return out

    def state_from_ws(self, ws: torch.Tensor, noises: dict[str, torch.Tensor] | None = None,
                      generator: torch.Generator | None = None, noise_mode: str | None = None) -> State:
        """State 0 from ``w [B, w_dim]`` or ``w+ [B, num_ws, w_dim]``; noise maps made if not given."""
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).repeat(1, self.num_ws, 1)
        _check_shape(ws, [None, self.num_ws, self.w_dim], "ws")
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
        if isinstance(generator, (list, tuple)):
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
        _check_shape(ws, [None, self.num_ws - k, self.w_dim], f"state {k} 'ws'")
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


# ---------------------------------------------------------------------------------------------
# the paper's Gaussianised latent parameterisation


class GaussianisedLatent(nn.Module):
    """``w = LeakyReLU_0.2(std * v + mean)`` with per-dimension ``mean``, ``std`` ``[w_dim]``.

    The parameterisation of the ILO paper (from PULSE): the mapping network's output, passed
    through the inverse leaky ReLU, is close to Gaussian; optimising ``v ~ N(0, I)`` in that
    space keeps w on the learnt distribution. Fitted by :func:`gaussianised`.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def to_w(self, v: torch.Tensor) -> torch.Tensor:
        """``v [..., w_dim]`` -> ``w [..., w_dim]``."""
        return F.leaky_relu(v * self.std + self.mean, LRELU_SLOPE)

    def from_w(self, w: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_w`."""
        return (torch.where(w >= 0, w, w / LRELU_SLOPE) - self.mean) / self.std

    forward = to_w


@torch.no_grad()
def gaussianised(g: StyleGAN2Generator, n: int = 10_000, generator: torch.Generator | None = None, batch_size: int = 2_000) -> GaussianisedLatent:
    """Fit the Gaussianised parameterisation from ``n`` mapped samples ``w = mapping(z)``.

    ``mean``/``std`` are the per-dimension moments of ``LeakyReLU_5(w)`` (the inverse of
    LeakyReLU_0.2), as in the paper and PULSE.
    """
    if generator is None:
        generator = torch.Generator(device=g.device.type).manual_seed(0)
    vs = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, g.z_dim, generator=generator, device=generator.device).to(g.device)
        w = g.mapping(z, broadcast=False)
        vs.append(torch.where(w >= 0, w, w / LRELU_SLOPE))
    v = torch.cat(vs)
    return GaussianisedLatent(v.mean(0), v.std(0))
