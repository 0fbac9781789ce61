"""Loss terms, Stochastic Noise Addition, PULSE and BM3D behind the common solver signature."""

import math

import pytest
import torch

from ilo.losses.composite import LossConfig, Objective, geocross
from ilo.rng import streams
from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, pulse_preset, solve

SHAPE64 = (3, 64, 64)


def test_geocross_properties():
    v = torch.randn(2, 1, 16)
    assert torch.equal(geocross(v), torch.zeros(2))  # a single vector
    same = torch.randn(2, 1, 16).expand(2, 4, 16)
    assert geocross(same).abs().max() < 1e-3
    w = torch.randn(2, 4, 16, requires_grad=True)
    g = geocross(w)
    assert (g > 0).all()
    g.sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    # orthogonal pairs: angle pi/2 off the diagonal
    e = torch.eye(3).unsqueeze(0)
    expected = (math.pi / 2) ** 2 * 6 / 9 * 3 / 8
    assert geocross(e).item() == pytest.approx(expected, rel=1e-4)


def test_sna_shifts_expectation_by_sigma_squared():
    """E||x + s n - y||^2 = ||x - y||^2 + s^2 per entry (away from the clipping range)."""
    op = Denoising((3, 32, 32), sigma255=20)
    s = 20 * 2 / 255
    x = torch.full((1, 3, 32, 32), 0.1)
    y = torch.full((1, 3, 32, 32), -0.05)
    plain = Objective(LossConfig(), op)(x, y)
    sna = Objective(LossConfig(sna=True), op, noise_streams=streams([1], "sna"))
    draws = torch.stack([sna(x, y) for _ in range(50)])
    assert draws.std() > 0  # fresh noise at every evaluation
    assert draws.mean().item() == pytest.approx(plain.item() + s**2, rel=0.02)
    # the noise uses the operator's sigma: a larger sigma shifts more
    op2 = Denoising((3, 32, 32), sigma255=40)
    draws2 = torch.stack([Objective(LossConfig(sna=True), op2, noise_streams=streams([1], "sna"))(x, y) for _ in range(20)])
    assert draws2.mean() > draws.mean() + 2 * s**2


def test_sna_reproducible_per_seed():
    op = Denoising((3, 8, 8), sigma255=30)
    x, y = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    a = Objective(LossConfig(sna=True), op, noise_streams=streams([3, 4], "sna"))(x, y)
    b = Objective(LossConfig(sna=True), op, noise_streams=streams([3, 4], "sna"))(x, y)
    c = Objective(LossConfig(sna=True), op, noise_streams=streams([4], "sna"))(x[:1], y[:1])
    assert torch.equal(a, b) and torch.equal(a[1:], c)


