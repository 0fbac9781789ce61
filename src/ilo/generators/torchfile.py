"""torch's own checkpoint files: format by content, declared storage sizes checked before ``torch.load``.

:class:`StorageScanner` walks the pickle of a torch file without constructing anything and
collects the storages it declares, so that :func:`torch_storage_bytes` can compare the declared
sizes with the bytes really there (and the archive's inflated size with the file's) before
torch allocates a single storage. :func:`torch_load` is ``torch.load(weights_only=True)``
behind that check and the memory bound of :mod:`ilo.generators.budget`, with one-line errors
(never torch's advice to turn the safety off).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from . import budget
from .errors import CheckpointError, UnsafeCheckpointError
from .pickling import NOTHING_RAN, REFUSED_OPCODES, GuardedUnpickler, opcode_table

__all__ = ["StorageScanner", "torch_format", "torch_storage_bytes", "torch_load", "load_storage_bytes"]

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


class StorageScanner(GuardedUnpickler):
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

    dispatch = opcode_table(
        {"REDUCE": _placeholder, "NEWOBJ": _newobj, "BUILD": _build, "SETITEM": _drop_two, "SETITEMS": _drop_marked,
         "APPEND": _drop_one, "APPENDS": _drop_marked, "ADDITEMS": _drop_marked},
        REFUSED_OPCODES - {"BINPERSID", "PERSID"},
    )


_LEGACY_MAGIC = b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")  # LONG1 of torch's magic number


def torch_format(head: bytes) -> str | None:
    """``"zip"`` (``torch.save``), ``"legacy"`` (``torch.save(_use_new_zipfile_serialization=False)``),
    ``"pickle"`` (any other pickle of protocol 2+) or ``None``, from a file's first bytes (>= 32).

    >>> import pickle
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
                                     f"type this loader allows; {NOTHING_RAN}")
    if "weights_only" in text:  # torch's refusal of something else: keep its reason, drop its advice
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln and "Weights only" not in ln]
        reason = next((ln for ln in lines if not ln.startswith(("Check the documentation", "Please file"))), "unsupported contents")
        return UnsafeCheckpointError(f"refusing to load {what}: {reason}; {NOTHING_RAN}")
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


def load_storage_bytes(data: bytes, what: str = "a storage inside the pickle") -> Any:
    """``torch.load(weights_only=True)`` of an in-memory torch file (NVIDIA pickles nest storages so), sizes checked."""
    budget.require(torch_storage_bytes(io.BytesIO(data), len(data), what), f"reading {what}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise _torch_error(e, what) from None
