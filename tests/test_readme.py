"""The README's command lines are ones the ``ilo`` command accepts (a renamed or dropped option fails here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import torch

from ilo import runtime
from ilo.cli import command_group

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of ``lang``."""
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def readme_commands() -> list[str]:
    """Every ``ilo ...`` line of the README's bash blocks, its trailing comment removed."""
    lines = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line.startswith("ilo "):
                lines.append(line)
    return lines


def parse(cli: click.Group, args: list[str]) -> list[str]:
    """Parse ``args`` down the command tree without running anything; the command path parsed.
    (The groups here take no options of their own: a group's first argument names its command.)"""
    ctx: click.Context | None = None
    cmd: click.Command = cli
    path = ["ilo"]
    args = list(args)
    while isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1], parent=ctx)
        assert args, f"{' '.join(path)} needs a command"
        name, *args = args
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no command {name!r}")
        cmd = sub
        path.append(name)
    cmd.make_context(path[-1], args, parent=ctx)
    return path


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    """Parsing ``--threads N`` applies it (its callback): the test process keeps its own count."""
    monkeypatch.setattr(runtime, "_current", runtime.current())
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_readme_shows_every_command():
    used = {shlex.split(line)[1] for line in readme_commands()}
    assert used >= {"solve", "restore", "batch", "demo", "bench", "generate", "generators"}


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(line.replace('"$PHOTO"', "photo.jpg"))[1:]
    for a in args:  # the photos a reader would bring: options checking that a file exists find one
        if a.endswith((".jpg", ".png")):
            (tmp_path / a).touch()
    path = parse(command_group(), args)  # raises click.UsageError on an option or value the command refuses
    if args[0] == "bench":
        assert len(path) == 3, "a bench line names its experiment"


def test_a_renamed_option_is_caught(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.UsageError, match="--observd"):
        parse(command_group(), ["solve", "--task", "inpaint", "--observd", "0.1", "--out", "x"])
    with pytest.raises(click.UsageError):
        parse(command_group(), ["bench", "curves", "--no-such-flag"])


def readme_python() -> str:
    """The README's Python example (its one ``python`` block)."""
    python = blocks("python")
    assert len(python) == 1
    return python[0]


@pytest.mark.slow  # the default self-tuned ILO at 600 x 4 on one 64-px face: about half a minute
def test_the_readme_python_example_runs_as_written():
    from ilo import metrics

    ns: dict = {}
    exec(compile(readme_python(), "README.md", "exec"), ns)
    x, res = ns["x"], ns["res"]
    assert res.image.shape == x.shape == (1, 3, 64, 64)
    assert res.latents is not None and len(res.history) > 0
    assert metrics.psnr(res.image, x).item() > 25  # 10 % of a generated face's pixels: ILO recovers it (about 44 dB)
