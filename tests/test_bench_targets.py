"""``ilo bench targets``: the paper's targets read from finished runs (synthetic summaries, no solving)."""

from __future__ import annotations

import json
import re

import pytest

from ilo.bench.targets import collect
from ilo.cli import main


def entry(set_name, method, level, mse):
    return {"set": set_name, "method": method, "level": level, "n": 4, "true_mse": {"mean": mse, "std": 0.0}}


def write_run(root, folder, summary, levels, sets=("real",), **extra):
    d = root / folder
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"summary": summary, **extra}))
    (d / "config.json").write_text(json.dumps({"levels": levels, "settings": {"steps": 10, "restarts": 1}, "batch": 2,
                                               "device": "cpu", "sets": {s: {"n": 4} for s in sets}}))
    (d / "index.html").write_text("<html></html>")


@pytest.fixture
def root(tmp_path):
    lv = [0.01, 0.05, 0.3, 1.0]
    # ILO 0.01 everywhere; CSGM 0.03 except 0.022 at 30% (ratio 2.2) and 0.5 at 1% (below 5%: ignored)
    inp = [entry("real", "ilo", x, 0.01) for x in lv] + [entry("real", "csgm", x, {0.01: 0.5, 0.3: 0.022}.get(x, 0.03)) for x in lv]
    # the best classical method beats ILO at 1% (a negative margin) and loses at 5%
    ratios = [{"set": "real", "level": "1%", "best classical": "biharmonic", "its PSNR dB": "21.00", "ILO PSNR dB": "20.00",
               "ILO − classical dB": "-1.00"},
              {"set": "real", "level": "5%", "best classical": "biharmonic", "its PSNR dB": "19.00", "ILO PSNR dB": "20.00",
               "ILO − classical dB": "1.00"}]
    write_run(tmp_path, "curves-inpaint", inp, lv, task="inpaint", ratios=ratios)
    # denoise: the best CSGM variant (0.015) decides, ratio 1.5 < 1.8
    den = [entry("real", "ilo", 25.0, 0.01), entry("real", "csgm", 25.0, 0.05), entry("real", "csgm-perceptual", 25.0, 0.015)]
    write_run(tmp_path, "curves-denoise", den, [25.0])
    # superres: the largest factor (8) has no ILO yet
    sr = [entry("real", m, f, 0.02) for m in ("pulse", "ilo") for f in (2.0, 4.0)] + [entry("real", "pulse", 8.0, 0.02)]
    write_run(tmp_path, "curves-superres", sr, [2.0, 4.0, 8.0])
    write_run(tmp_path, "speed-inpaint", [], [1.0], task="inpaint",
              table=[{"set": "real", "ILO / CSGM time": "0.40", "CSGM seconds": "10.0", "ILO seconds to reach it": "4.0"},
                     {"set": "other", "ILO / CSGM time": None, "CSGM seconds": "10.0", "ILO seconds to reach it": None}])
    write_run(tmp_path, "sna", [], [30.0], sigma=30.0,
              table=[{"set": "real", "n": 4, "CSGM (MSE) PSNR": "20.00 ± 1.00", "ILO PSNR": "25.00 ± 1.00", "CSGM gain dB": "0.10",
                      "ILO gain dB": "1.50"}])
    return tmp_path


def test_verdicts(root):
    verdicts, sna, found = collect(root)
    by = {(v.task, v.set): v for v in verdicts}
    assert by["inpaint", "real"].verdict == "met" and by["inpaint", "real"].value == pytest.approx(2.2)
    assert "worst at 0.3" in by["inpaint", "real"].detail
    assert by["denoise", "real"].verdict == "missed" and by["denoise", "real"].value == pytest.approx(1.5)
    assert "csgm-perceptual" in by["denoise", "real"].detail
    assert by["superres", "real"].verdict == "incomplete" and "missing: ilo" in by["superres", "real"].detail
    assert by["cs", "–"].verdict == "not run"
    assert by["speed", "real"].verdict == "met" and by["speed", "real"].value == pytest.approx(0.4)
    assert by["speed", "other"].verdict == "missed" and "never reached" in by["speed", "other"].detail
    assert sna[0]["ILO gain dB"] == "1.50"
    assert set(found) == {"curves-inpaint", "curves-denoise", "curves-superres", "speed-inpaint", "sna"}


def test_inpaint_below_target_and_missing_level(tmp_path):
    lv = [0.05, 0.1]
    write_run(tmp_path, "curves-inpaint", [entry("real", "ilo", 0.05, 0.01), entry("real", "csgm", 0.05, 0.019),
                                           entry("real", "csgm", 0.1, 0.05)], lv, sets=("real", "empty"))
    by = {(v.task, v.set): v for v in collect(tmp_path)[0]}
    assert by["inpaint", "real"].verdict == "incomplete" and "1/2 levels" in by["inpaint", "real"].detail
    assert by["inpaint", "empty"].verdict == "incomplete"  # a set of the run with no result yet is listed too
    (tmp_path / "curves-inpaint" / "config.json").write_text(json.dumps({"levels": [0.05]}))
    by = {(v.task, v.set): v for v in collect(tmp_path)[0]}
    assert by["inpaint", "real"].verdict == "missed" and by["inpaint", "real"].value == pytest.approx(1.9)


def test_page_and_cli(root, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "targets", "--root", str(root)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "| inpaint | real |" in out and "| met |" in out
    page = (root / "index.html").read_text()
    for link in re.findall(r"(?:href|src)='([^']+)'", page):
        assert (root / link).is_file(), link
    assert "curves-inpaint/index.html" in page
    data = json.loads((root / "targets.json").read_text())
    assert {t["verdict"] for t in data["targets"]} == {"met", "missed", "incomplete", "not run"}
    assert "## SNA" in (root / "targets.md").read_text()
    assert data["classical_wins"] == [{"task": "inpaint", "set": "real", "level": "1%", "best classical": "biharmonic",
                                       "its PSNR dB": "21.00", "ILO PSNR dB": "20.00", "ILO − classical dB": "-1.00"}]
    assert "Where a classical method beats ILO" in page


def test_cli_missing_root(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "targets", "--root", str(tmp_path / "nope")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--root folder not found" in err
