"""What every ``ilo`` command shares: errors, option types, common options, device and output.

Messages that name a flag are written here and in the command modules only; the library's
own ValueErrors (which name no flag) are printed as they are, one line.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import click

from .. import runtime
from ..io import OutputError, OutputFolder, prepare_output_folder, remove_if_empty

#: seeds must fit torch's and numpy's generators after the pipeline's per-image offsets
SEED_MAX = 2**63 - 1


class CLIError(click.ClickException):
    """Bad input: printed as one line, exit code 2."""

    exit_code = 2


def fail(msg: str) -> None:
    raise CLIError(msg)


def first_line(e: BaseException | str) -> str:
    """The first line of a message or an exception's message (its class name when empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class FiniteFloat(click.ParamType):
    """A finite real number (refuses nan, inf); ``minimum`` optionally bounds it below."""

    name = "number"

    def __init__(self, minimum: float | None = None):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            x = value
        else:
            try:
                x = float(value)
            except (TypeError, ValueError):
                self.fail(f"must be a number, got {value!r}", param, ctx)
            if not math.isfinite(x):
                self.fail(f"must be a finite number, got {value!r}", param, ctx)
        if self.minimum is not None and x < self.minimum:
            self.fail(f"must be >= {self.minimum:g}, got {value!r}", param, ctx)
        return x


class Seed(click.ParamType):
    """An integer seed in ``[0, 2**63 - 1]`` (written as digits; ``1e23`` is refused)."""

    name = "seed"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            try:
                n = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"must be a whole number in [0, 2**63 - 1], got {value!r}", param, ctx)
        if not 0 <= n <= SEED_MAX:
            self.fail(f"must be a whole number in [0, 2**63 - 1], got {value!r}", param, ctx)
        return n


def parse_floats(name: str, text: str, minimum: float | None = None) -> list[float]:
    """Comma-separated finite numbers (one-line errors naming ``name``)."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{name} must be comma-separated numbers, got {text!r}")
    if not vals:
        fail(f"{name} needs at least one value, got {text!r}")
    if not all(math.isfinite(v) for v in vals):
        fail(f"{name} must be finite numbers, got {text!r}")
    if minimum is not None and any(v < minimum for v in vals):
        fail(f"{name} must be >= {minimum:g}, got {text!r}")
    return vals


# ---------------------------------------------------------------------------------------------
# options shared by every command


def _set_threads(ctx, param, value):
    if value is not None:
        try:
            runtime.configure(value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx, param) from None
    return value


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None, callback=_set_threads, expose_value=False,
                        help="CPU threads (default: one per free core, passive waiting on a busy machine). "
                             "Results are bitwise reproducible for the same seed, device and thread count.")(f)


def device_option(f):
    return click.option("--device", default="auto", help="auto | cpu | cuda[:N].")(f)


def generator_option(f):
    return click.option("--generator", "generator_name", default="digiface-dcgan",
                        help="Registered generator name or checkpoint path.")(f)


def framing_option(f):
    return click.option("--framing", type=click.Choice(["auto", "generator", "free"]), default="auto",
                        help="How the images are framed, which decides the fit of the generator's Gaussian prior: "
                             "'generator' for faces framed like the generator's own (aligned to its template), "
                             "'free' for any other crop; auto: 'generator' for generated truths and --align, "
                             "'free' otherwise.")(f)


def quiet_option(f):
    return click.option("--quiet", is_flag=True, help="No progress bar.")(f)


def runtime_record() -> dict:
    """The threads and wait policy of this run, for ``config.json``."""
    rt = runtime.current() or runtime.configure()
    return rt.to_dict()


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name!r} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        fail(f"unknown --device {name!r}")


def load_generator(name: str, device):
    from ..generators import GeneratorUnavailable
    from ..generators import load_generator as load

    try:
        return load(name, device)
    except GeneratorUnavailable as e:
        fail(first_line(e))


def prepare_out(path: str | os.PathLike) -> Path:
    """Create the output folder (call only once every input is validated)."""
    try:
        prepare_output_folder(path)
    except OutputError as e:
        fail(f"--out: {e}")
    return Path(path)


@contextmanager
def new_out(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`prepare_out`, removing the folders it created again if the block fails before
    writing anything into them (bad input found by the library, a full disk, Ctrl-C)."""
    try:
        created = prepare_output_folder(path)
    except OutputError as e:
        fail(f"--out: {e}")
    try:
        yield Path(path)
    except BaseException:
        remove_if_empty(created)
        raise


def output_folder(out: Path, names: list[str], inputs: list[str | None]) -> OutputFolder:
    """The run's output writer, refusing up front any of ``names`` that would replace an input."""
    w = OutputFolder(out, protect=[p for p in inputs if p is not None])
    for n in names:
        try:
            w.check_name(n)
        except OutputError as e:
            fail(f"--out: {e}")
    return w