def test_sna_needs_noise_and_cs_has_no_perceptual():
    with pytest.raises(ValueError, match="noise model"):
        Objective(LossConfig(sna=True), Inpainting.random((3, 8, 8), 0.5, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="compressed sensing"):
        Objective(LossConfig(perceptual=1.0), CompressedSensing((3, 8, 8), 0.5, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        LossConfig(mse=0.0)
    with pytest.raises(ValueError):
        LossConfig(perceptual=-1.0)


def test_superimposed_target_for_inpainting():
    op = Inpainting.random(SHAPE64, 0.3, torch.Generator().manual_seed(0))
    x = torch.rand(1, *SHAPE64) * 2 - 1
    truth = torch.rand(1, *SHAPE64) * 2 - 1
    y = op(truth)
    a, b = Objective(LossConfig(perceptual=1.0), op).perceptual_pair(x, y)
    m = op.mask.bool().expand_as(x)
    assert torch.equal(a, x)
    assert torch.equal(b[m], truth[m]) and torch.equal(b[~m], x[~m])


def test_gradient_flows_through_every_term(digiface):
    G = digiface
    z = G.sample_latent(2, torch.Generator().manual_seed(0))
    truth = G(G.sample_latent(2, torch.Generator().manual_seed(1)))
    for op, loss in [
        (Inpainting.random(SHAPE64, 0.5, torch.Generator().manual_seed(0)), LossConfig(mse=1.0, perceptual=0.1)),
        (SuperResolution(SHAPE64, 4), LossConfig(mse=0.0, perceptual=1.0)),
        (Denoising(SHAPE64, 25), LossConfig(mse=1.0, perceptual=0.1, sna=True)),
    ]:
        y = op(truth)
        zz = z["z"].clone().requires_grad_(True)
        val = Objective(loss, op, noise_streams=streams([0, 1], "sna"))(G({"z": zz}), y)
        assert val.shape == (2,) and torch.isfinite(val).all()
        val.sum().backward()
        assert zz.grad.abs().sum() > 0, op.task


def test_perceptual_distance_falls_as_csgm_fits(digiface):
    G = digiface
    truth = G(G.sample_latent(1, torch.Generator().manual_seed(42)))
    op = SuperResolution(SHAPE64, 4)
    y = op(truth)
    res = solve(y, op, G, "csgm-perceptual", CSGMConfig(steps=25, restarts=1, loss=LossConfig(mse=0.0, perceptual=1.0)))
    losses = [h["loss"][0] for h in res.history]
    assert min(losses[-5:]) < 0.8 * losses[0]
    assert res.method == "csgm-perceptual"


def test_pulse_keeps_latent_on_sphere(tiny_dcgan):
    G = tiny_dcgan
    op = SuperResolution((3, 16, 16), 2)
    y = op(G(G.sample_latent(2, torch.Generator().manual_seed(3))))
    cfg = pulse_preset(total_steps=20, restarts=2)
    seen = []
    res = solve(y, op, G, "pulse", cfg, callback=lambda info: seen.append(info.step))
    norms = res.latents["z"].norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(G.nz)), rtol=1e-5, atol=1e-5)
    assert res.method == "pulse" and len(seen) == 20
    # the best iterate is returned (PULSE's code returned the last one)
    assert (res.measurement_loss <= torch.tensor(res.history[-1]["measurement_loss"]) + 1e-7).all()


def test_bm3d_denoises():
    pytest.importorskip("bm3d", reason="bm3d is an optional extra (pip install 'ilo-inverse[bm3d]')")
    from ilo.images import photo
    from ilo.metrics import psnr

    x = photo("astronaut", 64)
    op = Denoising(SHAPE64, 25)
    y = op(x, torch.Generator().manual_seed(0))
    res = solve(y, op, None, "bm3d")
    assert res.method == "bm3d" and res.image.shape == x.shape
    assert psnr(res.image, x).item() > psnr(y, x).item() + 3


def test_bm3d_missing_is_a_clear_error(monkeypatch):
    import builtins

    from ilo.solvers.bm3d import BM3DUnavailable

    real_import = builtins.__import__

    def fake(name, *a, **kw):
        if name == "bm3d":
            raise ImportError("no bm3d")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    op = Denoising((3, 8, 8), 10)
    with pytest.raises(BM3DUnavailable, match=r"ilo-inverse\[bm3d\]"):
        solve(torch.zeros(1, 3, 8, 8), op, None, "bm3d")
    with pytest.raises(ValueError, match="only solves denoising"):
        from ilo.solvers import bm3d_denoise

        bm3d_denoise(torch.zeros(1, 3, 8, 8), SuperResolution((3, 8, 8), 2))


def test_ilo_with_sna_and_perceptual_runs(digiface):
    G = digiface
    truth = G(G.sample_latent(1, torch.Generator().manual_seed(7)))
    op = Denoising(SHAPE64, 25)
    y = op(truth, torch.Generator().manual_seed(0))
    loss = LossConfig(mse=1.0, perceptual=0.05, sna=True)
    cfg = ILOConfig(csgm=CSGMConfig(steps=5, restarts=1, loss=loss), rounds=(RoundConfig(1, 5, 0.05, 0.1, relative=True),), loss=loss)
    res = solve(y, op, G, "ilo", cfg)
    assert torch.isfinite(res.image).all() and len(res.history) == 10
