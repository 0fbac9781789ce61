"""Reading pickles and torch files without running their code or trusting their sizes.

Two readers, both on the pure-Python :class:`pickle._Unpickler` with an opcode table of our own,
so that every operation a file asks for is checked, not only the names it looks up:

* :class:`RestrictedUnpickler` (NVIDIA's network pickles). Names resolve through an allow-list
  (tensor rebuilding, containers, NumPy arrays, the inert records of
  :mod:`ilo.generators.records`); what a name resolves to is one of our checked wrappers or
  records, never a torch or NumPy function the rest of the process uses. Only those may be
  called (``REDUCE``/``NEWOBJ``); ``BUILD`` only reaches the ``__setstate__`` of an array, a
  dtype or a record made by this load (never ``setattr`` on a class or function: a file cannot
  change the defaults of a function or the attributes of a class for the rest of the
  process); ``SETITEM``/``APPEND``/``ADDITEMS`` only fill plain dicts, lists and sets; persistent
  ids, extension codes, out-of-band buffers and protocol-0 instance opcodes are refused. A
  length field larger than what is left of the file is refused before it is read, and arrays
  and storages can only be as large as the bytes the file holds for them.
* :class:`StorageScanner` (torch's own files, before ``torch.load``): walks the pickle of a
  torch checkpoint without constructing anything and collects the storages it declares, so
  that :func:`torch_storage_bytes` can compare the declared sizes with the bytes that are
  really there before torch allocates a single storage.

:func:`torch_load` is ``torch.load(weights_only=True)`` behind that size check, with one-line
errors (never torch's advice to turn the safety off).
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import io
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, ClassVar

import numpy as np
import torch

from . import budget
from .errors import CheckpointError, UnsafeCheckpointError
from .records import EasyDict, PersistentModule, TFNetwork, TorchModuleRecord, torch_module_record

__all__ = ["RestrictedUnpickler", "StorageScanner", "restricted_load", "torch_storage_bytes", "torch_load"]

_NOTHING_RAN = "nothing from the file was executed"

# opcodes no weights file needs: persistent ids (torch's own format, read by torch), the copyreg
# extension registry, out-of-band buffers, protocol-0/1 instance creation, keyword NEWOBJ, and
# BYTEARRAY8 (it allocates its length before reading)
_REFUSED = {"PERSID", "BINPERSID", "INST", "OBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
            "READONLY_BUFFER", "BYTEARRAY8"}


class _Bounded:
    """A binary file whose reads may not ask for more than is left in it (length fields are checked)."""

    def __init__(self, f: IO[bytes], size: int):
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        if n is not None and n > self._left:
            raise CheckpointError(f"the pickle declares {n} bytes where only {self._left} are left in the file")
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self._f.readline()
        self._left -= len(line)
        return line

    def readinto(self, buf: Any) -> int:  # pragma: no cover - only BYTEARRAY8 uses it, which is refused
        raise UnsafeCheckpointError("refusing to load: out-of-band bytearray")


def _refuser(name: str) -> Callable[[Any], None]:
    def refuse(self: Any) -> None:
        raise UnsafeCheckpointError(f"refusing to load: the pickle uses the {name} opcode, which no weights file needs; {_NOTHING_RAN}")

    return refuse


def _dispatch(overrides: dict[str, Callable], refused: set[str]) -> dict[int, Callable]:
    """Opcode table: pickle's own loaders, ``overrides`` by opcode name, refusals for ``refused``."""
    base = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
    table = {}
    for op in pickletools.opcodes:
        code = op.code.encode("latin-1")[0]
        if op.name in overrides:
            table[code] = overrides[op.name]
        elif op.name in refused:
            table[code] = _refuser(op.name)
        elif code in base:
            table[code] = base[code]
    return table


def _size_of(f: IO[bytes]) -> int:
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return end - pos


