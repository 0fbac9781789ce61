"""Converters: what a checkpoint holds -> our layered generators (architecture from the data, strict loads).

* NVIDIA-layout state dicts (:func:`generator_from_state_dict`), the common target;
* NVIDIA pickles of ``stylegan2-ada-pytorch`` / ``stylegan3`` (:class:`~ilo.generators.records.PersistentModule`
  records) and of the TensorFlow release (:class:`~ilo.generators.records.TFNetwork` records:
  transposed kernels, flipped up-sampling kernels, ``mod_bias + 1``), :func:`from_nvidia_pickle`;
* rosinality's ``stylegan2-pytorch`` state dicts (:func:`rosinality_to_nvidia`, :func:`from_rosinality`);
* our own format (:func:`from_ilo`) and DCGAN state dicts (:func:`dcgan_from_state_dict`).

Every network is first built on the ``meta`` device (no memory) and refused if it would not fit
(:mod:`ilo.generators.budget`), and a state dict's keys and shapes are compared with it before
the real network is built, so a tiny file that describes a huge network allocates nothing.
Reading files is :mod:`ilo.generators.files`' job; nothing here touches the disk.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import torch

from .budget import meta_build
from .dcgan import DCGANGenerator
from .errors import CheckpointError
from .records import PersistentModule, TFNetwork
from .stylegan2 import StyleGAN2Generator
from .stylegan2_ops import setup_filter

__all__ = ["generator_from_state_dict", "from_nvidia_pickle", "rosinality_to_nvidia", "from_rosinality", "from_ilo",
           "dcgan_from_state_dict", "check_fits"]


# ---------------------------------------------------------------------------------------------
# NVIDIA-layout state dicts


def _infer_channels(sd: dict[str, torch.Tensor]) -> tuple[int, dict[int, int]]:
    """Output resolution and channels per block resolution, from ``synthesis.b{r}.conv1.weight``."""
    chans = {}
    for key in sd:
        m = re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", str(key))
        if m:
            chans[int(m.group(1))] = _shape(sd, key, 4)[0]
    if 4 not in chans:
        raise CheckpointError("not a StyleGAN-2 generator: no synthesis.b4.conv1.weight")
    res = max(chans)
    expected = [2**i for i in range(2, res.bit_length())]
    if sorted(chans) != expected:
        raise CheckpointError(f"synthesis blocks {sorted(chans)} are not 4, 8, ..., {res}")
    return res, chans


def _channel_formula(chans: dict[int, int]) -> tuple[int, int]:
    """``channel_base, channel_max`` with ``min(channel_base // r, channel_max) == chans[r]`` for every r."""
    cmax = max(chans.values())
    below = [r for r, c in chans.items() if c < cmax]
    candidates = [chans[r] * r for r in below] + [cmax * max(chans)]
    for base in sorted(set(candidates)):
        if all(min(base // r, cmax) == c for r, c in chans.items()):
            return base, cmax
    raise CheckpointError(f"channel counts {chans} do not follow min(channel_base // r, channel_max)")


def _filter_taps(f: torch.Tensor) -> tuple[float, ...]:
    """1-D taps of a separable, unit-sum 2-D resample filter (``setup_filter(taps) == f``)."""
    if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != f.shape[1] or f.numel() == 0:
        raise CheckpointError(f"the resample filter is {list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__}, not a square 2-D filter")
    taps = f.sum(dim=0)
    if not torch.allclose(setup_filter(taps.tolist()), f.float(), atol=1e-6):
        raise CheckpointError("the resample filter is not separable")
    scale = 1.0 / float(taps.min()) if float(taps.min()) > 0 else 1.0
    return tuple(round(float(t) * scale, 6) for t in taps)


def generator_from_state_dict(
    sd: dict[str, torch.Tensor],
    *,
    lr_multiplier: float = 0.01,
    conv_clamp: float | None = None,
    name: str = "stylegan2",
    w_avg_samples: int = 10_000,
) -> StyleGAN2Generator:
    """Our generator for an NVIDIA-layout state dict (architecture from tensor shapes), loaded strictly.

    What shapes cannot tell (the mapping lr multiplier, the clamp) comes from the arguments.
    A missing ``mapping.w_avg`` is estimated as the mean of ``w_avg_samples`` mapped latents.
    """
    res, chans = _infer_channels(sd)
    base, cmax = _channel_formula(chans)
    n_map = 0
    while f"mapping.fc{n_map}.weight" in sd:
        n_map += 1
    if n_map == 0:
        raise CheckpointError("not a StyleGAN-2 generator: no mapping.fc0.weight")
    if any(k.startswith("mapping.embed.") for k in sd):
        raise CheckpointError("conditional (class-label) generators are not supported")
    fc0 = _shape(sd, "mapping.fc0.weight", 2)
    z_dim, hidden = fc0[1], fc0[0] if n_map > 1 else None
    w_dim = _shape(sd, f"mapping.fc{n_map - 1}.weight", 2)[0]
    img_channels = _shape(sd, f"synthesis.b{res}.torgb.weight", 4)[0]
    taps = _filter_taps(sd["synthesis.b4.resample_filter"]) if "synthesis.b4.resample_filter" in sd else (1, 3, 3, 1)

    def build() -> StyleGAN2Generator:
        return StyleGAN2Generator(
            res, z_dim=z_dim, w_dim=w_dim, img_channels=img_channels, mapping_layers=n_map, mapping_lr_multiplier=lr_multiplier,
            layer_features=hidden if hidden != w_dim else None, channel_base=base, channel_max=cmax, conv_clamp=conv_clamp,
            use_noise="synthesis.b4.conv1.noise_strength" in sd, resample_filter=taps, name=name,
        )

    sd = dict(sd)
    estimate_w_avg = "mapping.w_avg" not in sd
    if estimate_w_avg:
        sd["mapping.w_avg"] = torch.zeros(w_dim)
    check_fits(meta_build(build, f"building the generator of {name}"), sd, name)
    g = build()
    g.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    if estimate_w_avg:
        warnings.warn(f"checkpoint has no w_avg; estimated from {w_avg_samples} samples of the mapping network", stacklevel=2)
        with torch.no_grad():
            z = torch.randn(w_avg_samples, z_dim, generator=torch.Generator().manual_seed(0))
            g.mapping.w_avg.copy_(g.mapping(z, broadcast=False).mean(0))
    return g


def _shape(sd: dict, key: str, ndim: int) -> list[int]:
    """Shape of ``sd[key]``, which must be a tensor with ``ndim`` dimensions (else a one-line error)."""
    t = sd.get(key)
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise CheckpointError(f"not a StyleGAN-2 generator: {key} is {got}, expected a {ndim}-D tensor")
    return [int(s) for s in t.shape]



# ---------------------------------------------------------------------------------------------
# NVIDIA pickles


def _attr(rec: PersistentModule | None, key: str, default: Any = None) -> Any:
    if rec is None:
        return default
    return rec.attrs.get(key, default)


def _nvidia_generator(rec: PersistentModule, name: str) -> StyleGAN2Generator:
    sd = rec.state_dict()
    if "synthesis.b4.const" not in sd:
        arch = "StyleGAN3 (alias-free)" if any(k.startswith("synthesis.input.") for k in sd) else "an unknown"
        raise CheckpointError(f"{rec.class_name} has {arch} architecture; only StyleGAN-2 generators are supported")
    kw = rec.init_kwargs
    if int(_attr(rec, "c_dim", kw.get("c_dim", 0)) or 0) > 0:
        raise CheckpointError("conditional (class-label) generators are not supported")
    synth_kw = dict(kw.get("synthesis_kwargs") or {}) or {k: v for k, v in kw.items() if k not in ("mapping_kwargs",)}
    map_kw = dict(kw.get("mapping_kwargs") or {})
    # recorded instance attributes are what the network actually used; init kwargs are the fallback
    layer = rec.get("synthesis.b4.conv1")
    block = rec.get("synthesis.b4")
    fc0 = rec.get("mapping.fc0")
    for what, value in (("architecture", _attr(block, "architecture", synth_kw.get("architecture", "skip"))),
                        ("activation", _attr(layer, "activation", synth_kw.get("activation", "lrelu"))),
                        ("mapping activation", _attr(fc0, "activation", map_kw.get("activation", "lrelu")))):
        if value != ("skip" if what == "architecture" else "lrelu"):
            raise CheckpointError(f"unsupported {what} {value!r} (only the skip architecture with leaky ReLU)")
    lr = _attr(fc0, "bias_gain", map_kw.get("lr_multiplier", 0.01))
    clamp = _attr(layer, "conv_clamp", synth_kw.get("conv_clamp"))
    return generator_from_state_dict(sd, lr_multiplier=float(lr), conv_clamp=None if clamp is None else float(clamp), name=name)


def _tf_generator(net: TFNetwork, name: str) -> StyleGAN2Generator:
    """Convert a TensorFlow StyleGAN-2 generator record (facts: NVIDIA's ``legacy.py`` conversion table)."""
    if net.version < 4:
        raise CheckpointError(f"TensorFlow network version {net.version} is too old (StyleGAN-1?)")
    kw = net.static_kwargs
    if kw.get("label_size", 0):
        raise CheckpointError("conditional (class-label) generators are not supported")
    if kw.get("architecture", "skip") != "skip" or kw.get("nonlinearity", "lrelu") != "lrelu" or kw.get("mapping_nonlinearity", "lrelu") != "lrelu":
        raise CheckpointError("only the skip architecture with leaky ReLU is supported")
    tf = net.params()
    if any(k.startswith("synthesis/ToRGB_lod") for k in tf):
        raise CheckpointError("progressive-growing ('orig') TensorFlow generators are not supported")

    def get(key: str) -> torch.Tensor:
        if key not in tf:
            raise CheckpointError(f"TensorFlow variable {key} missing")
        return torch.from_numpy(np.ascontiguousarray(np.asarray(tf[key], dtype=np.float32)))

    def conv(w: torch.Tensor, flip: bool = False) -> torch.Tensor:  # TF [kh, kw, in, out] -> [out, in, kh, kw]
        w = w.permute(3, 2, 0, 1)
        return w.flip([2, 3]).contiguous() if flip else w.contiguous()

    sd: dict[str, torch.Tensor] = {}
    i = 0
    while f"mapping/Dense{i}/weight" in tf:
        sd[f"mapping.fc{i}.weight"] = get(f"mapping/Dense{i}/weight").t().contiguous()
        sd[f"mapping.fc{i}.bias"] = get(f"mapping/Dense{i}/bias")
        i += 1
    sd["mapping.w_avg"] = get("dlatent_avg")
    rgb = [int(m.group(1)) for k in tf if (m := re.fullmatch(r"synthesis/(\d+)x\1/ToRGB/weight", k))]
    if not rgb:
        raise CheckpointError("not a StyleGAN-2 TensorFlow generator (no synthesis/RxR/ToRGB)")
    res = max(rgb)
    sd["synthesis.b4.const"] = get("synthesis/4x4/Const/const")[0]
    layer_names = [(4, "conv1", "Conv", 0)]
    for lg in range(3, res.bit_length()):
        r = 2**lg
        layer_names += [(r, "conv0", "Conv0_up", 2 * lg - 5), (r, "conv1", "Conv1", 2 * lg - 4)]
    for r, ours, theirs, noise_idx in layer_names:
        src, dst = f"synthesis/{r}x{r}/{theirs}", f"synthesis.b{r}.{ours}"
        sd[f"{dst}.weight"] = conv(get(f"{src}/weight"), flip=ours == "conv0")
        sd[f"{dst}.bias"] = get(f"{src}/bias")
        sd[f"{dst}.affine.weight"] = get(f"{src}/mod_weight").t().contiguous()
        sd[f"{dst}.affine.bias"] = get(f"{src}/mod_bias") + 1
        if f"{src}/noise_strength" in tf:
            sd[f"{dst}.noise_strength"] = get(f"{src}/noise_strength").reshape([])
            sd[f"{dst}.noise_const"] = get(f"synthesis/noise{noise_idx}")[0, 0]
        sd[f"{dst}.resample_filter"] = setup_filter(kw.get("resample_kernel") or (1, 3, 3, 1))
    for lg in range(2, res.bit_length()):
        r = 2**lg
        src, dst = f"synthesis/{r}x{r}/ToRGB", f"synthesis.b{r}.torgb"
        sd[f"{dst}.weight"] = conv(get(f"{src}/weight"))
        sd[f"{dst}.bias"] = get(f"{src}/bias")
        sd[f"{dst}.affine.weight"] = get(f"{src}/mod_weight").t().contiguous()
        sd[f"{dst}.affine.bias"] = get(f"{src}/mod_bias") + 1
        sd[f"synthesis.b{r}.resample_filter"] = setup_filter(kw.get("resample_kernel") or (1, 3, 3, 1))
    clamp = kw.get("conv_clamp")
    return generator_from_state_dict(sd, lr_multiplier=float(kw.get("mapping_lrmul", 0.01)),
                                     conv_clamp=None if clamp is None else float(clamp), name=name)


def from_nvidia_pickle(data: Any, name: str, network: str = "G_ema") -> StyleGAN2Generator:
    """Our generator from what an NVIDIA ``.pkl`` unpickles to (stylegan2-ada-pytorch, stylegan3, TensorFlow).

    ``data``: the output of :class:`~ilo.generators.unpickler.RestrictedUnpickler` (records).
    ``network``: ``"G_ema"`` (default, the averaged generator used for sampling) or ``"G"``.
    """
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetwork) for n in data):
        pick = {"G": data[0], "G_ema": data[2], "Gs": data[2]}
        if network not in pick:
            raise CheckpointError(f"network must be 'G_ema' or 'G', got {network!r}")
        return _tf_generator(pick[network], name)
    if isinstance(data, TFNetwork):
        return _tf_generator(data, name)
    if isinstance(data, PersistentModule):
        rec = data
    elif isinstance(data, dict):
        if network not in data:
            raise CheckpointError(f"{name} has no {network!r} network (it has {sorted(map(str, data))})")
        rec = data[network]
    else:
        raise CheckpointError(f"{name} is not an NVIDIA network pickle (top level: {type(data).__name__})")
    if not isinstance(rec, PersistentModule):
        raise CheckpointError(f"{name}: {network} is a {type(rec).__name__}, not a persisted network")
    return _nvidia_generator(rec, name)



def rosinality_to_nvidia(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a rosinality ``Generator`` state dict to NVIDIA key names and conventions.

    ``style.{i+1}`` -> ``mapping.fc{i}``; ``input.input[0]`` -> ``synthesis.b4.const``;
    ``conv1`` -> ``b4.conv1``; ``to_rgb1`` -> ``b4.torgb``; ``convs.{2j}``, ``convs.{2j+1}``,
    ``to_rgbs.{j}`` -> ``b{8*2^j}.conv0``, ``.conv1``, ``.torgb``; ``noises.noise_{i}[0, 0]`` ->
    ``noise_const`` of synthesis layer ``i``. Conventions: rosinality's conv weights carry a
    leading 1 (``[1, O, I, k, k]``), ``modulation`` is ``affine``, the noise ``weight [1]`` is
    ``noise_strength []``, ``activate.bias`` (the fused leaky ReLU's bias) is the layer bias,
    ``to_rgb.bias [1, 3, 1, 1]`` is ``torgb.bias [3]``. The maths agree: rosinality scales the
    conv weight by ``1/sqrt(fan_in)`` before demodulation, which cancels in the demodulation
    (up to its ``1e-8``), and its up-sampling (transposed conv + blur ``[1,3,3,1] * 4``, padding
    1) and skip ``Upsample`` (padding 2, 1) are NVIDIA's. The blur kernels are checked.
    """
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"rosinality state dict lacks {key}")
        return sd.pop(key)

    i = 1
    while f"style.{i}.weight" in sd:
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight")
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias")
        i += 1
    if i == 1:
        raise CheckpointError("not a rosinality StyleGAN-2 generator (no style.1.weight)")
    out["synthesis.b4.const"] = take("input.input")[0]
    n_up = 0
    while f"to_rgbs.{n_up}.conv.weight" in sd:
        n_up += 1
    taps = None

    def styled(src: str, dst: str, noise_idx: int) -> None:
        nonlocal taps
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.noise_const"] = take(f"noises.noise_{noise_idx}")[0, 0]
        if f"{src}.conv.blur.kernel" in sd:
            taps = _check_rosinality_kernel(sd.pop(f"{src}.conv.blur.kernel"), taps)

    def to_rgb(src: str, dst: str) -> None:
        nonlocal taps
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
        if f"{src}.upsample.kernel" in sd:
            taps = _check_rosinality_kernel(sd.pop(f"{src}.upsample.kernel"), taps)

    styled("conv1", "synthesis.b4.conv1", 0)
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for j in range(n_up):
        r = 8 * 2**j
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", 2 * j + 1)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", 2 * j + 2)
        to_rgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb")
    f = setup_filter(taps or (1, 3, 3, 1))
    for key in list(out):
        m = re.fullmatch(r"(synthesis\.b\d+)(\.conv[01])\.weight", key)
        if m:  # the block and each of its layers hold the filter as a buffer
            out[f"{m.group(1)}{m.group(2)}.resample_filter"] = f.clone()
            out[f"{m.group(1)}.resample_filter"] = f.clone()
    leftover = [k for k in sd if not k.endswith(".kernel")]
    if leftover:
        raise CheckpointError(f"unexpected keys in the rosinality state dict: {leftover[:5]}")
    return out


def _check_rosinality_kernel(k: torch.Tensor, taps: tuple | None) -> tuple:
    """rosinality stores ``make_kernel(taps) * 4`` for up-sampling blurs; return the taps (consistent)."""
    got = _filter_taps(k.float() / 4)
    if taps is not None and got != taps:
        raise CheckpointError("inconsistent blur kernels in the rosinality state dict")
    return got


def from_rosinality(obj: Any, name: str, network: str = "g_ema", lr_multiplier: float = 0.01) -> StyleGAN2Generator:
    """Our generator from a rosinality checkpoint's contents (``{"g_ema": sd, "latent_avg": t}``, a training
    checkpoint with ``g``/``d``/``args``, or a bare generator state dict).

    ``network``: ``"g_ema"`` (default) or ``"g"``. ``latent_avg`` becomes ``w_avg`` (estimated from
    10,000 samples when absent, as in training checkpoints). ``lr_multiplier``: the mapping
    network's (rosinality's ``lr_mlp``, 0.01 unless trained otherwise; not stored in the file).
    """
    if isinstance(obj, dict) and "style.1.weight" in obj:
        sd, latent_avg = obj, None
    elif isinstance(obj, dict) and network.lower() in obj:
        sd, latent_avg = obj[network.lower()], obj.get("latent_avg")
    else:
        raise CheckpointError(f"{name}: no {network!r} generator in this rosinality checkpoint")
    out = rosinality_to_nvidia(sd)
    if latent_avg is not None:
        out["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
    return generator_from_state_dict(out, lr_multiplier=lr_multiplier, name=name)



# ---------------------------------------------------------------------------------------------
# our own format and DCGAN


def from_ilo(obj: dict, name: str) -> StyleGAN2Generator:
    """Our generator from the contents of a :func:`~ilo.generators.files.save_checkpoint` file.

    The stored config is checked (a dict of keyword arguments), the network it describes is
    sized on the ``meta`` device and refused if it would not fit in memory, and the state dict
    is compared key by key and shape by shape before the real network is built.
    """
    cfg, sd = obj.get("config"), obj.get("state_dict")
    if not isinstance(cfg, dict) or not all(isinstance(k, str) for k in cfg):
        raise CheckpointError(f"{name}: the stored generator config is a {type(cfg).__name__}, not a dict of settings")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{name}: the stored state dict is a {type(sd).__name__}, not a dict of tensors")
    cfg = {k: v for k, v in cfg.items() if k != "name"}
    label = str(obj.get("name") or name)

    def build() -> StyleGAN2Generator:
        try:
            return StyleGAN2Generator(**cfg, name=label)
        except (TypeError, ValueError, OverflowError, RuntimeError) as e:
            raise CheckpointError(f"{name}: bad generator config: {str(e).splitlines()[0]}") from None

    check_fits(meta_build(build, f"building the generator of {name}"), sd, name)
    g = build()
    g.load_state_dict(sd, strict=True)
    return g


def dcgan_from_state_dict(sd: Any, name: str) -> DCGANGenerator:
    """A :class:`DCGANGenerator` for a state dict with keys ``main.N.*`` (architecture from its shapes), strictly."""
    if not isinstance(sd, dict) or "main.0.weight" not in sd:
        raise CheckpointError(f"{name} is not a DCGAN checkpoint (no main.0.weight)")
    weights = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"main\.(\d+)\.weight", str(k)))]
    last = max(weights)  # the final transposed convolution: main.{3 * (n_convt - 1)}
    for key in ("main.0.weight", f"main.{last}.weight"):
        w = sd[key]
        if not isinstance(w, torch.Tensor) or w.ndim != 4:
            shape = list(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise CheckpointError(f"{name}: {key} is {shape}, not a 4-D transposed-convolution weight")
    first, final = sd["main.0.weight"], sd[f"main.{last}.weight"]
    nz, ngf, nc, size = int(first.shape[0]), int(final.shape[0]), int(final.shape[1]), 4 * 2 ** (last // 3)

    def build() -> DCGANGenerator:
        try:
            return DCGANGenerator(nz=nz, ngf=ngf, nc=nc, size=size, name=name)
        except ValueError as e:
            raise CheckpointError(f"{name}: not a DCGAN this loader can build: {e}") from None

    check_fits(meta_build(build, f"building the generator of {name}"), sd, name)
    g = build()
    g.load_state_dict(sd, strict=True)
    return g


def check_fits(model: torch.nn.Module, sd: dict, name: str) -> None:
    """:class:`CheckpointError` unless ``sd`` has exactly ``model``'s keys, each a tensor of its shape.

    ``model`` may live on the ``meta`` device: only names and shapes are compared.
    """
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(want) - set(sd)), sorted(set(map(str, sd)) - set(want))
    if missing or unexpected:
        raise CheckpointError(f"{name}: state dict does not match the network: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, shape in want.items():
        v = sd[k]
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{name}: {k} is a {type(v).__name__}, not a tensor")
        if tuple(v.shape) != shape:
            raise CheckpointError(f"{name}: {k} has shape {list(v.shape)}, the network needs {list(shape)}")
