"""``python -m ilo.bench_runtime``: argument checks and the timed-out row (the timings themselves are a benchmark)."""

import pytest

from ilo import bench_runtime as br


def test_unknown_policy_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        br.main(["--policies", "ilo,fast", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "--policies" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_solve_past_its_timeout_is_a_row_without_seconds():
    row = br.measure("ilo", steps=1, restarts=1, timeout=0.01)
    assert row["seconds"] is None and row["timed_out_after"] == 0.01
    line = br._line({"busy_processes": 4, "load_before": None, **row})
    assert ">" in line and "n/a" in line
