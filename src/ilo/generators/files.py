"""StyleGAN-2 checkpoint files: safe loaders for the formats users have, and a download cache.

``load_checkpoint(path)`` reads, without ever executing code stored in the file:

* **NVIDIA pickles** (``.pkl``) of ``stylegan2-ada-pytorch`` and ``stylegan3`` (StyleGAN-2
  architecture, ``training/networks*.py``): a :class:`RestrictedUnpickler` allow-lists the
  tensor-rebuild and container classes only. The networks in those files are pickled as
  ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with their Python source in
  ``meta["module_src"]``; NVIDIA's loader executes that source. Here they become inert
  :class:`PersistentModule` records (class name, init kwargs, parameters, buffers,
  submodules): the source is never run. Plain ``torch.nn`` modules inside them become
  :class:`TorchModuleRecord` s the same way (their ``__dict__`` is stored, nothing is called). The generator is rebuilt as our
  :class:`~ilo.generators.stylegan2.StyleGAN2Generator` from the recorded attributes and
  tensor shapes, and its state dict loaded with ``strict=True``.
* **NVIDIA TensorFlow pickles** of the original StyleGAN-2 release (``stylegan2-ffhq-config-f.pkl``,
  the weights the ILO paper used): ``dnnlib.tflib.network.Network`` objects become inert records
  of their variables (NumPy arrays), converted to our layout (transposed kernels, flipped
  up-sampling kernels, ``mod_bias + 1``).
* **rosinality** ``.pt`` files (``{"g_ema": state_dict, "latent_avg": tensor}``, or training
  checkpoints with ``g``, ``d``, optimisers and ``args``), read with
  ``torch.load(weights_only=True)`` and mapped key by key (:func:`rosinality_to_nvidia`).
* our own ``.pt`` (:func:`save_checkpoint`), and a bare NVIDIA-layout state dict.
* DCGAN ``.pt`` files go to :func:`ilo.generators.registry.load_dcgan_file`.

Anything else in a pickle (e.g. a ``__reduce__`` calling ``os.system``, ``builtins.eval``,
``subprocess``...) raises :class:`UnsafeCheckpointError` before the call can happen.

:func:`fetch` puts a registered file into :func:`~ilo.generators.registry.cache_dir`
(download when online, checksum verification), or says where to put it by hand.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import hashlib
import io
import os
import pickle
import re
import shutil
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import LayeredGenerator
from .registry import GeneratorUnavailable, cache_dir, sha256_file
from .stylegan2 import StyleGAN2Generator
from .stylegan2_ops import setup_filter

__all__ = [
    "UnsafeCheckpointError",
    "RestrictedUnpickler",
    "PersistentModule",
    "TorchModuleRecord",
    "TFNetwork",
    "restricted_load",
    "generator_from_state_dict",
    "load_checkpoint",
    "load_nvidia_pkl",
    "load_rosinality",
    "rosinality_to_nvidia",
    "save_checkpoint",
    "fetch",
]


class UnsafeCheckpointError(GeneratorUnavailable):
    """The file asks the unpickler for something outside the allow-list; nothing was run."""


# ---------------------------------------------------------------------------------------------
# inert records of what NVIDIA pickles contain


class PersistentModule:
    """What ``torch_utils.persistence`` pickles for a network, without its code.

    Attributes: ``class_name``; ``init_args``, ``init_kwargs`` (constructor arguments);
    ``attrs`` (the module's instance attributes, e.g. ``conv_clamp``); ``parameters``,
    ``buffers`` (name -> tensor), ``modules`` (name -> :class:`PersistentModule`);
    ``source_sha256`` (hash of the embedded source, which is dropped and never executed).
    """

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise UnsafeCheckpointError(f"unexpected persistent object record: {type(meta).__name__}")
        state = meta.get("state") or {}
        if not isinstance(state, dict):
            raise GeneratorUnavailable(f"persistent {meta.get('class_name')!r} has a non-dict state")
        self.class_name = str(meta.get("class_name"))
        src = meta.get("module_src") or ""
        self.source_sha256 = hashlib.sha256(src.encode() if isinstance(src, str) else bytes(src)).hexdigest()
        self.init_args = tuple(state.get("_init_args", ()))
        self.init_kwargs = dict(state.get("_init_kwargs", {}))
        self.parameters = {k: v for k, v in (state.get("_parameters") or {}).items() if v is not None}
        skip = set(state.get("_non_persistent_buffers_set") or ())
        self.buffers = {k: v for k, v in (state.get("_buffers") or {}).items() if v is not None and k not in skip}
        self.modules = {k: v for k, v in (state.get("_modules") or {}).items() if v is not None}
        self.attrs = {k: v for k, v in state.items() if not k.startswith("_")}

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this record and its submodules, by dotted name."""
        out: dict[str, torch.Tensor] = {}
        for name, t in list(self.parameters.items()) + list(self.buffers.items()):
            if not isinstance(t, torch.Tensor):
                raise GeneratorUnavailable(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach()
        for name, m in self.modules.items():
            if not isinstance(m, PersistentModule):
                raise GeneratorUnavailable(f"submodule {prefix}{name} is a {type(m).__name__}, not a persisted network")
            out.update(m.state_dict(prefix + name + "."))
        return out

    def get(self, path: str) -> "PersistentModule | None":
        """Submodule by dotted path (``"synthesis.b4.conv1"``), or ``None``."""
        m: PersistentModule | None = self
        for part in path.split("."):
            m = m.modules.get(part) if m is not None else None
        return m

    def __repr__(self) -> str:
        return f"PersistentModule({self.class_name}, {len(self.state_dict())} tensors)"


class TorchModuleRecord(PersistentModule):
    """A plain ``torch.nn`` module (e.g. ``ModuleList``) inside a network pickle, as an inert record.

    Created (one subclass per torch class name) by :class:`RestrictedUnpickler` for
    ``torch.nn.modules.*`` classes; ``__setstate__`` only stores the module's ``__dict__``.
    """

    torch_class = "torch.nn.Module"

    def __init__(self, *args: Any, **kwargs: Any):  # NEWOBJ / REDUCE construct it without a state
        self.__setstate__({})

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise GeneratorUnavailable(f"{self.torch_class} record without a dict state")
        super().__init__({"type": "class", "class_name": self.torch_class, "state": state})


_TORCH_MODULE_RECORDS: dict[str, type] = {}


def _torch_module_record(module: str, name: str) -> type | None:
    """A :class:`TorchModuleRecord` subclass for ``torch.nn.modules.<...>.<name>`` if that is an ``nn.Module``."""
    if not module.startswith("torch.nn.modules."):
        return None
    real = getattr(torch.nn, name, None)
    if not (isinstance(real, type) and issubclass(real, torch.nn.Module) and real.__module__ == module):
        return None
    key = f"{module}.{name}"
    if key not in _TORCH_MODULE_RECORDS:
        _TORCH_MODULE_RECORDS[key] = type(f"Record_{name}", (TorchModuleRecord,), {"torch_class": key})
    return _TORCH_MODULE_RECORDS[key]


class TFNetwork:
    """What ``dnnlib.tflib.network.Network`` pickles (the TensorFlow releases), without its code.

    The state holds ``name``, ``static_kwargs``, ``components`` (sub-networks), ``variables``
    (``[(name, ndarray)]``) and ``build_module_src`` (dropped, never executed).
    """

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise GeneratorUnavailable("TensorFlow network record without a dict state")
        self.version = int(state.get("version", 0))
        self.name = state.get("name")
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        self.variables = list(state.get("variables") or [])

    def params(self, prefix: str = "") -> dict[str, np.ndarray]:
        """All variables of this network and its components, ``"mapping/Dense0/weight"`` style."""
        out = {prefix + str(k): v for k, v in self.variables}
        for name, comp in self.components.items():
            if not isinstance(comp, TFNetwork):
                raise GeneratorUnavailable(f"TensorFlow component {name!r} is a {type(comp).__name__}")
            out.update(comp.params(prefix + name + "/"))
        return out


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a plain dict subclass)."""


# ---------------------------------------------------------------------------------------------
# the restricted unpickler


def _safe_load_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` with ``weights_only=True`` (a storage in torch's legacy format)."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("storage record is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafeCheckpointError(f"refusing to load: _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _rebuild_persistent(meta: dict) -> PersistentModule:
    return PersistentModule(meta)


_NUMPY_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's ndarray reconstructor, wherever it lives
_NUMPY_SCALAR = np.float32(0).__reduce__()[0]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _safe_load_from_bytes,
    ("torch", "Size"): torch.Size,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib.easydict", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _NUMPY_RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _NUMPY_SCALAR
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _dt)] = getattr(torch, _dt)
# numpy >= 1.25 pickles dtypes as numpy.dtypes.Float32DType etc.
for _name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType", "UInt8DType", "BoolDType"):
    if hasattr(np, "dtypes") and hasattr(np.dtypes, _name):
        _ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals (tensors, containers, NVIDIA's records).

    Every class or function a pickle refers to goes through :meth:`find_class`; anything not in
    the allow-list raises :class:`UnsafeCheckpointError` before it can be called. Persistent ids
    are refused by :class:`pickle.Unpickler` itself.
    """

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 pickles name Python 2 modules (``__builtin__.set``): the standard renaming
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        record = _torch_module_record(module, name)
        if record is not None:  # a plain torch.nn module inside a network: an inert record too
            return record
        raise UnsafeCheckpointError(
            f"refusing to load: the pickle asks for {module}.{name}, which is not a tensor or container "
            "type this loader allows; nothing from the file was executed"
        )


def restricted_load(f) -> Any:
    """Unpickle a file object with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(f).load()


# ---------------------------------------------------------------------------------------------
# building our generator from NVIDIA-layout state dicts


def _infer_channels(sd: dict[str, torch.Tensor]) -> tuple[int, dict[int, int]]:
    """Output resolution and channels per block resolution, from ``synthesis.b{r}.conv1.weight``."""
    chans = {}
    for key, t in sd.items():
        m = re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", key)
        if m:
            chans[int(m.group(1))] = int(t.shape[0])
    if 4 not in chans:
        raise GeneratorUnavailable("not a StyleGAN-2 generator: no synthesis.b4.conv1.weight")
    res = max(chans)
    expected = [2**i for i in range(2, res.bit_length())]
    if sorted(chans) != expected:
        raise GeneratorUnavailable(f"synthesis blocks {sorted(chans)} are not 4, 8, ..., {res}")
    return res, chans


def _channel_formula(chans: dict[int, int]) -> tuple[int, int]:
    """``channel_base, channel_max`` with ``min(channel_base // r, channel_max) == chans[r]`` for every r."""
    cmax = max(chans.values())
    below = [r for r, c in chans.items() if c < cmax]
    candidates = [chans[r] * r for r in below] + [cmax * max(chans)]
    for base in sorted(set(candidates)):
        if all(min(base // r, cmax) == c for r, c in chans.items()):
            return base, cmax
    raise GeneratorUnavailable(f"channel counts {chans} do not follow min(channel_base // r, channel_max)")


def _filter_taps(f: torch.Tensor) -> tuple[float, ...]:
    """1-D taps of a separable, unit-sum 2-D resample filter (``setup_filter(taps) == f``)."""
    taps = f.sum(dim=0)
    if not torch.allclose(setup_filter(taps.tolist()), f.float(), atol=1e-6):
        raise GeneratorUnavailable("the resample filter is not separable")
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
        raise GeneratorUnavailable("not a StyleGAN-2 generator: no mapping.fc0.weight")
    if any(k.startswith("mapping.embed.") for k in sd):
        raise GeneratorUnavailable("conditional (class-label) generators are not supported")
    z_dim = int(sd["mapping.fc0.weight"].shape[1])
    w_dim = int(sd[f"mapping.fc{n_map - 1}.weight"].shape[0])
    hidden = int(sd["mapping.fc0.weight"].shape[0]) if n_map > 1 else None
    img_channels = int(sd[f"synthesis.b{res}.torgb.weight"].shape[0])
    taps = _filter_taps(sd["synthesis.b4.resample_filter"]) if "synthesis.b4.resample_filter" in sd else (1, 3, 3, 1)
    g = StyleGAN2Generator(
        res, z_dim=z_dim, w_dim=w_dim, img_channels=img_channels, mapping_layers=n_map, mapping_lr_multiplier=lr_multiplier,
        layer_features=hidden if hidden != w_dim else None, channel_base=base, channel_max=cmax, conv_clamp=conv_clamp,
        use_noise="synthesis.b4.conv1.noise_strength" in sd, resample_filter=taps, name=name,
    )
    sd = dict(sd)
    estimate_w_avg = "mapping.w_avg" not in sd
    if estimate_w_avg:
        sd["mapping.w_avg"] = torch.zeros(w_dim)
    missing, unexpected = _diff_keys(g.state_dict(), sd)
    if missing or unexpected:
        raise GeneratorUnavailable(f"state dict does not match a StyleGAN-2 generator: missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        g.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as e:
        raise GeneratorUnavailable(f"state dict does not fit a StyleGAN-2 generator: {e}") from None
    if estimate_w_avg:
        warnings.warn(f"checkpoint has no w_avg; estimated from {w_avg_samples} samples of the mapping network")
        with torch.no_grad():
            z = torch.randn(w_avg_samples, z_dim, generator=torch.Generator().manual_seed(0))
            g.mapping.w_avg.copy_(g.mapping(z, broadcast=False).mean(0))
    return g


def _diff_keys(want: dict, got: dict) -> tuple[list[str], list[str]]:
    return sorted(set(want) - set(got)), sorted(set(got) - set(want))


# ---------------------------------------------------------------------------------------------
# NVIDIA pickles


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return restricted_load(f)
    except GeneratorUnavailable:
        raise
    except Exception as e:  # truncated or corrupt file
        raise GeneratorUnavailable(f"cannot read {path}: {e.__class__.__name__}: {e}") from None


def _attr(rec: PersistentModule | None, key: str, default: Any = None) -> Any:
    if rec is None:
        return default
    return rec.attrs.get(key, default)


def _nvidia_generator(rec: PersistentModule, name: str) -> StyleGAN2Generator:
    sd = rec.state_dict()
    if "synthesis.b4.const" not in sd:
        arch = "StyleGAN3 (alias-free)" if any(k.startswith("synthesis.input.") for k in sd) else "an unknown"
        raise GeneratorUnavailable(f"{rec.class_name} has {arch} architecture; only StyleGAN-2 generators are supported")
    kw = rec.init_kwargs
    if int(_attr(rec, "c_dim", kw.get("c_dim", 0)) or 0) > 0:
        raise GeneratorUnavailable("conditional (class-label) generators are not supported")
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
            raise GeneratorUnavailable(f"unsupported {what} {value!r} (only the skip architecture with leaky ReLU)")
    lr = _attr(fc0, "bias_gain", map_kw.get("lr_multiplier", 0.01))
    clamp = _attr(layer, "conv_clamp", synth_kw.get("conv_clamp"))
    return generator_from_state_dict(sd, lr_multiplier=float(lr), conv_clamp=None if clamp is None else float(clamp), name=name)


def _tf_generator(net: TFNetwork, name: str) -> StyleGAN2Generator:
    """Convert a TensorFlow StyleGAN-2 generator record (facts: NVIDIA's ``legacy.py`` conversion table)."""
    if net.version < 4:
        raise GeneratorUnavailable(f"TensorFlow network version {net.version} is too old (StyleGAN-1?)")
    kw = net.static_kwargs
    if kw.get("label_size", 0):
        raise GeneratorUnavailable("conditional (class-label) generators are not supported")
    if kw.get("architecture", "skip") != "skip" or kw.get("nonlinearity", "lrelu") != "lrelu" or kw.get("mapping_nonlinearity", "lrelu") != "lrelu":
        raise GeneratorUnavailable("only the skip architecture with leaky ReLU is supported")
    tf = net.params()
    if any(k.startswith("synthesis/ToRGB_lod") for k in tf):
        raise GeneratorUnavailable("progressive-growing ('orig') TensorFlow generators are not supported")

    def get(key: str) -> torch.Tensor:
        if key not in tf:
            raise GeneratorUnavailable(f"TensorFlow variable {key} missing")
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
        raise GeneratorUnavailable("not a StyleGAN-2 TensorFlow generator (no synthesis/RxR/ToRGB)")
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


def load_nvidia_pkl(path: str | os.PathLike, network: str = "G_ema") -> StyleGAN2Generator:
    """Our generator from an NVIDIA ``.pkl`` (stylegan2-ada-pytorch, stylegan3, or the TensorFlow release).

    Args:
        network: ``"G_ema"`` (default, the averaged generator used for sampling) or ``"G"``.

    Raises:
        UnsafeCheckpointError: the pickle refers to anything outside the allow-list.
        GeneratorUnavailable: not a StyleGAN-2 generator, unsupported variant, corrupt file.
    """
    path = Path(path)
    data = _read_pickle(path)
    name = path.stem
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetwork) for n in data):
        pick = {"G": data[0], "G_ema": data[2], "Gs": data[2]}
        if network not in pick:
            raise GeneratorUnavailable(f"network must be 'G_ema' or 'G', got {network!r}")
        return _tf_generator(pick[network], name)
    if isinstance(data, TFNetwork):
        return _tf_generator(data, name)
    if isinstance(data, PersistentModule):
        rec = data
    elif isinstance(data, dict):
        if network not in data:
            raise GeneratorUnavailable(f"{path} has no {network!r} network (it has {sorted(map(str, data))})")
        rec = data[network]
    else:
        raise GeneratorUnavailable(f"{path} is not an NVIDIA network pickle (top level: {type(data).__name__})")
    if not isinstance(rec, PersistentModule):
        raise GeneratorUnavailable(f"{path}: {network} is a {type(rec).__name__}, not a persisted network")
    return _nvidia_generator(rec, name)


# ---------------------------------------------------------------------------------------------
# rosinality and our own .pt files


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
            raise GeneratorUnavailable(f"rosinality state dict lacks {key}")
        return sd.pop(key)

    i = 1
    while f"style.{i}.weight" in sd:
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight")
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias")
        i += 1
    if i == 1:
        raise GeneratorUnavailable("not a rosinality StyleGAN-2 generator (no style.1.weight)")
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
        raise GeneratorUnavailable(f"unexpected keys in the rosinality state dict: {leftover[:5]}")
    return out


def _check_rosinality_kernel(k: torch.Tensor, taps: tuple | None) -> tuple:
    """rosinality stores ``make_kernel(taps) * 4`` for up-sampling blurs; return the taps (consistent)."""
    got = _filter_taps(k.float() / 4)
    if taps is not None and got != taps:
        raise GeneratorUnavailable("inconsistent blur kernels in the rosinality state dict")
    return got


def load_rosinality(path: str | os.PathLike, network: str = "g_ema", lr_multiplier: float = 0.01) -> StyleGAN2Generator:
    """Our generator from a rosinality ``.pt`` (``torch.load(weights_only=True)``; ``argparse.Namespace`` allowed).

    ``network``: ``"g_ema"`` (default) or ``"g"``. ``latent_avg`` becomes ``w_avg`` (estimated from
    10,000 samples when absent, as in training checkpoints). ``lr_multiplier``: the mapping
    network's (rosinality's ``lr_mlp``, 0.01 unless trained otherwise; not stored in the file).
    """
    path = Path(path)
    obj = _torch_load(path)
    return _rosinality_from_obj(obj, path.stem, network, lr_multiplier)


def _rosinality_from_obj(obj: Any, name: str, network: str = "g_ema", lr_multiplier: float = 0.01) -> StyleGAN2Generator:
    if isinstance(obj, dict) and "style.1.weight" in obj:
        sd, latent_avg = obj, None
    elif isinstance(obj, dict) and network.lower() in obj:
        sd, latent_avg = obj[network.lower()], obj.get("latent_avg")
    else:
        raise GeneratorUnavailable(f"{name}: no {network!r} generator in this rosinality checkpoint")
    out = rosinality_to_nvidia(sd)
    if latent_avg is not None:
        out["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
    return generator_from_state_dict(out, lr_multiplier=lr_multiplier, name=name)


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle with code in it
        raise GeneratorUnavailable(f"cannot read {path} safely: {e.__class__.__name__}: {e}") from None


def save_checkpoint(g: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``g`` as a plain ``.pt`` (config + NVIDIA-layout state dict) that :func:`load_checkpoint` reads back."""
    torch.save({"format": "ilo-stylegan2", "config": dict(g.config), "name": g.name,
                "state_dict": {k: v.detach().cpu() for k, v in g.state_dict().items()}}, Path(path))


def _from_ilo_obj(obj: dict, name: str) -> StyleGAN2Generator:
    cfg = dict(obj.get("config") or {})
    try:
        g = StyleGAN2Generator(**cfg, name=str(obj.get("name") or name))
    except TypeError as e:
        raise GeneratorUnavailable(f"{name}: bad generator config: {e}") from None
    try:
        g.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as e:
        raise GeneratorUnavailable(f"{name}: state dict does not fit its config: {e}") from None
    return g


# ---------------------------------------------------------------------------------------------
# one entry point


def load_checkpoint(path: str | os.PathLike, network: str | None = None) -> LayeredGenerator:
    """A layered generator from a checkpoint file, by content; never executes code from the file.

    ``.pkl``: NVIDIA pickle (``G_ema`` unless ``network="G"``). ``.pt``/``.pth``: rosinality
    (``g_ema`` unless ``network="g"``), our :func:`save_checkpoint` format, a bare NVIDIA-layout
    state dict (mapping lr multiplier 0.01, no clamp), or a DCGAN checkpoint.

    Raises:
        GeneratorUnavailable: missing, unreadable, unsupported or unsafe file (the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise GeneratorUnavailable(f"checkpoint file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    is_zip = head[:2] == b"PK"
    if path.suffix == ".pkl" and not is_zip:
        return load_nvidia_pkl(path, network or "G_ema")
    obj = _torch_load(path)
    if isinstance(obj, dict):
        if obj.get("format") == "ilo-stylegan2":
            return _from_ilo_obj(obj, path.stem)
        if "g_ema" in obj or "style.1.weight" in obj or "g" in obj:
            return _rosinality_from_obj(obj, path.stem, network or "g_ema")
        if "mapping.fc0.weight" in obj:
            return generator_from_state_dict(obj, name=path.stem)
        if "netG_state_dict" in obj or "main.0.weight" in obj:
            from .registry import load_dcgan_file

            return load_dcgan_file(path)
    raise GeneratorUnavailable(f"{path}: unrecognised checkpoint contents (expected StyleGAN-2 or DCGAN weights)")


# ---------------------------------------------------------------------------------------------
# downloads into the cache


def _offline() -> bool:
    return os.environ.get("ILO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def fetch(url: str, filename: str, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Path of ``filename`` in :func:`cache_dir`, downloading it from ``url`` first if needed.

    The checksum is verified against ``sha256`` when given; otherwise the first download (or
    first use of a file placed there by hand) records its SHA-256 beside the file
    (``<file>.sha256``) and later uses are checked against it.
    Offline (``ILO_OFFLINE=1``) or on a network error: :class:`GeneratorUnavailable` naming
    the file, the URL and where to put it.
    """
    dest = cache_dir() / filename
    record = dest.with_name(dest.name + ".sha256")
    hint = (f"download {url} and place it at {dest} (the cache directory is $ILO_CACHE, default ~/.cache/ilo), "
            f"or pass --generator PATH to a local copy")
    if dest.is_file():
        want = sha256 or (record.read_text().split()[0] if record.is_file() else None)
        got = sha256_file(dest)
        if want is not None and got != want:
            raise GeneratorUnavailable(f"checksum mismatch for {dest}: expected {want[:12]}…, got {got[:12]}…; delete it and {hint}")
        if not record.is_file():  # a file placed by hand: remember it, so that later changes are noticed
            try:
                record.write_text(f"{got}  {filename}\n")
            except OSError:
                pass
        return dest
    if _offline():
        raise GeneratorUnavailable(f"{filename} is not in the cache and ILO_OFFLINE is set: {hint}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                done += len(block)
                if progress and sys.stderr.isatty():
                    pct = f" {100 * done / total:5.1f}%" if total else ""
                    print(f"\rdownloading {filename}: {done / 2**20:8.1f} MiB{pct}", end="", file=sys.stderr)
        if progress and sys.stderr.isatty():
            print(file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise GeneratorUnavailable(f"cannot download {filename} ({e}): {hint}") from None
    got = h.hexdigest()
    if sha256 is not None and got != sha256:
        part.unlink(missing_ok=True)
        raise GeneratorUnavailable(f"downloaded {filename} has SHA-256 {got[:12]}…, expected {sha256[:12]}…; {hint}")
    shutil.move(str(part), dest)
    record.write_text(f"{got}  {filename}\n")
    return dest
