"""Classical baselines (ilo.solvers.classical) and the risk helpers (ilo.solvers.risk)."""

import doctest
import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from ilo import metrics as M
from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.solvers import solve
from ilo.solvers.classical import (CLASSICAL, TUNED, ClassicalConfig, bicubic_upsampling, classical, default_weight,
                                   task_level)
from ilo.solvers.risk import keep_observed, sure


# thousands of tiny tensor ops: with intra-op threads on a busy machine each op waits for a
# core (30x slower measured on 2 shared cores), so run them on one (conftest's fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


SHAPE = (3, 16, 16)


def smooth_images(n=2, shape=SHAPE, seed=0):
    """Smooth random images in [-0.8, 0.8]: 4x4 noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, shape[0], 4, 4, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(low, size=shape[1:], mode="bilinear", align_corners=False)


def operators():
    g = torch.Generator().manual_seed(3)
    return {
        Inpainting: Inpainting.random(SHAPE, 0.3, g),
        SuperResolution: SuperResolution(SHAPE, 4),
        Denoising: Denoising(SHAPE, 25),
        CompressedSensing: CompressedSensing(SHAPE, 0.25, g),
    }


def naive(op, y):
    """What a method must beat: zero-fill / nearest neighbour / the noisy input / zeros."""
    if isinstance(op, (Inpainting, Denoising)):
        return y
    if isinstance(op, SuperResolution):
        return op.observation_image(y)
    return torch.zeros(y.shape[0], *SHAPE)


@pytest.mark.parametrize("method", list(CLASSICAL))
def test_smoke_beats_naive(method):
    x = smooth_images()
    op = operators()[CLASSICAL[method]]
    y = op(x, torch.Generator().manual_seed(1))
    res = classical(y, op, method, ClassicalConfig(steps=60))
    assert res.image.shape == x.shape and res.method == method
    assert float(res.image.abs().max()) <= 1.0
    assert res.measurement_loss.shape == (2,) and len(res.history) >= 1
    margin = 0.5 if method == "adjoint" else 1.0  # the back-projection only just beats zeros
    assert bool((M.psnr(res.image, x) > M.psnr(naive(op, y), x) + margin).all())


@pytest.mark.parametrize("method", list(CLASSICAL))
def test_exception_wrong_operator(method):
    x = smooth_images(1)
    wrong = next(op for kind, op in operators().items() if kind is not CLASSICAL[method])
    with pytest.raises(ValueError, match=method):
        classical(wrong(x), wrong, method)


def test_exception_bad_method_and_weight():
    op = Denoising(SHAPE, 10)
    y = op(smooth_images(1))
    with pytest.raises(ValueError, match="unknown"):
        classical(y, op, "wiener")
    with pytest.raises(ValueError, match="weight"):
        classical(y, op, "tv-denoise", ClassicalConfig(weight=-1.0))


def test_tuning_sweep_and_table():
    from ilo.bench.classical_tuning import best_table, make_problem, sweep

    x = smooth_images(2)
    op, y = make_problem("box", 1 / 3, x)
    assert float(op.mask.mean()) == pytest.approx(1 - (5 / 16) ** 2)  # the central 5x5 of 16x16
    lines = []
    rows = sweep(x, [("denoise", 25)], {"denoise": ("tv-denoise",)}, {"tv-denoise": (0.01, 1.0)}, echo=lines.append)
    assert [r["weight"] for r in rows] == [0.01, 1.0] and len(lines) == 2
    best = max(rows, key=lambda r: r["psnr"])
    assert f"| denoise | 25 | tv-denoise | {best['weight']:g} | {best['psnr']:.2f} |" in best_table(rows)


def test_solve_dispatches_classical_methods():
    op = SuperResolution(SHAPE, 2)
    x = smooth_images(1)
    res = solve(op(x), op, None, "bicubic")
    assert res.method == "bicubic" and res.image.shape == x.shape
    with pytest.raises(ValueError, match="bicubic"):
        solve(x, Denoising(SHAPE, 10), None, "bicubic")
    with pytest.raises(TypeError, match="ClassicalConfig"):
        solve(op(x), op, None, "bicubic", config={"weight": 1.0})


def test_bicubic_upsampling_matches_pil():
    low = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    ref = np.asarray(Image.fromarray(low.numpy(), "F").resize((24, 24), Image.BICUBIC))
    U = bicubic_upsampling(8, 3, "truncate")
    assert np.abs(U @ low.double().numpy() @ U.T - ref).max() < 1e-5


def test_adjoint_scale_is_least_squares():
    op = operators()[CompressedSensing]
    y = op(smooth_images())
    out = classical(y, op, "adjoint").image
    base = op.measurement_loss(out, y)
    for s in (0.9, 1.1):
        assert bool((op.measurement_loss(out * s, y) > base).all())


def test_denoising_weight_is_used():
    op = Denoising(SHAPE, 25)
    y = op(smooth_images(1), torch.Generator().manual_seed(0))
    weak = classical(y, op, "tv-denoise", ClassicalConfig(weight=0.01)).image
    strong = classical(y, op, "tv-denoise", ClassicalConfig(weight=3.0)).image
    assert float((weak - y).abs().mean()) < float((strong - y).abs().mean())
    assert bool(classical(y, Denoising(SHAPE, 0), "nlmeans").image.equal(y.clamp(-1, 1)))


def test_task_level_and_default_weight():
    g = torch.Generator().manual_seed(0)
    masks = torch.cat([Inpainting.random(SHAPE, f, g).mask for f in (0.1, 0.5)])
    op = Inpainting(SHAPE, masks)
    assert task_level(op, 2).tolist() == pytest.approx([0.1, 0.5], abs=0.01)
    assert task_level(CompressedSensing(SHAPE, 0.25, g), 1).tolist() == pytest.approx([0.25], abs=0.01)
    table = TUNED["tv-cs"]
    lo, hi = table[0], table[-1]
    below = default_weight("tv-cs", CompressedSensing(SHAPE, lo[0] / 2, g), 1)
    assert float(below) == pytest.approx(lo[1])  # constant outside the tuned levels
    above = default_weight("tv-cs", CompressedSensing(SHAPE, min(1.0, hi[0] * 2), g), 1)
    assert float(above) == pytest.approx(hi[1])


def test_per_image_masks_do_not_depend_on_the_batch():
    x = smooth_images(2)
    g = torch.Generator().manual_seed(5)
    masks = torch.cat([Inpainting.random(SHAPE, 0.3, g).mask for _ in range(2)])
    both = classical(Inpainting(SHAPE, masks)(x), Inpainting(SHAPE, masks), "tv-inpaint", ClassicalConfig(steps=20))
    one = Inpainting(SHAPE, masks[1:])
    alone = classical(one(x[1:]), one, "tv-inpaint", ClassicalConfig(steps=20))
    assert torch.allclose(both.image[1:], alone.image, atol=1e-5)


def test_keep_observed():
    x = smooth_images(2)
    op = operators()[Inpainting]
    out = keep_observed(torch.zeros_like(x), op(x), op)
    m = op.mask.bool().expand_as(x)
    assert out[m].equal(x[m]) and bool((out[~m] == 0).all())
    with pytest.raises(ValueError, match="Inpainting"):
        keep_observed(x, x, Denoising(SHAPE, 10))
    from ilo.operators import GaussianNoise

    noisy = Inpainting(SHAPE, op.mask, GaussianNoise(0.1))
    with pytest.raises(ValueError, match="noiseless"):
        keep_observed(x, x, noisy)


@pytest.mark.parametrize("name", ["blur", "tv"])
def test_sure_tracks_true_mse(name):
    """SURE vs the true MSE on 8 smooth 32x32 RGB images at sigma = 0.2 (no clipping: the noise
    model of the estimate). Both differ from their expectation by about sigma² sqrt(2 / n)
    (2.6 % of sigma² per image here), so the tolerances are in units of sigma²: the batch mean
    within 2 %, every image within 8 %, and the ranking against the noisy input (sigma²) right."""
    from ilo.priors import TotalVariation

    x = smooth_images(8, (3, 32, 32), seed=2).double() * 0.7
    sigma = 0.2
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=x.dtype)
    if name == "blur":
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype) / 16
        w = (k[:, None] * k[None, :]).expand(3, 1, 5, 5).contiguous()

        def denoiser(v):
            return torch.nn.functional.conv2d(torch.nn.functional.pad(v, (2,) * 4, mode="reflect"), w, groups=3)
    else:  # TV denoising with a fixed iteration count (a deterministic map, as SURE assumes)
        def denoiser(v):
            return TotalVariation(100).prox(v, 0.15)
    est = sure(denoiser, y, sigma, probes=2)
    true = (denoiser(y) - x).flatten(1).pow(2).mean(1)
    assert abs(float(est.mean() - true.mean())) < 0.02 * sigma**2
    assert bool(((est - true).abs() < 0.08 * sigma**2).all())
    assert bool((est < sigma**2).all())  # both denoisers beat the noisy input here


def test_sure_exceptions():
    with pytest.raises(ValueError, match="sigma"):
        sure(lambda v: v, torch.zeros(1, 1, 4, 4), 0.0)


@pytest.mark.parametrize("module", ["ilo.solvers.classical", "ilo.solvers.risk"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
