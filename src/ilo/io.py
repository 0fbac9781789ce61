"""Writing results safely: an atomic output folder, strict JSON and the run's environment.

Every file of a run is first written into a private temporary folder inside the output folder
(``mkdtemp``: mode 0700, an unpredictable name starting with ``.ilo-tmp-<pid>-``) and renamed
into place on :meth:`OutputFolder.commit`. Nothing outside the output folder can be reached
through a symlink or a guessed temporary name: files are created there with ``O_EXCL`` and
``O_NOFOLLOW``, and renaming replaces a symlink at the destination rather than following it.
An output name that would replace one of the run's input files is refused. Temporary folders
left by killed runs are removed by the next run that opens the same output folder.

JSON is strict (no ``NaN``/``Infinity`` tokens): non-finite numbers become ``null`` and
their places are listed under ``"non_finite"`` with the value they had.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with OutputFolder(d) as out:
...     out.json("a.json", {"psnr": float("inf"), "mse": 0.0})
>>> print(open(f"{d}/a.json").read().strip().replace("\\n", " "))
{   "psnr": null,   "mse": 0.0,   "non_finite": {     "psnr": "inf"   } }
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable

if TYPE_CHECKING:
    import numpy as np

#: prefix of the private temporary folders (the pid follows, then mkdtemp's random part)
TMP_PREFIX = ".ilo-tmp-"
_TMP_RE = re.compile(rf"^{re.escape(TMP_PREFIX)}(\d+)-[A-Za-z0-9_]+$")
#: temporary files of older versions of ilo (``.NAME.EXT.tmpPID.EXT``, the extension repeated), also cleaned
_LEGACY_TMP_RE = re.compile(r"^\.[^/]+(\.\w+)\.tmp(\d+)\1$")
#: when this process started using ilo.io; leftovers newer than this are never removed
_STARTED = time.time()


class OutputError(ValueError):
    """The output folder cannot be used (message says why, one line)."""


def short_path(path: str | os.PathLike, width: int = 120) -> str:
    """``path`` as text, its middle elided when longer than ``width`` (for one-line messages)."""
    text = os.fspath(path)
    return text if len(text) <= width else text[: width // 2] + "..." + text[-(width // 2 - 3):]


def _oserror(what: str, path: Path | str, e: OSError) -> OutputError:
    return OutputError(f"{what} {short_path(path)}: {e.strerror or e}")


def prepare_output_folder(path: str | os.PathLike) -> list[Path]:
    """Create ``path`` (and parents), check it is a writable folder and remove leftovers of
    killed runs. Returns the folders it created, innermost first (for :func:`remove_if_empty`).
    Raises :class:`OutputError` with a one-line message."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise OutputError(f"output path {short_path(p)} exists and is not a folder")
        created = [q for q in [p, *p.parents] if not q.exists()]
        p.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=p))
    except OSError as e:
        raise _oserror("cannot write to output folder", p, e) from None
    clean_leftovers(p)
    return created


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is empty, stopping at the first that is not."""
    for q in folders:
        try:
            q.rmdir()
        except OSError:
            return


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process
        return True
    return True


def clean_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove temporary folders (and files of older versions) that killed runs left in ``folder``.

    Only entries that are recognisably ours are touched: named ``.ilo-tmp-<pid>-…`` (or
    ``.NAME.tmp<pid>.ext``), owned by this user, not symlinks, last changed before this process
    started, and whose process is gone. Returns the names removed.
    """
    removed: list[str] = []
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TMP_RE.match(e.name) or _LEGACY_TMP_RE.match(e.name)
        if not m:
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        pid = int(m.group(1) if m.re is _TMP_RE else m.group(2))
        if st.st_uid != os.getuid() or e.is_symlink() or st.st_mtime >= _STARTED or _pid_alive(pid):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(e.name)
        except OSError:
            pass
    return removed


