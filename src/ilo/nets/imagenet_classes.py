"""The 1000 ImageNet-1k class names, and class lookup by index or name.

The table is data in the package (``ilo/data/imagenet_classes.txt``): line ``k`` holds class
``k``'s WordNet synset words, e.g. ``"Boston bull, Boston terrier"``; the first is its display
name. A name matches a class when it equals any of its words, ignoring case, ``_`` and ``-``.

>>> class_index("goldfish"), class_index("Boston terrier"), class_index(948), class_index("31")
(1, 195, 948, 31)
>>> class_name(195)
'Boston bull'
>>> try:
...     class_index("goldfsh")
... except UnknownClass as e:
...     print(e)
no ImageNet class is called 'goldfsh'; close matches: 1 goldfish, 11 goldfinch
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib.resources import files

NUM_CLASSES = 1000


class UnknownClass(ValueError):
    """A class name that matches no ImageNet class, or several; the message lists candidates."""


@lru_cache(maxsize=1)
def class_synonyms() -> tuple[tuple[str, ...], ...]:
    """Per class index, its synset words (display name first)."""
    text = files("ilo").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(rows) != NUM_CLASSES:
        raise RuntimeError(f"ilo/data/imagenet_classes.txt has {len(rows)} classes, expected {NUM_CLASSES}")
    return tuple(tuple(w.strip() for w in row.split(", ")) for row in rows)


def class_names() -> tuple[str, ...]:
    """The display name of every class, by index (two pairs repeat: 134/517 "crane", 638/639 "maillot")."""
    return tuple(words[0] for words in class_synonyms())


def class_name(index: int) -> str:
    """Display name of class ``index``."""
    return class_names()[class_index(index)]


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


@lru_cache(maxsize=1)
def _by_word() -> dict[str, tuple[int, ...]]:
    table: dict[str, list[int]] = {}
    for i, words in enumerate(class_synonyms()):
        for w in {_norm(w) for w in words}:
            table.setdefault(w, []).append(i)
    return {w: tuple(ix) for w, ix in table.items()}


def class_index(cls: int | str) -> int:
    """The class index of ``cls``: an index (int or digit string) or a name.

    Raises:
        UnknownClass: the index is out of range, or the name matches no class (the message
            lists close matches) or several (the message lists them with their synonyms).
    """
    if isinstance(cls, str) and cls.strip().isdigit():
        cls = int(cls)
    if isinstance(cls, int) and not isinstance(cls, bool):
        if not 0 <= cls < NUM_CLASSES:
            raise UnknownClass(f"ImageNet class index must be in [0, {NUM_CLASSES}), got {cls}")
        return cls
    if not isinstance(cls, str):
        raise TypeError(f"a class is an int index or a str name, got {type(cls).__name__}")
    key, table = _norm(cls), _by_word()
    if key in table:
        hits = table[key]
        if len(hits) == 1:
            return hits[0]
        syn = class_synonyms()
        listing = "; ".join(f"{i}: {', '.join(syn[i])}" for i in hits)
        raise UnknownClass(f"{cls!r} names several ImageNet classes ({listing}); pass the index instead")
    words = sorted((w for w in table if key and key in w.split(" ")), key=len)  # "frog" -> "tree frog"
    fuzzy = difflib.get_close_matches(key, table, n=5, cutoff=0.75)  # typos
    parts = sorted((w for w in table if key and key in w), key=len)  # "frog" -> "bullfrog"
    found: list[int] = []
    for w in words + fuzzy + parts:
        found += [i for i in table[w] if i not in found]
    found = found[:8]
    hint = f"close matches: {', '.join(f'{i} {class_names()[i]}' for i in found)}" if found else (
        "no close match; see ilo.nets.imagenet_classes.class_names()")
    raise UnknownClass(f"no ImageNet class is called {cls!r}; {hint}")