class _GuardedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Pure-Python unpickler over a bounded file; errors become :class:`CheckpointError`."""

    dispatch: ClassVar[dict[int, Callable]] = {}
    stack: list[Any]  # the machine state of pickle._Unpickler, which typeshed does not describe
    metastack: list[list[Any]]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, f: IO[bytes], size: int | None = None):
        super().__init__(_Bounded(f, _size_of(f) if size is None else size))

    def load(self) -> Any:
        try:
            return super().load()
        except CheckpointError:
            raise
        except KeyError as e:  # an opcode byte that does not exist
            raise CheckpointError(f"not a valid pickle (unknown opcode {e})") from None
        except Exception as e:  # truncated or corrupt data, or a wrapper's refusal of its arguments
            msg = str(e).splitlines()[0] if str(e) else ""
            raise CheckpointError(f"corrupt pickle: {e.__class__.__name__}: {msg}") from None


# ---------------------------------------------------------------------------------------------
# what an NVIDIA pickle may name and call


def _storage_arg(storage: Any) -> None:
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise UnsafeCheckpointError(f"refusing to load: a tensor built on a {type(storage).__name__}, not a storage")


def _no_hooks(hooks: Any) -> collections.OrderedDict:
    if hooks:
        raise UnsafeCheckpointError(f"refusing to load: a tensor with backward hooks; {_NOTHING_RAN}")
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
        raise UnsafeCheckpointError(f"refusing to load: a parameter with extra attributes; {_NOTHING_RAN}")
    return _rebuild_parameter(data, requires_grad, hooks)


def _load_from_bytes(data: Any) -> Any:
    """``torch.storage._load_from_bytes``: a storage in torch's format, sizes checked, ``weights_only``."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeCheckpointError("refusing to load: storage record is not bytes")
    what = "a storage inside the pickle"
    budget.require(torch_storage_bytes(io.BytesIO(data), len(data), what), f"reading {what}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise _torch_error(e, what) from None


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
        raise UnsafeCheckpointError(f"refusing to load: a NumPy array of Python objects; {_NOTHING_RAN}")
    return dt


_NP_RECONSTRUCT: Callable[..., Any] = np.zeros(1).__reduce__()[0]  # type: ignore[assignment]  # numpy's ndarray reconstructor
_NP_SCALAR: Callable[..., Any] = np.float32(0).__reduce__()[0]  # type: ignore[assignment]


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
    base = pickle._Unpickler.dispatch[_CODE[name]]  # type: ignore[attr-defined]
    depth = {"SETITEM": 3, "APPEND": 2}.get(name)

    def op(self: Any) -> None:
        target = self.stack[-depth] if depth else self.metastack[-1][-1]  # below the MARK for the *S forms
        if type(target) not in _CONTAINERS[name]:
            what = getattr(target, "__qualname__", type(target).__name__)
            raise UnsafeCheckpointError(f"refusing to load: the pickle uses {name} on {what}; {_NOTHING_RAN}")
        base(self)

    return op


def _may_call(obj: Any) -> bool:
    return obj in _CALLABLES or (isinstance(obj, type) and issubclass(obj, TorchModuleRecord))


def _buildable(obj: Any) -> bool:
    """Objects BUILD may pass a state to: arrays, dtypes and records made by this load (never classes or functions)."""
    if isinstance(obj, type):
        return False
    return type(obj) is np.ndarray or isinstance(obj, (np.dtype, TFNetwork, TorchModuleRecord))


class RestrictedUnpickler(_GuardedUnpickler):
    """Unpickler for NVIDIA network pickles: allow-listed names, calls and state updates only.

    >>> import io, pickle, collections
    >>> data = pickle.dumps(collections.OrderedDict(w=torch.ones(2)), protocol=4)
    >>> RestrictedUnpickler(io.BytesIO(data)).load()["w"]
    tensor([1., 1.])
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(print))).load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ilo.generators.errors.UnsafeCheckpointError: refusing to load: the pickle asks for builtins.print, ...
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
            f"type this loader allows; {_NOTHING_RAN}"
        )

    def _call_target(self, obj: Any, how: str) -> None:
        if not _may_call(obj):
            raise UnsafeCheckpointError(f"refusing to load: the pickle calls a {type(obj).__name__} ({how}); {_NOTHING_RAN}")

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
            raise UnsafeCheckpointError(f"refusing to load: NEWOBJ on a {type(cls).__name__}; {_NOTHING_RAN}")
        self._call_target(cls, "NEWOBJ")
        self.append(cls.__new__(cls, *args))

    def _build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not _buildable(inst):
            what = getattr(inst, "__qualname__", type(inst).__name__)
            raise UnsafeCheckpointError(f"refusing to load: the pickle changes the state of {what} (BUILD); {_NOTHING_RAN}")
        inst.__setstate__(state)

    dispatch = _dispatch(
        {"REDUCE": _reduce, "NEWOBJ": _newobj, "BUILD": _build, "SETITEM": _container_op("SETITEM"),
         "SETITEMS": _container_op("SETITEMS"), "APPEND": _container_op("APPEND"), "APPENDS": _container_op("APPENDS"),
         "ADDITEMS": _container_op("ADDITEMS")},
        _REFUSED,
    )


def restricted_load(f: IO[bytes]) -> Any:
    """Unpickle a binary file object with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(f).load()


# ---------------------------------------------------------------------------------------------
# torch's own files: declared storage sizes, checked before torch allocates them


class _Name:
    """A global a torch pickle names, kept as a name (the scanner looks nothing up)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Opaque:
    """Whatever a call in a torch pickle would have built (the scanner builds nothing)."""


# bytes per element of the storage types torch names in persistent ids (``torch.FloatStorage``...)
_STORAGE_ITEMSIZE = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2,
    "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4, "LongStorage": 8, "DoubleStorage": 8,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}


def _storage_itemsize(kind: Any) -> int:
    """Bytes per element of a storage type named in a persistent id."""
    if isinstance(kind, _Name) and kind.module in ("torch", "torch.storage") and kind.name in _STORAGE_ITEMSIZE:
        return _STORAGE_ITEMSIZE[kind.name]
    what = f"{kind.module}.{kind.name}" if isinstance(kind, _Name) else type(kind).__name__
    raise CheckpointError(f"not a torch checkpoint: unknown storage type {what}")


class StorageScanner(_GuardedUnpickler):
    """Walks one pickle of a torch file and records the storages it declares; constructs nothing.

    Names become inert :class:`_Name` s, calls and state updates produce :class:`_Opaque`
    placeholders, containers stay empty. ``storages`` maps each storage key to its declared
    size in bytes.
    """

    def __init__(self, f: IO[bytes], size: int | None = None):
        super().__init__(f, size)
        self.storages: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> Any:
        return _Name(module, name)

    def persistent_load(self, pid: Any) -> Any:
        # zip: ('storage', type, key, location, numel); legacy: the same plus view metadata
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[4], int)):
            raise CheckpointError("not a torch checkpoint: unexpected persistent id")
        key, numel = str(pid[2]), pid[4]
        if numel < 0:
            raise CheckpointError("not a torch checkpoint: negative storage size")
        self.storages[key] = max(self.storages.get(key, 0), numel * _storage_itemsize(pid[1]))
        return _Opaque()

    def _placeholder(self) -> None:
        self.stack.pop()
        self.stack[-1] = _Opaque()

    def _newobj(self) -> None:
        self.stack.pop()
        self.stack[-1] = _Opaque()

    def _build(self) -> None:
        self.stack.pop()

    def _drop_marked(self) -> None:
        self.pop_mark()

    def _drop_one(self) -> None:
        self.stack.pop()

    def _drop_two(self) -> None:
        del self.stack[-2:]

    dispatch = _dispatch(
        {"REDUCE": _placeholder, "NEWOBJ": _newobj, "BUILD": _build, "SETITEM": _drop_two, "SETITEMS": _drop_marked,
         "APPEND": _drop_one, "APPENDS": _drop_marked, "ADDITEMS": _drop_marked},
        _REFUSED - {"BINPERSID", "PERSID"},
    )


_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")  # LONG1 of torch's magic number


def torch_format(head: bytes) -> str | None:
    """``"zip"`` (``torch.save``), ``"legacy"`` (``torch.save(_use_new_zipfile_serialization=False)``),
    ``"pickle"`` (any other pickle of protocol 2+) or ``None``, from a file's first bytes (>= 32).

    >>> torch_format(b"PK\\x03\\x04" + bytes(28)), torch_format(pickle.dumps({}, protocol=4)), torch_format(b"GIF89a")
    ('zip', 'pickle', None)
    """
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "legacy" if _LEGACY_MAGIC in head[:32] else "pickle"
    return None


def torch_storage_bytes(f: IO[bytes], size: int, what: str) -> int:
    """Total bytes of the storages a torch file declares, checked against the bytes it holds.

    ``f`` is positioned at the start of the file (``size`` bytes). Raises :class:`CheckpointError`
    if a storage declares more bytes than the file has for it, or (zip) if the archive's records
    inflate beyond the file's own size (``torch.save`` writes uncompressed records).
    """
    pos = f.tell()
    kind = torch_format(f.read(32))
    f.seek(pos)
    if kind == "zip":
        return _zip_storage_bytes(f, size, what)
    if kind == "legacy":
        return _legacy_storage_bytes(f, size, what)
    raise CheckpointError(f"{what} is not a torch checkpoint")


def _zip_storage_bytes(f: IO[bytes], size: int, what: str) -> int:
    try:
        z = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{what} is not a readable torch checkpoint ({e})") from None
    with z:
        infos = z.infolist()
        inflated = sum(i.file_size for i in infos)
        if inflated > size:
            raise CheckpointError(f"{what}: its archive inflates to {budget.human(inflated)} from {budget.human(size)} "
                                  "(torch writes uncompressed archives); refusing it")
        pkls = sorted((i for i in infos if i.filename.endswith("data.pkl")), key=lambda i: len(i.filename))
        if not pkls:
            raise CheckpointError(f"{what} is a zip archive without data.pkl, not a torch checkpoint")
        prefix = pkls[0].filename[: -len("data.pkl")]
        scanner = StorageScanner(io.BytesIO(z.read(pkls[0])), pkls[0].file_size)
        scanner.load()
        records = {i.filename: i.file_size for i in infos}
        for key, nbytes in scanner.storages.items():
            have = records.get(f"{prefix}data/{key}", 0)
            if nbytes > have:
                raise CheckpointError(f"{what}: storage {key} declares {budget.human(nbytes)} but the file holds "
                                      f"{budget.human(have)} for it")
    return sum(scanner.storages.values())


def _legacy_storage_bytes(f: IO[bytes], size: int, what: str) -> int:
    start = f.tell()
    for _ in range(3):  # magic number, protocol version, system info
        StorageScanner(f, size - (f.tell() - start)).load()
    main = StorageScanner(f, size - (f.tell() - start))
    main.load()
    StorageScanner(f, size - (f.tell() - start)).load()  # the list of storage keys
    declared, left = sum(main.storages.values()), size - (f.tell() - start)
    if declared > left:
        raise CheckpointError(f"{what}: its storages declare {budget.human(declared)} but the file holds only "
                              f"{budget.human(left)} of data")
    return declared


def _torch_error(e: Exception, what: str) -> CheckpointError:
    """One line for what ``torch.load(weights_only=True)`` raised (never its advice to turn the safety off)."""
    text = str(e)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return UnsafeCheckpointError(f"refusing to load {what}: it holds {m.group(1)}, which is not a tensor or container "
                                     f"type this loader allows; {_NOTHING_RAN}")
    if "weights_only" in text:  # torch's refusal of something else: keep its reason, drop its advice
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln and "Weights only" not in ln]
        reason = next((ln for ln in lines if not ln.startswith(("Check the documentation", "Please file"))), "unsupported contents")
        return UnsafeCheckpointError(f"refusing to load {what}: {reason}; {_NOTHING_RAN}")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return CheckpointError(f"cannot read {what}: {e.__class__.__name__}: {first}")


def torch_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` (``argparse.Namespace`` allowed) after checking declared sizes.

    Raises:
        CheckpointError: not a torch file, sizes that do not match the file, corrupt data.
        UnsafeCheckpointError: the file holds objects other than tensors and containers.
        CheckpointTooLarge: its storages would not fit in the memory available.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            declared = torch_storage_bytes(f, os.fstat(f.fileno()).st_size, str(path))
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    budget.require(declared, f"reading {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _torch_error(e, str(path)) from None
