"""Download cache for published weights: where files live, fetching, checksums, offline errors.

:func:`fetch` returns a file's path in :func:`cache_dir` (``$ILO_CACHE``, default
``~/.cache/ilo``, never the working tree), downloading it first when it is missing and the
machine is online. Checksums are verified when known; otherwise the first download (or first
use of a file placed there by hand) records its SHA-256 beside the file and later uses are
checked against it. Every failure is one line saying what to do: offline or network errors
raise :class:`~ilo.generators.errors.GeneratorUnavailable`, a cache folder that is a file or
not writable :class:`~ilo.generators.errors.CacheError`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..nets.weights import sha256_file
from .errors import CacheError, GeneratorUnavailable

__all__ = ["cache_dir", "fetch", "offline"]


def cache_dir() -> Path:
    """Where downloaded weights live: ``$ILO_CACHE`` or ``~/.cache/ilo`` (never the working tree)."""
    return Path(os.environ.get("ILO_CACHE", Path.home() / ".cache" / "ilo"))


def offline() -> bool:
    """``ILO_OFFLINE`` is set to something other than ``0``/``false``/``no``."""
    return os.environ.get("ILO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _writable_cache(folder: Path) -> Path:
    """``folder`` created if needed; :class:`CacheError` if it is not a directory we can write into."""
    fix = "set $ILO_CACHE to a writable folder"
    for parent in [folder, *folder.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise CacheError(f"cache folder {folder} cannot be used: {parent} is a file, not a directory; {fix}")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CacheError(f"cache folder {folder} is not writable ({e.strerror or e}); {fix}") from None
    return folder


def fetch(url: str, filename: str, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Path of ``filename`` in :func:`cache_dir`, downloading it from ``url`` first if needed.

    The checksum is verified against ``sha256`` when given; otherwise the first download (or
    first use of a file placed there by hand) records its SHA-256 beside the file
    (``<file>.sha256``) and later uses are checked against it.

    Raises:
        GeneratorUnavailable: offline (``ILO_OFFLINE=1``), network error or checksum mismatch;
            the message names the file, the URL and where to put it.
        CacheError: the cache folder is a file or cannot be written.
    """
    folder = cache_dir()
    dest = folder / filename
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
    if offline():
        raise GeneratorUnavailable(f"{filename} is not in the cache and ILO_OFFLINE is set: {hint}")
    _writable_cache(folder)
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
    try:
        os.replace(part, dest)
        record.write_text(f"{got}  {filename}\n")
    except OSError as e:
        raise CacheError(f"cannot store {filename} in {folder} ({e.strerror or e}); set $ILO_CACHE to a writable folder") from None
    return dest
