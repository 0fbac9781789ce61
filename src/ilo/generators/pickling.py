"""A pure-Python unpickler whose every opcode is checked: the base of the checkpoint readers.

:class:`GuardedUnpickler` is :class:`pickle._Unpickler` (the pure-Python one, whose opcode table
can be replaced) over a file whose length fields are checked against what is left of it, with
errors turned into one-line :class:`~ilo.generators.errors.CheckpointError` s. Subclasses give
their own table with :func:`opcode_table`: pickle's loaders, overrides by opcode name, and
refusals. :data:`REFUSED_OPCODES` are those no weights file needs.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Callable
from typing import IO, Any, ClassVar

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ["GuardedUnpickler", "opcode_table", "REFUSED_OPCODES", "NOTHING_RAN"]

NOTHING_RAN = "nothing from the file was executed"

# opcodes no weights file needs: persistent ids (torch's own format, read by torch), the copyreg
# extension registry, out-of-band buffers, protocol-0/1 instance creation, keyword NEWOBJ, and
# BYTEARRAY8 (it allocates its length before reading)
REFUSED_OPCODES = {"PERSID", "BINPERSID", "INST", "OBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
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
        raise UnsafeCheckpointError(f"refusing to load: the pickle uses the {name} opcode, which no weights file needs; {NOTHING_RAN}")

    return refuse


def opcode_table(overrides: dict[str, Callable], refused: set[str]) -> dict[int, Callable]:
    """Opcode table: pickle's own loaders, ``overrides`` by opcode name, refusals for ``refused``."""
    base = pickle._Unpickler.dispatch
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


class GuardedUnpickler(pickle._Unpickler):
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
        except Exception as e:  # truncated or corrupt data (e.g. a tensor view outside its storage)
            msg = str(e).splitlines()[0] if str(e) else ""
            raise CheckpointError(f"corrupt pickle: {e.__class__.__name__}: {msg}") from None
