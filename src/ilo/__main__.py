"""``python -m ilo``: the same as the ``ilo`` command."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
