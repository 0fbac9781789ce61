"""Inert records of what NVIDIA's network pickles contain: attributes and tensors, never code.

:class:`~ilo.generators.unpickler.RestrictedUnpickler` builds these in place of the classes a
pickle names: ``torch_utils.persistence`` networks become :class:`PersistentModule` (their
embedded Python source is hashed and dropped), plain ``torch.nn`` modules inside them
:class:`TorchModuleRecord`, TensorFlow ``dnnlib.tflib.network.Network`` objects
:class:`TFNetwork`, ``dnnlib`` ``EasyDict`` a plain dict subclass. The converters of
:mod:`ilo.generators.convert` read them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, UnsafeCheckpointError


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
            raise CheckpointError(f"persistent {meta.get('class_name')!r} has a non-dict state")
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
                raise CheckpointError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach()
        for name, m in self.modules.items():
            if not isinstance(m, PersistentModule):
                raise CheckpointError(f"submodule {prefix}{name} is a {type(m).__name__}, not a persisted network")
            out.update(m.state_dict(prefix + name + "."))
        return out

    def get(self, path: str) -> PersistentModule | None:
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
            raise CheckpointError(f"{self.torch_class} record without a dict state")
        super().__init__({"type": "class", "class_name": self.torch_class, "state": state})


_TORCH_MODULE_RECORDS: dict[str, type] = {}


def torch_module_record(module: str, name: str) -> type | None:
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
            raise CheckpointError("TensorFlow network record without a dict state")
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
                raise CheckpointError(f"TensorFlow component {name!r} is a {type(comp).__name__}")
            out.update(comp.params(prefix + name + "/"))
        return out


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a plain dict subclass)."""
