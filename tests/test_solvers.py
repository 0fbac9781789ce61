"""Solver tests on a tiny random DCGAN (16x16), fixed seeds, CPU, seconds each."""

import pytest
import torch

from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.projections import project_l1_ball
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, Schedule, csgm, ilo, solve, with_budget

SHAPE = (3, 16, 16)


def _truth(G, seed=123, n=2):
    return G(G.sample_latent(n, torch.Generator().manual_seed(seed)))


def _ilo_cfg(steps=20, radius=5.0, **kw):
    return ILOConfig(
        csgm=CSGMConfig(steps=steps, restarts=2, lr=0.05),
        rounds=(RoundConfig(1, steps, 0.05, radius), RoundConfig(2, steps, 0.05, radius)),
        **kw,
    )


def test_csgm_decreases_loss_and_picks_best_restart(tiny_dcgan):
    G = tiny_dcgan
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(_truth(G))
    res = csgm(y, op, G, CSGMConfig(steps=40, restarts=3))
    first = torch.tensor(res.history[0]["measurement_loss"])
    assert (res.measurement_loss < first).all()
    assert res.image.shape == (2, *SHAPE) and res.layer == 0
    # the returned latents reproduce the returned image
    torch.testing.assert_close(G(res.latents), res.image, atol=1e-5, rtol=1e-5)
    # the selected restart is no worse than any restart's loss at the last step
    assert len(res.history) == 40
    torch.testing.assert_close(res.measurement_loss, op.measurement_loss(res.image, y))


def test_more_restarts_never_worse(tiny_dcgan):
    G = tiny_dcgan
    op = SuperResolution(SHAPE, 2)
    y = op(_truth(G, 7))
    one = csgm(y, op, G, CSGMConfig(steps=30, restarts=1))
    four = csgm(y, op, G, CSGMConfig(steps=30, restarts=4))  # restart 0 is the same start as above
    assert (four.measurement_loss <= one.measurement_loss + 1e-7).all()


@pytest.mark.parametrize("method", ["csgm", "ilo"])
def test_result_does_not_depend_on_batch(tiny_dcgan, method):
    G = tiny_dcgan
    x = _truth(G, 3, n=3)
    op = Denoising(SHAPE, 20)
    y = op(x, [torch.Generator().manual_seed(i) for i in range(3)])
    cfg = CSGMConfig(steps=15, restarts=2) if method == "csgm" else _ilo_cfg(10)
    full = solve(y, op, G, method, cfg, seeds=[10, 11, 12])
    alone = solve(y[1:2], op, G, method, cfg, seeds=[11])
    torch.testing.assert_close(full.image[1:2], alone.image, atol=1e-4, rtol=1e-4)


def test_ilo_stays_in_l1_ball_and_improves(tiny_dcgan):
    G = tiny_dcgan
    x = _truth(G, 5)
    op = CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))
    y = op(x)
    radius = 3.0
    cfg = ILOConfig(csgm=CSGMConfig(steps=20, restarts=2), rounds=(RoundConfig(1, 30, 0.1, radius),), select="last")
    res = ilo(y, op, G, cfg)
    # feasibility: the final state deviates from the CSGM solution's layer-1 state by at most the radius
    first = csgm(y, op, G, cfg.csgm)
    center = G.head(1)(first.latents)["h"]
    dev = (res.latents["h"] - center).flatten(1).abs().sum(1)
    assert (dev <= radius * (1 + 1e-4)).all(), dev
    assert (dev > 0.5 * radius).all()  # the constraint is active: the optimiser wanted to go further
    # more freedom fits the measurements better than CSGM alone
    assert (res.measurement_loss < first.measurement_loss).all()
    torch.testing.assert_close(G.tail(1)(res.latents), res.image, atol=1e-5, rtol=1e-5)


def test_ilo_radius_zero_is_csgm(tiny_dcgan):
    G = tiny_dcgan
    op = Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(2))
    y = op(_truth(G, 9))
    cfg = ILOConfig(csgm=CSGMConfig(steps=15, restarts=2), rounds=(RoundConfig(1, 10, 0.1, 0.0),), select="last")
    res = ilo(y, op, G, cfg)
    first = csgm(y, op, G, cfg.csgm)
    torch.testing.assert_close(res.image, first.image, atol=1e-5, rtol=1e-5)


