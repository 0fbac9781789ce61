"""Hostile and broken inputs against the ``ilo`` command (issue #11): each test builds the bad
file or situation itself and checks the run refuses it with one line and exit code 2, or
handles it as a careful user expects, without touching anything outside ``--out``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ilo.cli import main
from ilo.images import ImageError, load_image, read_image

BASE = ["solve", "--generator", "digiface-dcgan", "--steps", "2", "--restarts", "1", "--quiet"]
OUTPUTS = ["reconstruction.png", "observation.png", "truth.png", "comparison.png", "config.json", "metrics.json",
           "history.json"]


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line_exit_2(code, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def face(path, size=64, value=128):
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# 2. files outside --out are never written through symlinks or guessable temporary names


def test_symlinks_in_out_are_never_followed(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victims = {}
    for name in OUTPUTS:
        stem, ext = os.path.splitext(name)
        for link in (f".{name}.tmp{os.getpid()}{ext}", name):  # today's guessable temporary name and the final one
            victim = tmp_path / f"victim-{len(victims)}"
            victim.write_text("precious")
            (out / link).symlink_to(victim)
            victims[link] = victim
    code, _, err = run(BASE + ["--task", "denoise", "--truth-seed", "1", "--seed", "2", "--out", str(out)], capsys)
    assert code == 0, err
    for victim in victims.values():
        assert victim.read_text() == "precious"
    for name in OUTPUTS:
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert not [p for p in out.iterdir() if p.name.startswith(".ilo-tmp-")]


# ---------------------------------------------------------------------------------------------
# 4. the user's files


@pytest.mark.parametrize("as_link", [False, True])
def test_out_in_the_inputs_folder_never_overwrites_them(tmp_path, capsys, as_link):
    photos = tmp_path / "photos"
    photos.mkdir()
    img = face(photos / "truth.png", size=100)
    mask = np.zeros((64, 64), np.uint8)
    mask[::2] = 255
    Image.fromarray(mask).save(photos / "observation.png")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    out = photos
    if as_link:
        out = tmp_path / "link"
        out.symlink_to(photos)
    code, _, err = run(BASE + ["--task", "inpaint", "--mask", str(photos / "observation.png"), "--image", str(img),
                               "--out", str(out)], capsys)
    one_line_exit_2(code, err, "--out", "would replace the input")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_out_is_not_created_before_the_inputs_are_valid(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "a" / "b"
    code, _, err = run(BASE + ["--task", "denoise", "--image", str(bad), "--out", str(out)], capsys)
    one_line_exit_2(code, err, "cannot read image")
    assert not (tmp_path / "a").exists()


def test_out_created_for_a_run_the_library_refuses_is_removed(tmp_path, capsys):
    out = tmp_path / "new"
    npy = tmp_path / "y.npy"
    np.save(npy, np.ones(3, np.float32))  # the wrong number of measurements
    code, _, err = run(BASE + ["--task", "cs", "--observation", str(npy), "--out", str(out)], capsys)
    one_line_exit_2(code, err, "measurements")
    assert not out.exists()


def test_leftovers_of_killed_runs_are_cleaned(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    pid = dead_pid()
    stale_dir = out / f".ilo-tmp-{pid}-abc123"
    stale_dir.mkdir()
    (stale_dir / "reconstruction.png").write_bytes(b"half")
    stale_file = out / f".metrics.json.tmp{pid}.json"  # left by older versions
    stale_file.write_text("{")
    live = out / f".ilo-tmp-{os.getppid()}-live01"  # a process that is still running
    live.mkdir()
    link = out / f".ilo-tmp-{pid}-link01"  # never followed
    link.symlink_to(outside)
    mine = out / f".my-notes.tmp{pid}"  # a user's file that only looks like a temporary name
    mine.write_text("user file")
    old = time.time() - 3600
    for p in (stale_dir, stale_file, live, mine):
        os.utime(p, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    code, _, err = run(BASE + ["--task", "denoise", "--truth-seed", "1", "--seed", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert not stale_dir.exists() and not stale_file.exists()
    assert live.is_dir() and link.is_symlink() and (outside / "keep.txt").is_file() and mine.is_file()


# ---------------------------------------------------------------------------------------------
# 5. images read as they are meant to look


def test_16_bit_grey_png_is_scaled_not_saturated(tmp_path):
    a = np.full((8, 8), 40000, np.uint16)
    a[0, 0] = 0
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")  # really stored as 16 bits
    x = load_image(p)
    assert x.shape == (1, 3, 8, 8)
    assert x[0, :, 1, 1].sub(40000 / 65535 * 2 - 1).abs().max() < 1 / 127
    assert x[0, :, 0, 0].eq(-1).all()


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((2, 4), np.uint8)  # 4 wide, 2 high; right half white
    a[:, 2:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = tmp_path / "phone.png"
    Image.fromarray(a).save(p, exif=exif)
    im = read_image(p)
    assert im.size == (2, 4)  # displayed upright: 2 wide, 4 high
    shown = np.asarray(im)
    assert (shown[2:] == 255).all() and (shown[:2] == 0).all()  # rotated clockwise: the right half goes down


def test_palette_mask_is_read_by_colour(tmp_path):
    idx = np.zeros((64, 64), np.uint8)
    idx[:, 32:] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 = white (observed), index 1 = black
    p = tmp_path / "mask.png"
    im.save(p)
    seen = np.asarray(read_image(p))
    assert (seen[:, :32] == 255).all() and (seen[:, 32:] == 0).all()


def test_transparent_photo_is_refused_and_opaque_alpha_accepted(tmp_path, capsys):
    a = np.full((64, 64, 4), 200, np.uint8)
    p = tmp_path / "opaque.png"
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(p)
    assert read_image(p).mode == "RGB"
    a[0, 0, 3] = 0
    q = tmp_path / "cut-out.png"
    Image.fromarray(a, "RGBA").save(q)
    with pytest.raises(ImageError, match="transparent"):
        read_image(q)
    assert read_image(q, alpha="keep").mode == "RGBA"
    code, _, err = run(BASE + ["--task", "denoise", "--image", str(q), "--out", str(tmp_path / "o")], capsys)
    one_line_exit_2(code, err, "transparent")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# 6. NaN and infinity refused; JSON strict


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--task", "denoise", "--sigma", "inf"], "--sigma"),
        (["--task", "inpaint", "--observed", "nan"], "--observed"),
        (["--task", "cs", "--measurements", "inf"], "--measurements"),
        (["--task", "denoise", "--loss", "mse,perceptual", "--weights", "1,inf"], "--weights"),
        (["--task", "denoise", "--loss", "mse", "--weights", "nan"], "--weights"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, capsys, args, flag):
    code, _, err = run(BASE + args + ["--truth-seed", "1", "--out", str(tmp_path / "o")], capsys)
    one_line_exit_2(code, err, flag)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "array,needle",
    [
        (np.full(409, np.nan, np.float32), "NaN"),
        (np.array([np.inf] + [0.0] * 408, np.float32), "NaN or infinite"),
        (np.zeros((2, 3, 409), np.float32), "dimensions"),
        (np.float32(1.0), "dimensions"),
        (np.zeros((0,), np.float32), "empty"),
        (np.zeros((0, 409), np.float32), "empty"),
        (np.array(["a", "b"]), "real numbers"),
    ],
)
def test_bad_npy_observations_are_refused(tmp_path, capsys, array, needle):
    p = tmp_path / "y.npy"
    np.save(p, array)
    code, _, err = run(BASE + ["--task", "cs", "--observation", str(p), "--out", str(tmp_path / "o")], capsys)
    one_line_exit_2(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_metrics_json_is_strict():
    from ilo.io import dumps

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    text = dumps({"psnr": float("inf"), "per_image": {"psnr": [float("nan"), 3.0]}, "ok": 1})
    data = json.loads(text, parse_constant=refuse)
    assert data["psnr"] is None and data["per_image"]["psnr"] == [None, 3.0] and data["ok"] == 1
    assert data["non_finite"] == {"psnr": "inf", "per_image.psnr[0]": "nan"}


# ---------------------------------------------------------------------------------------------
# 7. one line instead of a traceback


def test_file_too_large_while_writing_is_one_line(tmp_path):
    """The write phase fails (file size limit: the same path as a full disk): one line, exit 2,
    nothing left in --out."""
    out = tmp_path / "out"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))\n"
        "from ilo.cli import main\n"
        f"main({BASE + ['--task', 'denoise', '--truth-seed', '1', '--seed', '2', '--threads', '1', '--out', str(out)]!r})\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "File too large" in p.stderr, p.stderr
    assert not out.exists() or not any(out.iterdir())


def test_very_long_out_is_one_line(tmp_path, capsys):
    out = tmp_path / ("x" * 5000)
    code, _, err = run(BASE + ["--task", "denoise", "--truth-seed", "1", "--out", str(out)], capsys)
    line = one_line_exit_2(code, err, "--out", "too long")
    assert len(line) < 300


def test_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for out, needle in ((f, "is a file"), (f / "sub", "Not a directory")):
        code, _, err = run(BASE + ["--task", "denoise", "--truth-seed", "1", "--out", str(out)], capsys)
        one_line_exit_2(code, err, "--out", needle)
    assert f.read_text() == "x"


# ---------------------------------------------------------------------------------------------
# 10. seeds


@pytest.mark.parametrize("flag", ["--seed", "--truth-seed"])
@pytest.mark.parametrize("value", ["1e23", "100000000000000000000000", "-1"])
def test_seed_out_of_range_is_one_clear_line(tmp_path, capsys, flag, value):
    args = ["--task", "denoise", "--out", str(tmp_path / "o"), flag, value]
    if flag == "--seed":
        args += ["--truth-seed", "1"]
    code, _, err = run(BASE + args, capsys)
    one_line_exit_2(code, err, flag, "2**63 - 1")


# -- the library's solve: observations it cannot use, batches that cannot fit ------------------
def _tiny_problem():
    import torch

    from ilo.generators import DCGANGenerator
    from ilo.operators import Denoising

    g = DCGANGenerator(nz=8, ngf=4, size=16).eval().requires_grad_(False)
    op = Denoising((3, 16, 16), 10)
    y = op(g(g.sample_latent(2, torch.Generator().manual_seed(1))), torch.Generator().manual_seed(2))
    return g, op, y


@pytest.mark.parametrize("case", ["no batch", "empty batch", "nan", "inf"])
def test_solve_refuses_unusable_observations(case):
    import torch

    from ilo.solvers import CSGMConfig, solve

    g, op, y = _tiny_problem()
    bad = {"no batch": y[0], "empty batch": y[:0], "nan": y.clone().fill_(float("nan")),
           "inf": torch.where(torch.arange(y.numel()).view_as(y) == 5, torch.tensor(float("inf")), y)}[case]
    with pytest.raises(ValueError) as e:
        solve(bad, op, g, "csgm", CSGMConfig(steps=1, restarts=1))
    msg = str(e.value)
    assert "\n" not in msg and ("[B, 3, 16, 16]" in msg or "NaN or infinite" in msg)
    if case == "no batch":
        assert "y[None]" in msg


@pytest.mark.parametrize("method", ["csgm", "ilo", "pulse"])
def test_solve_refuses_an_operator_for_other_images_than_the_generator_draws(method):
    """An operator built for 8 x 8 images with a 16-px generator used to fail at the first
    step, inside the operator ("Denoising expects [B, 3, 8, 8], got [4, 3, 16, 16]")."""
    import torch

    from ilo.operators import Denoising
    from ilo.solvers import solve

    g, _, _ = _tiny_problem()
    op = Denoising((3, 8, 8), 10)
    with pytest.raises(ValueError) as e:
        solve(op(torch.zeros(1, 3, 8, 8)), op, g, method)
    assert str(e.value) == "the operator takes 3x8x8 images but the generator draws 3x16x16: build the operator for the generator's size"
    assert solve(op(torch.zeros(1, 3, 8, 8)), op, g, "tv-denoise").image.shape == (1, 3, 8, 8)  # classical: no generator


def test_solve_refuses_a_batch_that_cannot_fit_before_allocating(monkeypatch):
    """restarts=100000 used to grow to 23 GB until the kernel killed it: now one line, at once."""
    import time

    from ilo.generators import budget
    from ilo.solvers import CSGMConfig, solve

    g, op, y = _tiny_problem()
    monkeypatch.setattr(budget, "available_bytes", lambda: 2 * 2**30)  # a 2 GiB machine
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"would need about .* GiB; 2.0 GiB is available"):
        solve(y, op, g, "csgm", CSGMConfig(steps=1, restarts=100_000))
    assert time.perf_counter() - t < 5
