"""The ``ilo`` command: a thin layer over the library.

Every command validates its inputs before any work, reports bad input as one line on stderr
with exit code 2 (flag names come from here; the library's ValueErrors are printed as they
are), and writes its outputs through :class:`ilo.io.OutputFolder`, so a failed run leaves
nothing half-written. Threads and the OpenMP wait policy are chosen by :mod:`ilo.runtime`
before torch loads; the command modules are imported only after that.

Modules: ``common`` (errors, option types, shared options), ``solve``, ``batch``, ``demo``, ``generate``,
``bench``; this package's ``main`` assembles them.
"""

from __future__ import annotations

import sys

import click

from .. import __version__, runtime


def command_group() -> click.Group:
    """The ``ilo`` group with every subcommand (imports torch)."""
    from .batch import batch
    from .bench import bench
    from .demo import demo
    from .generate import generate_cmd
    from .restore import restore
    from .solve import solve

    @click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
    @click.version_option(__version__, prog_name="ilo")
    def cli() -> None:
        """Solve image inverse problems with pretrained generators (ILO, CSGM)."""

    @cli.command("generators")
    def generators_cmd():
        """List the registered generators."""
        from ..generators import available

        for name, desc in available().items():
            click.echo(f"{name:24s} {desc}")

    for command in (solve, batch, restore, demo, generate_cmd, bench):
        cli.add_command(command)
    return cli


def _threads_in(argv: list[str]) -> int | None:
    """The value of ``--threads`` in ``argv`` when it is a valid count (click reports the rest)."""
    for i, a in enumerate(argv):
        if a.startswith("--threads="):
            text = a.split("=", 1)[1]
        elif a == "--threads" and i + 1 < len(argv):
            text = argv[i + 1]
        else:
            continue
        if text.isdigit() and int(text) >= 1:
            return int(text)
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input becomes one line on stderr and exit code 2."""
    from ..io import is_write_error, short_path
    from .common import first_line

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        runtime.configure(_threads_in(args))  # before the command modules import torch
        rv = command_group().main(args=args, prog_name="ilo", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ilo: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"ilo: error: {first_line(click.unstyle(e.format_message()))}", err=True)
        sys.exit(2)
    except ValueError as e:  # the library's bad-input errors: one line, no flag names
        click.echo(f"ilo: error: {first_line(e)}", err=True)
        sys.exit(2)
    except OSError as e:
        if not is_write_error(e):
            raise
        click.echo(f"ilo: error: cannot write {short_path(e.filename or 'output')}: {e.strerror or e}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
