"""The ``ilo`` command: a thin layer over the library.

Every command validates its inputs before any work, reports bad input as one line on stderr
with exit code 2 (flag names come from here; the library's ValueErrors are printed as they
are), and writes its outputs through :class:`ilo.io.OutputFolder`, so a failed run leaves
nothing half-written. Threads and the OpenMP wait policy are chosen by :mod:`ilo.runtime`
before torch loads; the command modules are imported only after that, and only the one that
runs (:class:`LazyGroup`).

Modules: ``common`` (errors, option types, shared options), ``solve``, ``batch``, ``restore``, ``demo``,
``generate``, ``bench``; this package's ``main`` assembles them.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import __version__, runtime


#: the subcommands: name -> (module of this package, attribute, the first paragraph of its help, which
#: ``ilo --help`` summarises); a module is imported only when its command runs or shows its own help
COMMANDS = {
    "batch": ("batch", "batch", "Restore many images as one resumable run; writes results.jsonl, summary.csv and index.html."),
    "bench": ("bench", "bench", "Reproduce the paper's experiments (curves, SNA table, speed plots) as resumable benchmarks."),
    "demo": ("demo", "demo", "Solve the four inverse problems with the classical methods, CSGM and ILO; write one grid per task and a summary."),
    "generate": ("generate", "generate_cmd", "Classifier-guided generation: faces pushed towards an ImageNet class within l1 balls."),
    "restore": ("restore", "restore", "Find the faces in PHOTO (a file or a folder), restore them with a generator in the photo's "
                "own coordinates, and paste them back: writes restored.png, faces.json, face-N.png (one comparison per face), "
                "config.json and metrics.json (one folder per photo for a folder)."),
    "solve": ("solve", "solve", "Reconstruct one image and write reconstruction.png, observation.png, config.json, metrics.json."),
}


class LazyGroup(click.Group):
    """A group whose :data:`COMMANDS` are imported on first use (``ilo --help`` imports none of them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            module, attr, _ = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(f".{module}", __name__), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(n, (self.commands.get(n) or click.Command(n, help=COMMANDS[n][2])).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def command_group() -> click.Group:
    """The ``ilo`` group; its subcommands' modules load when they are used."""

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
    @click.version_option(__version__, prog_name="ilo")
    def cli() -> None:
        """Solve image inverse problems with pretrained generators (ILO, CSGM)."""

    @cli.command("generators")
    def generators_cmd():
        """List the registered generators."""
        from ..generators import available

        for name, desc in available().items():
            click.echo(f"{name:24s} {desc}")

    return cli


#: arguments with which click prints help or the version and exits before any command runs
_INFO_ONLY = {"-h", "--help", "--version"}


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
        if args and not _INFO_ONLY & set(args):  # help and --version need no torch
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
