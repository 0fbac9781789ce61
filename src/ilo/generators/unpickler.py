"""The restricted unpickler for NVIDIA's network pickles: allow-listed names, calls and state updates only.

Built on :class:`~ilo.generators.pickling.GuardedUnpickler` (every opcode checked, length fields
bounded by the file), so that every operation a file asks for is checked, not only the names it
looks up. Names resolve through an allow-list (tensor rebuilding, containers, NumPy arrays, the
inert records of :mod:`ilo.generators.records`); what a name resolves to is one of our checked
wrappers or records, never a torch or NumPy function the rest of the process uses. Only those
may be called (``REDUCE``/``NEWOBJ``); ``BUILD`` only reaches the ``__setstate__`` of an array,
a dtype or a record made by this load (never ``setattr`` on a class or function: a file cannot
change the defaults of a function or the attributes of a class for the rest of the process);
``SETITEM``/``APPEND``/``ADDITEMS`` only fill plain dicts, lists and sets; persistent ids,
extension codes, out-of-band buffers and protocol-0 instance opcodes are refused. Arrays and
storages can only be as large as the bytes the file holds for them (nested torch storages go
through :func:`~ilo.generators.torchfile.load_storage_bytes`).
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import pickletools
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import torch

from .errors import CheckpointError, UnsafeCheckpointError
from .pickling import NOTHING_RAN, REFUSED_OPCODES, GuardedUnpickler, opcode_table
from .records import EasyDict, PersistentModule, TFNetwork, TorchModuleRecord, torch_module_record
from .torchfile import load_storage_bytes

__all__ = ["RestrictedUnpickler", "restricted_load"]


def _storage_arg(storage: Any) -> None:
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsafeCheckpointError(f"refusing to load: a tensor built on a {type(storage).__name__}, not a storage")


def _no_hooks(hooks: Any) -> collections.OrderedDict:
    if hooks:
        raise UnsafeCheckpointError(f"refusing to load: a tensor with backward hooks; {NOTHING_RAN}")
    return collections.OrderedDict()


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple) -> torch.Tensor:
    _storage_arg(storage)
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: bool, hooks: Any,
                       metadata: dict | None = None) -> torch.Tensor:
    _storage_arg(storage)
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, bool(requires_grad), _no_hooks(hooks), metadata)


def _rebuild_parameter(data: Any, requires_grad: bool, hooks: Any) -> torch.nn.Parameter:
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError(f"refusing to load: a parameter of a {type(data).__name__}")
    return torch._utils._rebuild_parameter(data, bool(requires_grad), _no_hooks(hooks))


def _rebuild_parameter_with_state(data: Any, requires_grad: bool, hooks: Any, state: Any) -> torch.nn.Parameter:
    if state:
        raise UnsafeCheckpointError(f"refusing to load: a parameter with extra attributes; {NOTHING_RAN}")
    return _rebuild_parameter(data, requires_grad, hooks)


def _load_from_bytes(data: Any) -> Any:
    """``torch.storage._load_from_bytes``: a storage in torch's format, sizes checked, ``weights_only``."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("refusing to load: storage record is not bytes")
    return load_storage_bytes(bytes(data))


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafeCheckpointError(f"refusing to load: _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _bytearray(data: Any = b"", encoding: str | None = None) -> bytearray:
    """``bytearray`` from bytes or a latin-1 string only (``bytearray(n)`` would allocate n bytes)."""
    if isinstance(data, str):
        return bytearray(_latin1_encode(data, encoding or "latin1"))
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError(f"refusing to load: bytearray({type(data).__name__})")
    return bytearray(data)


def _np_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """``numpy.dtype`` as pickles call it, always a fresh copy (BUILD never reaches a shared dtype)."""
    if not isinstance(spec, str):
        raise UnsafeCheckpointError(f"refusing to load: numpy.dtype({type(spec).__name__})")
    dt = np.dtype(spec, bool(align), True)
    if dt.hasobject:
        raise UnsafeCheckpointError(f"refusing to load: a NumPy array of Python objects; {NOTHING_RAN}")
    return dt


def _reconstructor(obj: object) -> Callable[..., Any]:
    """The callable that ``obj``'s pickle calls to rebuild it (numpy's own, without naming its private modules)."""
    reduced = obj.__reduce__()
    assert isinstance(reduced, tuple) and callable(reduced[0])  # numpy reduces arrays and scalars to (callable, args)
    return reduced[0]


_NP_RECONSTRUCT = _reconstructor(np.zeros(1))  # numpy's ndarray reconstructor
_NP_SCALAR = _reconstructor(np.float32(0))


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """An empty ndarray to be filled by BUILD (its data come from the file, bounded by its size)."""
    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise UnsafeCheckpointError("refusing to load: unusual ndarray reconstruction")
    return _NP_RECONSTRUCT(np.ndarray, (0,), dtype)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafeCheckpointError("refusing to load: unusual NumPy scalar")
    return _NP_SCALAR(dtype, data)


def _rebuild_persistent(meta: dict) -> PersistentModule:
    return PersistentModule(meta)


# names a pickle may call (REDUCE / NEWOBJ), each mapped to what it gets
_CALLABLE: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Size"): torch.Size,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib.easydict", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("numpy", "dtype"): _np_dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _CALLABLE[(_mod, "_reconstruct")] = _np_reconstruct
    _CALLABLE[(_mod, "scalar")] = _np_scalar

# names a pickle may only pass as values (arguments), never call
_VALUE: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("torch", "Tensor"): torch.Tensor}
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _VALUE[("torch", _dt)] = getattr(torch, _dt)
for _name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType", "UInt8DType", "BoolDType"):
    if hasattr(np, "dtypes") and hasattr(np.dtypes, _name):  # numpy >= 1.25
        _VALUE[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)

