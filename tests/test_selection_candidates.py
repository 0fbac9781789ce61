"""Classical candidates of ILO's self-tuning: ``stage + C(y - A(stage))`` and ``C(y)``
(ilo.solvers.classical.on_residual, ilo.solvers.selection), their held-out and SURE scores,
and the stage rule."""

import pytest
import torch

from ilo import metrics as M
from ilo.operators import Denoising, Inpainting, SuperResolution
from ilo.solvers.classical import RESIDUAL_METHODS, ClassicalConfig, classical, direct_estimate, on_residual
from ilo.solvers.config import DeviationConfig, ILOConfig, SelectionConfig
from ilo.solvers.result import Result
from ilo.solvers.risk import sure
from ilo.solvers.selection import (HeldOut, row_candidates, candidate_names, candidate_stages, candidates,
                                   classical_methods, residual_candidates, self_tune, split)

from test_classical import smooth_images as smooth  # smooth random images in [-0.8, 0.8]

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 16, 16)


def fake_run(stage_images):
    """A stand-in for ILO's rounds: the same stage images for any observation, measurement
    losses from the operator it is called with (``copies`` rows per image, as ILO's ``run``)."""
    def run(y, op, copies=1, start=None):
        ims = [im.repeat_interleave(copies, 0) for im in stage_images]
        stages = [(f"s{i}", im, op.measurement_loss(im, y)) for i, im in enumerate(ims)]
        return Result(image=stages[-1][1], latents={}, layer=1, measurement_loss=stages[-1][2]), stages
    return run


def test_on_residual_is_the_stage_plus_the_method_on_the_residual():
    x, base = smooth(seed=0), smooth(seed=1)
    op = SuperResolution(SHAPE, 4)
    y = op(x)
    bic = direct_estimate(y - op.A(base), op)  # bicubic, not clamped
    assert torch.allclose(on_residual(y, op, "bicubic", base), (base + bic).clamp(-1, 1), atol=1e-5)
    zero = on_residual(y, op, "tv-superres", torch.zeros_like(x), config=ClassicalConfig(steps=40))
    assert torch.allclose(zero, classical(y, op, "tv-superres", ClassicalConfig(steps=40)).image, atol=1e-5)
    ip = Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0))
    out = on_residual(ip(x), ip, "biharmonic", base)  # interpolates the residual: observed pixels kept
    m = ip.mask.bool().expand_as(x)
    assert torch.allclose(out[m], x[m], atol=1e-5) and not torch.allclose(out[~m], base[~m], atol=1e-3)
    with pytest.raises(ValueError, match="denoiser"):
        on_residual(x, Denoising(SHAPE, 25), "bicubic", base)
    with pytest.raises(ValueError, match="nlmeans"):
        on_residual(y, op, "nlmeans", base)


def test_candidate_order_names_and_stages_agree(tiny_dcgan):
    from ilo.solvers.gaussian import fit_prior, posterior_mean

    dev = DeviationConfig(weights=(0.01, 0.1), steps=5)
    stages = torch.stack([smooth(seed=1), smooth(seed=2)])
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(smooth())
    methods = RESIDUAL_METHODS[Inpainting]
    assert classical_methods(op, SelectionConfig()) == methods and "gaussian" in methods
    assert classical_methods(op, SelectionConfig(classical=())) == ()
    names = candidate_names(["a", "b"], dev, methods=methods)
    origin = candidate_stages(2, dev, methods=methods)
    prior = fit_prior(tiny_dcgan, samples=512, components=64)
    cands = candidates(stages, y, op, dev, methods=methods, prior=prior)
    assert cands.shape[0] == len(names) == len(origin)
    for k, n in enumerate(names):
        assert origin[k] == ("ab".index(n[0]) if n[0] in "ab" and (len(n) == 1 or n[1] == "+") else -1)
    k = names.index("b+biharmonic")
    assert torch.allclose(cands[k], on_residual(y, op, "biharmonic", stages[1]))
    assert torch.allclose(cands[names.index("biharmonic")], classical(y, op, "biharmonic").image)
    # the Gaussian prior: centred at a stage on its residual, at the prior's own mean alone
    assert torch.allclose(cands[names.index("b+gaussian")], posterior_mean(y, op, prior, base=stages[1]), atol=1e-5)
    assert torch.allclose(cands[names.index("gaussian")], posterior_mean(y, op, prior), atol=1e-5)
    assert not torch.allclose(cands[names.index("gaussian")], cands[names.index("a+gaussian")], atol=1e-2)
    with pytest.raises(ValueError, match="GaussianPrior"):
        candidates(stages, y, op, dev, methods=methods)


