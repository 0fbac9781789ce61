"""ilo.runtime: threads and wait policy chosen before torch loads, --threads on every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
import torch

from ilo import runtime


@pytest.mark.parametrize(
    "cpus,load,threads,expect",
    [
        (2, 0.0, None, (2, "default")),  # idle: every core, OpenMP's own policy
        (2, None, None, (2, "default")),  # unknown load counts as idle
        (2, 0.9, None, (1, "PASSIVE")),  # one core taken
        (2, 5.5, None, (1, "PASSIVE")),  # overloaded: one thread, no busy-waiting
        (16, 4.0, None, (12, "PASSIVE")),
        (4, 0.0, 8, (8, "PASSIVE")),  # more threads than cores: never spin
        (4, 0.0, 2, (2, "default")),
    ],
)
def test_decide(cpus, load, threads, expect):
    assert runtime.decide(cpus, load, threads) == expect


def test_usable_cpus_and_load():
    assert 1 <= runtime.usable_cpus() <= (os.cpu_count() or 1)
    load = runtime.load_average()
    assert load is None or load >= 0


def _child(code: str, env: dict | None = None) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_the_cli_package_does_not_load_torch():
    assert _child("import sys, ilo.cli; print('torch' in sys.modules)") == "False"


def test_busy_machine_gets_passive_waiting_before_torch_loads():
    code = ("import os, ilo.runtime as r\n"
            "r.load_average = lambda: 9.0\n"
            "rt = r.configure()\n"
            "import torch\n"
            "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads(), rt.threads, rt.applied_before_torch)")
    assert _child(code) == "PASSIVE 1 1 True"


def test_user_settings_win():
    code = "import ilo.runtime as r; rt = r.configure(); print(rt.threads, rt.wait_policy, rt.source)"
    assert _child(code, {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "active"}) == "1 ACTIVE environment"
    assert _child("import ilo.runtime as r; print(r.configure(2).threads, r.configure().threads)") == "2 2"


def test_a_host_that_loaded_torch_keeps_its_threads():
    code = ("import torch; torch.set_num_threads(1)\n"
            "import ilo.runtime as r; rt = r.configure(); print(rt.threads, rt.source, rt.applied_before_torch)")
    assert _child(code) == "1 host False"


def test_threads_below_one_refused():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        runtime.configure(0)


def _all_commands():
    from ilo.cli import command_group

    def walk(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + [name])
            else:
                yield prefix + [name], cmd

    return list(walk(command_group(), []))


def test_every_computing_command_has_threads():
    names = {" ".join(path): cmd for path, cmd in _all_commands()}
    for path in ("solve", "demo", "generate", "bench curves", "bench sna", "bench speed"):
        assert "threads" in {p.name for p in names[path].params}, path


def test_solve_records_the_runtime_and_threads_pin_it(tmp_path, capsys):
    from ilo.cli import main

    before = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            main(["solve", "--task", "denoise", "--truth-seed", "1", "--seed", "2", "--steps", "2", "--restarts", "1",
                  "--quiet", "--threads", "1", "--out", str(tmp_path / "o")])
        assert e.value.code == 0, capsys.readouterr().err
        assert torch.get_num_threads() == 1
        rt = json.loads((tmp_path / "o" / "config.json").read_text())["runtime"]
        assert rt["threads"] == 1 and rt["source"] == "--threads" and rt["wait_policy"] and "load" in rt
    finally:
        torch.set_num_threads(before)


def _fake_proc(monkeypatch, *, running: int, avg: float, busy_jiffies: int, pressure: float | None):
    """/proc as ``load_average`` reads it: 2 cores, ``busy_jiffies`` of 100 busy between the two
    reads of /proc/stat, ``running`` other tasks, the 1-minute average ``avg``, CPU pressure."""
    stats = iter([(1000, 5000), (1000 + busy_jiffies, 5100)])

    def read(name):
        if name == "stat":
            busy, total = next(stats)
            return f"cpu  {busy} 0 0 {total - busy} 0 0 0 0 0 0\ncpu0 1 0 0 1 0\ncpu1 1 0 0 1 0\nintr 1\n"
        if name == "loadavg":
            return f"{avg} 1.0 0.5 {running + 1}/90 1234\n"
        if name == "pressure/cpu" and pressure is not None:
            return f"some avg10={pressure} avg60=1.00 avg300=1.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        return None

    monkeypatch.setattr(runtime, "_read", read)
    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)


@pytest.mark.parametrize(
    "running,avg,busy,pressure,expect",
    [
        (0, 1.9, 2, 0.4, 0.04),  # our own solve just ended: the lagging average is not counted
        (0, 1.9, 2, 60.0, 1.9),  # tasks waited for a core in the last 10 s: the average counts
        (0, 1.9, 2, None, 1.9),  # no pressure information: the average counts (the rule before)
        (4, 0.2, 100, 0.0, 4.0),  # four tasks running now
        (0, 0.1, 100, 0.0, 2.0),  # both cores busy over the window
        (1, 0.0, 50, 2.0, 1.0),  # one core taken
    ],
)
def test_load_is_what_runs_now(monkeypatch, running, avg, busy, pressure, expect):
    _fake_proc(monkeypatch, running=running, avg=avg, busy_jiffies=busy, pressure=pressure)
    assert runtime.load_average() == pytest.approx(expect)


def test_back_to_back_commands_on_an_idle_machine_get_every_core(monkeypatch):
    _fake_proc(monkeypatch, running=0, avg=1.9, busy_jiffies=1, pressure=0.1)
    assert runtime.decide(2, runtime.load_average()) == (2, "default")
    _fake_proc(monkeypatch, running=4, avg=1.9, busy_jiffies=100, pressure=80.0)
    assert runtime.decide(2, runtime.load_average()) == (1, "PASSIVE")
