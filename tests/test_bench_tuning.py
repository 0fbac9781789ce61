"""``python -m ilo.bench.tuning``: learning-rate sweeps on the tuning images."""

from __future__ import annotations

import json

import pytest
import torch

from ilo.bench import tuning


def test_tuning_images_are_the_reserved_ones(digiface):
    X, sets = tuning.tuning_images(digiface)
    assert X.shape == (7, 3, 64, 64) and sets == ["generated"] * 4 + ["lfw"] * 3
    assert all(10000 <= s <= 10999 for s in tuning.TUNING_SEEDS) and all(64 <= i < 100 for i in tuning.TUNING_LFW)


@pytest.mark.slow  # end to end with the 64-px generator: run by make test / CI
def test_sweep_applies_the_learning_rate(tmp_path):
    threads = torch.get_num_threads()
    rows = tuning.main(["--steps", "3", "--restarts", "1", "--specs", "cs:0.1", "--methods", "csgm,ilo", "--lrs", "0.01,0.4",
                        "--threads", "1", "--json", str(tmp_path / "t.json")])
    torch.set_num_threads(threads)
    assert [(r["method"], r["lr"]) for r in rows] == [("csgm", 0.01), ("csgm", 0.4), ("ilo", 0.01), ("ilo", 0.4)]
    assert rows[0]["psnr"] != rows[1]["psnr"]  # the rate reached the solver
    assert json.loads((tmp_path / "t.json").read_text())["rows"][0]["psnr_lfw"] == pytest.approx(rows[0]["psnr_lfw"])


def test_bad_spec():
    with pytest.raises(SystemExit, match="bad --specs item"):
        tuning.main(["--specs", "blur:1"])
