"""Our BM3D / CBM3D (ilo.solvers.bm3d_free) and its place among the classical methods."""

import pytest
import torch

import ilo.solvers.bm3d_free as B
from ilo import metrics as M
from ilo.operators import Denoising
from ilo.solvers import solve
from ilo.solvers.bm3d_free import bm3d_free, dct_matrix, haar_matrix
from ilo.solvers.classical import RESIDUAL_METHODS, ClassicalConfig, classical, on_residual

pytestmark = pytest.mark.usefixtures("one_thread")


def shapes(n=2, size=32, channels=3, seed=0):
    """Piecewise-constant images in [-0.8, 0.8] (rectangles on a gradient), ``[n, channels, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-0.4, 0.4, size)
    x = ramp.expand(n, channels, size, size).clone()
    for i in range(n):
        for _ in range(4):
            y0, x0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
            h, w = torch.randint(4, 12, (2,), generator=g).tolist()
            x[i, :, y0:y0 + h, x0:x0 + w] = torch.rand(channels, 1, 1, generator=g) * 1.6 - 0.8
    return x


def noisy(x, sigma255, seed=1):
    op = Denoising(tuple(x.shape[1:]), sigma255)
    return op, op(x, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32])
def test_haar_matrix_is_orthonormal_with_the_mean_first(n):
    h = haar_matrix(n)
    assert torch.allclose(h @ h.T, torch.eye(n, dtype=h.dtype))
    assert torch.allclose(h[0], torch.full((n,), n ** -0.5, dtype=h.dtype))


def test_haar_matrix_needs_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        haar_matrix(6)


def test_dct_matrix_is_the_orthonormal_dct_ii():
    d = dct_matrix(6)
    assert torch.allclose(d @ d.T, torch.eye(6, dtype=d.dtype))
    v = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    n = torch.arange(6, dtype=torch.float64)
    ref = torch.stack([(v * torch.cos(torch.pi * (2 * n + 1) * k / 12)).sum() for k in range(6)])  # unscaled DCT-II
    ref = ref * (2 / 6) ** 0.5
    ref[0] /= 2 ** 0.5
    assert torch.allclose(d @ v, ref, atol=1e-6)


@pytest.mark.parametrize("sigma255", [10, 25, 50])
def test_denoises_far_below_the_noise_and_beats_nlmeans(sigma255):
    x = shapes()
    op, y = noisy(x, sigma255)
    ours = classical(y, op, "bm3d-free").image
    assert bool((M.mse(ours, x) < M.mse(y, x) / 4).all())
    if sigma255 <= 25:  # at 50, on these 32-pixel drawings, NL-means wins on some (not on faces: docs/CLASSICAL.md)
        assert float(M.psnr(ours, x).mean()) > float(M.psnr(classical(y, op, "nlmeans").image, x).mean())


def test_grayscale_and_other_channel_counts_and_sizes():
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 24, 40), (1, 4, 20, 13), (2, 3, 5, 7), (1, 1, 1, 1)]:
        x = torch.zeros(shape)
        y = x + 0.1 * torch.randn(shape, generator=g)
        out = bm3d_free(y, 0.1)
        assert out.shape == y.shape and bool(torch.isfinite(out).all()), shape
        if shape[-1] > 8:
            assert float(out.pow(2).mean()) < float(y.pow(2).mean()) / 4, shape


def test_commutes_with_adding_a_constant():
    x = shapes(1)
    _, y = noisy(x, 25)
    sigma = 25 * 2 / 255
    assert torch.allclose(bm3d_free(y + 0.3, sigma), bm3d_free(y, sigma) + 0.3, atol=1e-6)


def test_tiles_give_the_same_result_as_one_tile(monkeypatch):
    x = shapes(1, size=48)
    _, y = noisy(x, 25)
    whole = bm3d_free(y, 0.2)
    monkeypatch.setattr(B, "CHUNK", 20_000)  # 2-3 references per tile side
    assert B._tile(48 - 3, 16, B.HARD) < 16
    assert torch.allclose(bm3d_free(y, 0.2), whole, atol=1e-6)


def test_each_image_on_its_own_with_its_own_sigma():
    x = shapes(2)
    _, y = noisy(x, 25)
    both = bm3d_free(y, torch.tensor([0.1, 0.3]))
    assert torch.allclose(both[:1], bm3d_free(y[:1], 0.1), atol=1e-6)
    assert torch.allclose(both[1:], bm3d_free(y[1:], 0.3), atol=1e-6)
    assert bm3d_free(y, 0.0).equal(y)


@pytest.mark.parametrize("args, match", [((torch.zeros(3, 8, 8), 0.1), "B, C, H, W"),
                                         ((torch.zeros(1, 3, 8, 8), -0.1), ">= 0"),
                                         ((torch.zeros(1, 3, 8, 8), float("nan")), "finite"),
                                         ((torch.zeros(3, 3, 8, 8), torch.tensor([0.1, 0.2])), "one per image")])
def test_exception_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        bm3d_free(*args)


def test_classical_method_weight_scales_the_sigma_and_residual_form_agrees():
    x = shapes(1)
    op, y = noisy(x, 25)
    res = solve(y, op, None, "bm3d-free", ClassicalConfig(weight=0.5))
    assert res.method == "bm3d-free" and res.config["weight"] == [0.5]
    assert torch.allclose(res.image, bm3d_free(y, 0.5 * op.noise.sigma).clamp(-1, 1), atol=1e-6)
    base = torch.zeros_like(y)
    assert torch.allclose(on_residual(y, op, "bm3d-free", base), classical(y, op, "bm3d-free").image, atol=1e-6)
    assert RESIDUAL_METHODS[Denoising] == ("bm3d-free",)


def test_within_reach_of_the_bm3d_package():
    pytest.importorskip("bm3d", reason="bm3d is an optional extra (pip install 'ilo-inverse[bm3d]')")
    from ilo.images import photo
    from ilo.solvers import bm3d_denoise

    x = photo("astronaut", 64)
    op, y = noisy(x, 25)
    ours = float(M.psnr(classical(y, op, "bm3d-free").image, x))
    theirs = float(M.psnr(bm3d_denoise(y, op).image, x))
    assert ours > theirs - 0.5, (ours, theirs)


def test_bench_rows_per_level_and_method():
    from ilo.bench.bm3d_free import compare

    lines = []
    rows = compare(shapes(2), levels=(25.0,), methods=("bm3d-free", "nlmeans"), echo=lines.append)
    assert [(r["level"], r["method"]) for r in rows] == [(25.0, "bm3d-free"), (25.0, "nlmeans")]
    assert all(len(r["per_image"]) == 2 and r["seconds"] > 0 for r in rows) and len(lines) == 2
    assert rows[0]["psnr"] > rows[1]["psnr"]


def test_from_the_command_line(tmp_path, capsys):
    import json

    from ilo.cli import main

    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["solve", "--generator", "digiface-dcgan", "--quiet", "--task", "denoise", "--sigma", "25",
              "--method", "bm3d-free", "--truth-seed", "3", "--out", str(out)])
    assert e.value.code == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "bm3d-free" and m["psnr"] > 20 + 5  # the noisy input is about 20 dB at sigma 25
