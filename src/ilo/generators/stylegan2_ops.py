"""StyleGAN-2 kernels: FIR filtering, modulated convolution and the fast path's autograd functions.

Plain PyTorch, no custom CUDA ops, no compilation: runs on CPU and GPU as is. The modules of
:mod:`ilo.generators.stylegan2_net` are built from these functions.

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
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEFAULT_FILTER = (1, 3, 3, 1)


# ---------------------------------------------------------------------------------------------
# functional pieces


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """2-D FIR filter ``[n, n]``: outer product of ``taps`` normalised to unit sum.

    >>> f = setup_filter([1, 3, 3, 1])
    >>> f.shape, round(float(f.sum()), 6), float(f[1, 1] / f[0, 0])
    (torch.Size([4, 4]), 1.0, 9.0)
    >>> upsample2d(torch.ones(1, 2, 3, 3), f).shape
    torch.Size([1, 2, 6, 6])
    """
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"resample filter must be a non-empty 1-D list of taps, got {taps!r}")
    f = torch.outer(t, t)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def check_shape(t: torch.Tensor, shape: Sequence[int | None], what: str) -> None:
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{what}: expected shape {want}, got {list(t.shape)}")


def memory_format_for(x: torch.Tensor, channels_last: bool | None) -> torch.memory_format:
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


def blur(x: torch.Tensor, f: torch.Tensor, pad: int, gain: float, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise true convolution with ``f * gain`` and zero padding ``pad`` (optionally + bias)."""
    c, n = x.shape[1], f.shape[-1]
    k = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(c, 1, n, n).contiguous()
    return F.conv2d(x, k, bias=bias, padding=pad, groups=c)


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def restride(y: torch.Tensor) -> torch.Tensor:
    """Canonical strides for a batch-1 channels_last tensor (same memory, no copy).

    oneDNN's transposed convolution may return a batch stride that is irrelevant for one sample
    but makes the next convolution mistake the layout and copy the tensor.
    """
    b, c, h, w = y.shape
    if b == 1 and is_channels_last(y) and y.stride(0) != c * h * w:
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
    check_shape(styles, [b, cin], "styles")
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


def prefer_fused(styles: torch.Tensor, weight: torch.Tensor, act_numel: int, channels_last: bool) -> bool:
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
    def forward(ctx, x, s, weight, transposed):
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
    def backward(ctx, gy):
        x, s, weight = ctx.saved_tensors
        stride = [2, 2] if ctx.transposed else [1, 1]
        gxs = torch.ops.aten.convolution_backward(
            gy, x, weight, None, stride, [ctx.pad, ctx.pad], [1, 1], ctx.transposed, [0, 0], 1, [True, False, False]
        )[0]  # the input's values are not read for the input gradient: x stands in for x * s
        gx = gxs * s.reshape(*s.shape, 1, 1) if ctx.needs_input_grad[0] else None
        gs = (gxs * x).sum(dim=[2, 3]) if ctx.needs_input_grad[1] else None
        return gx, gs, None, None


def scaled_conv(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
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
    def forward(ctx, y, d, b, noise, ns):
        r = torch.addcmul(b.reshape(1, -1, 1, 1), y, d.reshape(*d.shape, 1, 1))
        if noise is not None:
            r.addcmul_(noise, ns)
        F.leaky_relu_(r, LRELU_SLOPE)
        ctx.save_for_backward(r, d, b, noise, ns)
        return r

    @staticmethod
    def backward(ctx, g):
        r, d, b, noise, ns = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_pre = torch.ops.aten.leaky_relu_backward(g, r, LRELU_SLOPE, True)  # gradient before the leaky ReLU
        gy = g_pre * d.reshape(*d.shape, 1, 1) if need[0] else None
        gd = gb = gnoise = gns = None
        if need[1] or need[2] or (noise is not None and need[4]):
            # per-channel sums over pixels of g_pre and of g_pre * noise, as one batched matmul
            bsz, c, h, w = g_pre.shape
            if is_channels_last(g_pre):
                gm = g_pre.permute(0, 2, 3, 1).reshape(bsz, h * w, c)  # a view: [B, HW, C]
            else:
                gm = g_pre.reshape(bsz, c, h * w).transpose(1, 2)
            vecs = [torch.ones(1, 1, h * w, dtype=g.dtype, device=g.device).expand(bsz, 1, h * w)]
            if noise is not None:
                vecs.append(noise.reshape(noise.shape[0], 1, h * w).expand(bsz, 1, h * w))
            sums = torch.bmm(torch.cat(vecs, dim=1), gm)  # [B, 1 or 2, C]
            s_pix = sums[:, 0]  # sums[:, 1] (with noise): the pixel sums of g_pre * noise
            if need[1]:
                # y * d = lrelu^-1(r) - b - noise * ns, and g_pre * lrelu^-1(r) == g * r
                num = (g * r).sum(dim=[2, 3]) - b * s_pix
                if noise is not None:
                    num = num - ns * sums[:, 1]
                gd = num / d
            if need[2]:
                gb = s_pix.sum(dim=0)
            if noise is not None and need[4]:
                gns = sums[:, 1].sum()
        if noise is not None and need[3]:
            gnoise = g_pre.sum(dim=1, keepdim=True) * ns
            if noise.shape[0] == 1 and gnoise.shape[0] > 1:
                gnoise = gnoise.sum(dim=0, keepdim=True)
        return gy, gd, gb, gnoise, gns


def epilogue(y: torch.Tensor, d: torch.Tensor, b: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``lrelu(y * d + b + n * ns)`` with ``noise = (n, ns)`` (or no noise term for ``None``).

    Memory-lean under autograd (see :class:`_Epilogue`).
    """
    n, ns = noise if noise is not None else (None, None)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (y, d, b, n, ns)):
        return _Epilogue.apply(y, d, b, n, ns)
    r = torch.addcmul(b.reshape(1, -1, 1, 1), y, d.reshape(*d.shape, 1, 1))
    if noise is not None:
        r.addcmul_(*noise)
    return F.leaky_relu_(r, LRELU_SLOPE)


def per_sample_1x1(x: torch.Tensor, wmod: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``y[b] = wmod[b] @ x[b] + bias`` for a 1x1 conv with per-sample weights ``[B, O, I]`` (no copies)."""
    b, cin, h, w = x.shape
    cout = wmod.shape[1]
    if is_channels_last(x):
        xv = x.permute(0, 2, 3, 1).reshape(b, h * w, cin)  # a view: [B, HW, I]
        y = torch.baddbmm(bias.reshape(1, 1, cout), xv, wmod.transpose(1, 2))
        return y.reshape(b, h, w, cout).permute(0, 3, 1, 2)
    y = torch.baddbmm(bias.reshape(1, cout, 1), wmod, x.reshape(b, cin, h * w))
    return y.reshape(b, cout, h, w)