_CALLABLES = frozenset(_CALLABLE.values())
_CONTAINERS = {"SETITEM": (dict, collections.OrderedDict, EasyDict), "SETITEMS": (dict, collections.OrderedDict, EasyDict),
               "APPEND": (list,), "APPENDS": (list,), "ADDITEMS": (set,)}


_CODE = {op.name: op.code.encode("latin-1")[0] for op in pickletools.opcodes}


def _container_op(name: str) -> Callable[[Any], None]:
    """Pickle's SETITEM(S) / APPEND(S) / ADDITEMS, on a plain dict, list or set only."""
    base = pickle._Unpickler.dispatch[_CODE[name]]
    depth = {"SETITEM": 3, "APPEND": 2}.get(name)

    def op(self: Any) -> None:
        target = self.stack[-depth] if depth else self.metastack[-1][-1]  # below the MARK for the *S forms
        if type(target) not in _CONTAINERS[name]:
            what = getattr(target, "__qualname__", type(target).__name__)
            raise UnsafeCheckpointError(f"refusing to load: the pickle uses {name} on {what}; {NOTHING_RAN}")
        base(self)

    return op


def _may_call(obj: Any) -> bool:
    return obj in _CALLABLES or (isinstance(obj, type) and issubclass(obj, TorchModuleRecord))


def _buildable(obj: Any) -> bool:
    """Objects BUILD may pass a state to: arrays, dtypes and records made by this load (never classes or functions)."""
    if isinstance(obj, type):
        return False
    return type(obj) is np.ndarray or isinstance(obj, (np.dtype, TFNetwork, TorchModuleRecord))


class RestrictedUnpickler(GuardedUnpickler):
    """Unpickler for NVIDIA network pickles: allow-listed names, calls and state updates only.

    >>> import io, pickle, collections
    >>> data = pickle.dumps(collections.OrderedDict(w=torch.ones(2)), protocol=4)
    >>> RestrictedUnpickler(io.BytesIO(data)).load()["w"]
    tensor([1., 1.])
    >>> import os
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(os.system))).load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ilo.generators.errors.UnsafeCheckpointError: refusing to load: the pickle asks for posix.system, ...
    """

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 pickles name Python 2 modules (``__builtin__.set``): the standard renaming
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        for table in (_CALLABLE, _VALUE):
            if (module, name) in table:
                return table[(module, name)]
        record = torch_module_record(module, name)
        if record is not None:  # a plain torch.nn module inside a network: an inert record too
            return record
        raise UnsafeCheckpointError(
            f"refusing to load: the pickle asks for {module}.{name}, which is not a tensor or container "
            f"type this loader allows; {NOTHING_RAN}"
        )

    def _call_target(self, obj: Any, how: str) -> None:
        if not _may_call(obj):
            raise UnsafeCheckpointError(f"refusing to load: the pickle calls a {type(obj).__name__} ({how}); {NOTHING_RAN}")

    def _reduce(self) -> None:
        args = self.stack.pop()
        self._call_target(self.stack[-1], "REDUCE")
        if not isinstance(args, tuple):
            raise CheckpointError("corrupt pickle: REDUCE without an argument tuple")
        self.stack[-1] = self.stack[-1](*args)

    def _newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(cls, type):
            raise UnsafeCheckpointError(f"refusing to load: NEWOBJ on a {type(cls).__name__}; {NOTHING_RAN}")
        self._call_target(cls, "NEWOBJ")
        self.append(cls.__new__(cls, *args))

    def _build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not _buildable(inst):
            what = getattr(inst, "__qualname__", type(inst).__name__)
            raise UnsafeCheckpointError(f"refusing to load: the pickle changes the state of {what} (BUILD); {NOTHING_RAN}")
        inst.__setstate__(state)

    dispatch = opcode_table(
        {"REDUCE": _reduce, "NEWOBJ": _newobj, "BUILD": _build, "SETITEM": _container_op("SETITEM"),
         "SETITEMS": _container_op("SETITEMS"), "APPEND": _container_op("APPEND"), "APPENDS": _container_op("APPENDS"),
         "ADDITEMS": _container_op("ADDITEMS")},
        REFUSED_OPCODES,
    )


def restricted_load(f: IO[bytes]) -> Any:
    """Unpickle a binary file object with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(f).load()