class OutputFolder:
    """The files of one run, written privately and renamed into ``out`` together on :meth:`commit`.

    ``protect`` lists input files that no output may replace (compared by resolved path and by
    inode). Used as a context manager it commits on success and removes everything on error.
    The same object can be committed several times (e.g. once per task of the demo).
    """

    def __init__(self, out: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()):
        self.out = Path(out)
        self.protect = [Path(p) for p in protect if p is not None]
        self._tmp: Path | None = None
        self.pending: list[str] = []

    def _folder(self) -> Path:
        if self._tmp is None:
            try:
                self._tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=self.out))
            except OSError as e:
                raise _oserror("cannot write to output folder", self.out, e) from None
        return self._tmp

    def check_name(self, name: str) -> None:
        """Refuse names that are not plain file names or that would replace an input file."""
        if not name or name in (".", "..") or "/" in name or "\0" in name or name.startswith(TMP_PREFIX):
            raise OutputError(f"not a plain output file name: {name!r}")
        final = self.out / name
        for p in self.protect:
            if _same_file(final, p):
                raise OutputError(f"writing {name} into {short_path(self.out)} would replace the input "
                                  f"{short_path(p)}; choose another output folder")

    def path(self, name: str) -> Path:
        """A fresh private path to write ``name`` to (by any writer: PIL, numpy, ...)."""
        self.check_name(name)
        if name in self.pending:
            raise OutputError(f"{name} is written twice")
        self.pending.append(name)
        return self._folder() / name

    def open(self, name: str, binary: bool = False):
        """Create ``name`` exclusively (``O_EXCL | O_NOFOLLOW``) and open it for writing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path(name), flags, 0o644)
        return os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")

    def text(self, name: str, text: str) -> None:
        with self.open(name) as f:
            f.write(text)

    def json(self, name: str, obj: Any) -> None:
        self.text(name, dumps(obj) + "\n")

    def commit(self) -> None:
        """Rename every pending file into ``out`` (a symlink there is replaced, never followed)."""
        if self._tmp is None:
            return
        try:
            for name in self.pending:
                self.check_name(name)  # inputs may have appeared since path()
                os.replace(self._tmp / name, self.out / name)
        except OSError as e:
            self.abort()
            raise _oserror("cannot write output", self.out, e) from None
        except BaseException:
            self.abort()
            raise
        self.pending = []
        self._remove_tmp()

    def abort(self) -> None:
        """Forget everything written since the last commit."""
        self.pending = []
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):
        return False


def is_write_error(e: BaseException) -> bool:
    """Whether ``e`` is a failure to write (disk full, file too large, read-only, ...)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                  errno.EPERM, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EIO)


# ---------------------------------------------------------------------------------------------
# strict JSON


def finite_json(obj: Any) -> tuple[Any, dict[str, str]]:
    """``obj`` with numpy/torch scalars and arrays turned into Python numbers and lists, paths
    into strings, and every non-finite float into ``None``; also returns ``{place: "nan"|"inf"|"-inf"}``.

    >>> finite_json({"a": [1.0, float("nan")], "b": float("-inf")})
    ({'a': [1.0, None], 'b': None}, {'a[1]': 'nan', 'b': '-inf'})
    """
    bad: dict[str, str] = {}

    def walk(o: Any, where: str) -> Any:
        if isinstance(o, bool) or o is None or isinstance(o, (int, str)):
            return o
        if isinstance(o, float):
            if math.isfinite(o):
                return o
            bad[where or "."] = "nan" if o != o else ("inf" if o > 0 else "-inf")
            return None
        if isinstance(o, dict):
            return {str(k): walk(v, f"{where}.{k}" if where else str(k)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(o)]
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if hasattr(o, "tolist"):  # numpy and torch scalars and arrays
            return walk(o.tolist(), where)
        return str(o)

    return walk(obj, ""), bad


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`finite_json`); a dict gains ``"non_finite"``
    listing the places that held NaN or infinity."""
    clean, bad = finite_json(obj)
    if bad and isinstance(clean, dict):
        clean["non_finite"] = bad
    return json.dumps(clean, indent=indent, allow_nan=False)


# ---------------------------------------------------------------------------------------------
def environment() -> dict:
    """Versions and machine of this run (imports torch)."""
    import torch

    from . import __version__

    return {
        "ilo": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def load_array(path: str | os.PathLike, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """A numeric ``.npy`` array (no pickles) of one of ``ndims`` ranks, non-empty and finite.

    Raises ValueError with a one-line message naming the file otherwise.
    """
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"array file not found: {p}")
    try:
        a = np.load(p, allow_pickle=False)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read {p.name}: {reason}") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise ValueError(f"{p.name} must hold real numbers, got {getattr(a, 'dtype', type(a).__name__)}")
    if a.ndim not in ndims:
        raise ValueError(f"{p.name} must have {' or '.join(map(str, ndims))} dimensions, got shape {list(a.shape)}")
    if a.size == 0:
        raise ValueError(f"{p.name} is empty (shape {list(a.shape)})")
    if not np.isfinite(a).all():
        raise ValueError(f"{p.name} holds NaN or infinite values")
    return a