def test_ilo_returns_best_iterate_over_all_rounds(tiny_dcgan):
    G = tiny_dcgan
    op = Inpainting.random(SHAPE, 0.3, torch.Generator().manual_seed(4))
    y = op(_truth(G, 11))
    seen = []
    res = ilo(y, op, G, _ilo_cfg(15, radius=8.0), callback=lambda info: seen.append(info.measurement_loss.clone()))
    hist_min = torch.stack(seen).min(0).values
    # the result is at least as good as every iterate evaluated during the run
    assert (res.measurement_loss <= hist_min + 1e-7).all()
    assert {h["round"] for h in res.history} == {0, 1, 2}
    assert len(res.history) == _ilo_cfg(15).csgm.steps + 30


def test_back_to_range_runs_and_counts_budget(tiny_dcgan):
    G = tiny_dcgan
    op = SuperResolution(SHAPE, 2)
    y = op(_truth(G, 13))
    cfg = _ilo_cfg(10, radius=4.0, back_to_range=True, back_to_range_steps=7)
    assert cfg.total_steps == 10 + 20 + 14
    res = ilo(y, op, G, cfg)
    assert torch.isfinite(res.image).all()
    assert (res.measurement_loss <= torch.tensor(res.history[0]["measurement_loss"])).all()


def test_back_to_range_lands_in_range(tiny_dcgan):
    """Lines 5-6: after back-to-range the next round starts from a point G1 can produce."""
    from ilo.solvers.ilo import _back_to_range

    G = tiny_dcgan
    z = G.sample_latent(2, torch.Generator().manual_seed(1))
    target = G.head(1)(G.sample_latent(2, torch.Generator().manual_seed(2)))
    cfg = ILOConfig(back_to_range_steps=200, back_to_range_lr=0.05, schedule=Schedule(0, 0))
    fitted = _back_to_range(G, z, 0, target, 1, {"z": []}, cfg)  # the latent unconstrained
    before = (G.head(1)(z)["h"] - target["h"]).pow(2).mean()
    after = (G.head(1)(fitted)["h"] - target["h"]).pow(2).mean()
    assert after < 0.2 * before


def test_latent_radius_constraint(tiny_dcgan):
    G = tiny_dcgan
    op = Denoising(SHAPE, 5)
    y = op(_truth(G, 1), torch.Generator().manual_seed(0))
    res = csgm(y, op, G, CSGMConfig(steps=10, restarts=2, latent_radius=1.0, lr=0.5))
    assert (res.latents["z"].norm(dim=1) <= 1.0 + 1e-5).all()


def test_configs_validate_and_budget():
    with pytest.raises(ValueError):
        CSGMConfig(steps=10, restarts=0)
    with pytest.raises(ValueError):
        ILOConfig(rounds=(RoundConfig(2), RoundConfig(1)))
    with pytest.raises(ValueError):
        ILOConfig(select="best")
    cfg = with_budget(_ilo_cfg(20), 300)
    assert cfg.total_steps == 300
    sched = Schedule(rampup=0.1, rampdown=0.5)
    f = [sched.factor(t, 100) for t in range(100)]
    assert f[0] < f[20] and max(f) == pytest.approx(1.0) and f[-1] < 0.01


def test_solve_rejects_wrong_config(tiny_dcgan):
    op = Denoising(SHAPE, 5)
    y = torch.zeros(1, *SHAPE)
    with pytest.raises(TypeError):
        solve(y, op, tiny_dcgan, "ilo", CSGMConfig())
    with pytest.raises(ValueError, match="unknown method"):
        solve(y, op, tiny_dcgan, "gibbs")


def test_projection_used_by_ilo_is_exact():
    v = torch.tensor([[3.0, -1.0, 0.5]])
    p = project_l1_ball(v, 2.0)
    torch.testing.assert_close(p, torch.tensor([[2.0, 0.0, 0.0]]))


def test_per_image_masks_with_restarts(tiny_dcgan):
    """Each image its own mask; restarts run as one batch must use the right mask per row."""
    G = tiny_dcgan
    x = _truth(G, 21, n=2)
    masks = torch.cat([Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(s)).mask for s in (1, 2)])
    op = Inpainting(SHAPE, masks)
    y = op(x)
    rep = op.batch_repeat(3)
    assert rep.mask.shape[0] == 6 and torch.equal(rep.mask[3:], masks[1:2].expand(3, -1, -1, -1))
    res = csgm(y, op, G, CSGMConfig(steps=10, restarts=3), seeds=[5, 6])
    alone = csgm(y[1:2], Inpainting(SHAPE, masks[1:2]), G, CSGMConfig(steps=10, restarts=3), seeds=[6])
    torch.testing.assert_close(res.image[1:2], alone.image, atol=1e-4, rtol=1e-4)
