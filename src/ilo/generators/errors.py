"""Errors of the generator loaders, each a one-line message that says what is wrong and what to do.

``GeneratorUnavailable`` is the family the CLI catches; the subclasses also derive from the
built-in class a caller would expect (``ValueError`` for a bad file, ``OSError`` for a cache
folder that cannot be used), so library callers may catch either.

    GeneratorUnavailable (RuntimeError)     weights not installed, not downloadable, unknown name
    ├── CheckpointError (ValueError)        the file is not a checkpoint we can read, or does not fit
    │   ├── UnsafeCheckpointError           it asks for code or objects outside the allow-list
    │   └── CheckpointTooLarge              it would need more memory than is available
    └── CacheError (OSError)                the cache folder is not a writable directory
"""

from __future__ import annotations


class GeneratorUnavailable(RuntimeError):
    """A generator's weights are not installed or cannot be read; the message says how to fix it."""


class CheckpointError(GeneratorUnavailable, ValueError):
    """A checkpoint file is missing, malformed, of an unsupported kind, or does not fit its architecture."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks for an object or an operation outside the allow-list; nothing from it was run."""


class CheckpointTooLarge(CheckpointError):
    """Reading the file or building its network would need more memory than the machine has available."""


class CacheError(GeneratorUnavailable, OSError):
    """The weights cache folder (``$ILO_CACHE``) is not a writable directory."""
