"""Jobs of a run: what to solve (problem, method, config) and for which items (images or seeds).

A :class:`Job` is ``problem × method × config`` plus the items it is run on. Its
:attr:`~Job.digest` is the sha256 of the canonical JSON of ``{problem, method, config}`` only,
so a job keeps its identity when items are added, and a result is stored under the key
``(job digest, item id)``. Item ids name the item's content (``seed600000``, a file's stem):
the engine never re-solves an item id it has a record for.

>>> job = Job({"task": "inpaint", "observed": 0.1}, "ilo", {"steps": 600}, items=[Item("seed1", {"seed": 1})])
>>> job.digest == Job({"observed": 0.1, "task": "inpaint"}, "ilo", {"steps": 600}).digest
True
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

#: item ids and file names are single path components of these characters, not starting with "."
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,127}")


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON (sorted keys, no spaces, ASCII); ValueError if it is not plain JSON.

    >>> canonical_json({"b": [1, 2.5], "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"a job spec must be plain JSON (str, int, float, bool, None, list, dict): {e}") from None


def check_name(name: str, what: str) -> str:
    """``name`` if it is a safe single path component, else ValueError naming ``what``."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} must be 1-128 letters, digits or _.+=- and not start with '.' or '-'")
    return name


@dataclass(frozen=True)
class Item:
    """One image of a job: ``id`` (unique in the job, a safe file name) and JSON ``data`` for the job function."""

    id: str
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        check_name(self.id, "item id")
        canonical_json(self.data)


@dataclass(frozen=True)
class Job:
    """``problem`` (JSON dict) × ``method`` × ``config`` (JSON dict), run on ``items``.

    ``label`` is a human name for pages and tables; it is not part of the digest.
    """

    problem: dict
    method: str
    config: dict
    items: Sequence[Item] = ()
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))
        ids = [it.id for it in self.items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"item id {dup!r} occurs twice in one job")
        object.__setattr__(self, "_digest", hashlib.sha256(canonical_json(self.spec()).encode()).hexdigest())

    def spec(self) -> dict:
        """What determines a result: ``{"problem", "method", "config"}`` (the digested part)."""
        return {"problem": self.problem, "method": self.method, "config": self.config}

    @property
    def digest(self) -> str:
        """sha256 hex digest of the canonical JSON of :meth:`spec` (64 characters)."""
        return self._digest  # type: ignore[attr-defined]

    @property
    def short(self) -> str:
        """The first 12 characters of :attr:`digest` (folder names)."""
        return self.digest[:12]

    @property
    def name(self) -> str:
        """``label`` if given, else the method and the problem's values, e.g. ``ilo inpaint 0.1``."""
        return self.label or " ".join([self.method, *(str(v) for v in self.problem.values())])


#: the job-function contract: ``solve_batch(job, items, device) -> list[record]`` (see the package docstring)
JobFunction = Callable[[Job, list[Item], str], list[dict]]


def png_bytes(x) -> bytes:
    """One image ``[C, H, W]`` in ``[-1, 1]`` (a tensor) as PNG file contents, for a result's ``files``."""
    import io

    from ..images import tensor_to_pil

    buf = io.BytesIO()
    tensor_to_pil(x).save(buf, format="PNG")
    return buf.getvalue()
