"""The store of a run in its output folder: ``run.json``, ``results.jsonl`` and per-image files.

Layout of ``out/``::

    run.json                      {"format", "settings", "jobs": {digest: {problem, method, config, label}}}
    results.jsonl                 one record (JSON line) per (job, item), append-only
    files/<job12>/<item>/<name>   per-image files named by the records (written before their record)
    .tmp/  .lock                  private: atomic writes, one writer at a time

Crash safety: only one process writes (an exclusive ``flock`` on ``.lock``, released by the
kernel when the process dies). Files are written under a temporary name in ``.tmp/``, synced
and renamed into place; then the records of a batch are appended in one ``write`` and synced.
A killed run therefore loses at most the batches not yet stored; a torn last line (from a
crash mid-write) is dropped when the store is reopened. Reopening with other ``settings``
than those stored raises :class:`StoreMismatch` (once the store holds a record).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from .jobs import Item, Job, canonical_json, check_name

#: bump when the meaning of stored records changes (an older store is then refused)
FORMAT = 1


class StoreMismatch(ValueError):
    """The output folder holds a run made with other settings."""


class StoreBusy(ValueError):
    """Another process is writing to the output folder."""


class StoreDamaged(ValueError):
    """``results.jsonl`` or ``run.json`` cannot be read (not a torn last line)."""


def atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``path`` via a synced temporary file in ``tmp_dir`` and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """The records of one run in ``out`` (created if missing); use as a context manager.

    ``settings`` (plain JSON) are what every record of the run shares (generator, budget, ...);
    they must match the stored ones on a rerun. Records are keyed by ``(job digest, item id)``.
    """

    def __init__(self, out: str | os.PathLike, settings: dict):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.settings = json.loads(canonical_json(settings))
        self.path = self.out / "results.jsonl"
        self._lock = open(self.out / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreBusy(f"another process is writing to {self.out}; wait for it or use another output folder") from None
        try:
            self.tmp = self.out / ".tmp"
            shutil.rmtree(self.tmp, ignore_errors=True)  # leftovers of a killed run
            self.tmp.mkdir()
            self._records = self._load()
            self.jobs = self._check_run_json()
            self._write_run_json()
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------
    def _load(self) -> dict[tuple[str, str], dict]:
        """Read ``results.jsonl``, truncating a torn last line; keyed by (job, item)."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a line cut short by a crash: drop it so appends start on a fresh line
            with open(self.path, "r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())
        return parse_records(data[:end], self.path)

    def _check_run_json(self) -> dict[str, dict]:
        run = self.out / "run.json"
        if not run.is_file():
            if self._records:
                raise StoreDamaged(f"{self.path} has records but {run} is missing; the store is damaged")
            return {}
        try:
            old = json.loads(run.read_text())
            fmt, settings, jobs = old["format"], old["settings"], old["jobs"]
        except (ValueError, TypeError, KeyError):
            raise StoreDamaged(f"{run} cannot be read; the store is damaged") from None
        if not self._records:  # nothing stored yet: the new settings replace the old
            return {}
        if fmt != FORMAT:
            raise StoreMismatch(f"{self.out} holds a run in store format {fmt} (this version writes {FORMAT}); use another output folder")
        for k in sorted(set(settings) | set(self.settings)):
            a, b = settings.get(k), self.settings.get(k)
            if canonical_json(a) != canonical_json(b):
                raise StoreMismatch(f"{self.out} holds a run made with {k}={a!r} (now {b!r}); "
                                    "use another output folder or the same settings")
        return jobs

    def _write_run_json(self) -> None:
        doc = {"format": FORMAT, "settings": self.settings, "jobs": self.jobs}
        atomic_write(self.out / "run.json", (json.dumps(doc, indent=2) + "\n").encode(), self.tmp)

    # -- reading ---------------------------------------------------------------------------------
    def register(self, jobs: list[Job]) -> None:
        """Record the specs of ``jobs`` in ``run.json`` (names and specs for summaries)."""
        new = {j.digest: {**j.spec(), "label": j.name} for j in jobs if j.digest not in self.jobs}
        if new:
            self.jobs = {**self.jobs, **new}
            self._write_run_json()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def pending(self, job: Job) -> list[Item]:
        """The items of ``job`` without a record, in order."""
        return [it for it in job.items if (job.digest, it.id) not in self._records]

    def records(self) -> list[dict]:
        """Every stored record, in the order written."""
        return list(self._records.values())

    # -- writing ---------------------------------------------------------------------------------
    def add_batch(self, job: Job, results: list[dict], batch: dict) -> int:
        """Store the job function's ``results`` for one batch of ``job`` (see :mod:`ilo.runs`).

        Each result's files are written first, then all new records in one synced append.
        ``batch`` (JSON) is stored with every record. Returns how many records were new.
        """
        lines, new = [], []
        for res in results:
            key = (job.digest, res["item"])
            if key in self._records:  # a retried task's duplicate
                continue
            files = {}
            for name, data in res.get("files", {}).items():
                rel = Path("files", job.short, res["item"], check_name(name, "file name"))
                atomic_write(self.out / rel, bytes(data), self.tmp)
                files[name] = rel.as_posix()
            rec = {"job": job.digest, "item": res["item"],
                   "metrics": {k: _number(v) for k, v in res.get("metrics", {}).items()},
                   "files": files, "info": res.get("info", {}), "batch": batch}
            lines.append(json.dumps(rec) + "\n")
            new.append((key, rec))
        if lines:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                data = "".join(lines).encode()
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._records.update(new)
        return len(new)

    def close(self) -> None:
        if not self._lock.closed:
            shutil.rmtree(self.out / ".tmp", ignore_errors=True)
            self._lock.close()  # releases the flock

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_run(out: str | os.PathLike) -> tuple[dict, list[dict]]:
    """``run.json`` and the records of a run's folder, read only (no lock; a torn last line is
    left out): for reports of a finished run. Missing files read as ``{}`` and ``[]``."""
    out = Path(out)
    try:
        run = json.loads((out / "run.json").read_text())
    except FileNotFoundError:
        run = {}
    except ValueError:
        raise StoreDamaged(f"{out / 'run.json'} cannot be read; the store is damaged") from None
    path = out / "results.jsonl"
    data = path.read_bytes() if path.is_file() else b""
    return run, list(parse_records(data[:data.rfind(b"\n") + 1], path).values())


def parse_records(data: bytes, path: Path) -> dict[tuple[str, str], dict]:
    """The records of whole lines of ``results.jsonl`` keyed by (job, item), the first of duplicates."""
    records: dict[tuple[str, str], dict] = {}
    for n, line in enumerate(data.splitlines(), 1):
        try:
            rec = json.loads(line)
            records.setdefault((rec["job"], rec["item"]), rec)
        except (ValueError, TypeError, KeyError):
            raise StoreDamaged(f"{path} line {n} is not a record; the store is damaged") from None
    return records


def _number(v) -> float | None:
    """A metric as a JSON number (``None`` for NaN or infinity, which JSON cannot hold)."""
    x = float(v)
    return x if math.isfinite(x) else None