def test_classical_alone_is_chosen_when_the_stages_are_garbage():
    x = smooth(seed=3)
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(x)
    g = torch.Generator().manual_seed(1)
    garbage = [torch.rand(x.shape, generator=g) * 2 - 1 for _ in range(2)]  # noise: no residual method repairs it
    for rule in ("estimate", "measurement", "classical"):
        cfg = ILOConfig(deviation=DeviationConfig(weights=(10.0,), steps=5),  # a heavy deviation stays garbage
                        selection=SelectionConfig(stage=rule))
        res = self_tune(y, op, cfg, fake_run(garbage), [0, 1])
        sel = res.selection
        assert sel["classical"] == ["biharmonic", "tv-inpaint"]  # no prior given: the Gaussian one left out
        assert all(c in sel["classical"] for c in sel["choice"]), sel["choice"]
        assert sel["stage_rule"] == rule
        assert bool((M.psnr(res.image, x) > M.psnr(garbage[0], x) + 8).all())


def test_measurement_rule_keeps_the_refit_best_stage_or_a_classical_method():
    x = smooth(seed=4)
    op = SuperResolution(SHAPE, 2)
    y = op(x)
    stage_images = [smooth(seed=5), x + 0.02 * smooth(seed=6), smooth(seed=7)]  # stage 1 fits best
    cfg = ILOConfig(deviation=DeviationConfig(weights=(0.01,), steps=5), selection=SelectionConfig())
    res = self_tune(y, op, cfg, fake_run(stage_images), [0, 1])
    sel = res.selection
    assert sel["stage_rule"] == "measurement" and sel["stage"] == ["s1", "s1"]  # "auto": not a box
    origin = candidate_stages(3, cfg.deviation, methods=sel["classical"])
    assert sel["csgm_candidate"] == "s0"  # the first stage: CSGM's solution, always a candidate
    for i, c in enumerate(sel["choice"]):
        k = sel["candidates"].index(c)
        allowed = [0] + [j for j, o in enumerate(origin) if o in (1, -1)]
        assert k in allowed
        assert sel["estimated_mse"][i][k] == min(sel["estimated_mse"][i][j] for j in allowed)
    box = Inpainting.box(SHAPE, 5, 5, 11, 11)
    res = self_tune(box(x), box, cfg, fake_run(stage_images), [0, 1])
    assert res.selection["stage_rule"] == "estimate" and "stage" not in res.selection


def test_held_out_super_resolution_interpolates_the_held_out_residual():
    """The direct estimate on the fit part fills the held-out low-resolution pixels by
    interpolation (zeros there would leave dark holes)."""
    x = smooth(1, (3, 32, 32), seed=8)
    op = SuperResolution((3, 32, 32), 2)
    y = op(x)
    fit, y_fit, _, rec = split(op, y, [0], SelectionConfig(holdout=0.15))
    assert isinstance(fit, HeldOut) and rec["fraction"] == 0.15
    frac = float(1 - fit.keep[:, :1].mean())
    assert 0.08 < frac < 0.22
    zero = torch.zeros(1, 1, 3, 32, 32)
    held = residual_candidates(zero, y_fit, fit, ["bicubic"])[0]
    whole = classical(y, op, "bicubic").image
    zero_filled = classical(y_fit, op, "bicubic").image
    assert float(M.mse(held, whole)) < 0.2 * float(M.mse(zero_filled, whole))


def test_sure_of_a_classical_candidate_tracks_its_true_error():
    """SURE of ``C(y)`` computed row-wise among the other candidates (the divergence pairs each
    probe with its own row) is close to the true MSE; without the divergence it is far below."""
    shape = (3, 32, 32)
    x = smooth(1, shape, seed=9)
    op = Denoising(shape, 25)
    y = op(x, torch.Generator().manual_seed(2))
    stages = torch.stack([smooth(1, shape, seed=10)[0]])
    names = candidate_names(["s0"], None, identity=True, methods=["tv-denoise"])
    k = names.index("tv-denoise")
    est = sure(lambda v: row_candidates(stages, v, op, None, ["tv-denoise"]), y.expand(len(names), *shape),
               op.noise.sigma, probes=2)
    true = float(M.mse(on_residual(y, op, "tv-denoise", torch.zeros_like(y)), x)) * 4  # [-1, 1] units
    fit_only = float((y - on_residual(y, op, "tv-denoise", torch.zeros_like(y))).pow(2).mean()) - op.noise.sigma ** 2
    assert abs(float(est[k]) - true) < 0.25 * true
    assert abs(fit_only - true) > 0.5 * true
    assert float(est[names.index("observation")]) == pytest.approx(op.noise.sigma ** 2, rel=1e-5)
