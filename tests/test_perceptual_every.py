"""``LossConfig.perceptual_every``: the perceptual term at every k-th Adam step only (issue 14)."""

from dataclasses import replace

import pytest
import torch

from ilo.losses.composite import LossConfig, Objective, perceptual_net
from ilo.operators import SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, csgm, ilo
from ilo.solvers import rounds as rounds_module

SHAPE64 = (3, 64, 64)
STEPS = 6


@pytest.fixture()
def problem(digiface, one_thread):
    truth = digiface(digiface.sample_latent(1, torch.Generator().manual_seed(3)))
    op = SuperResolution(SHAPE64, 4)
    return op, op(truth)


@pytest.fixture()
def counted(monkeypatch):
    """The perceptual network's feature calls made with gradient (one per optimisation step
    where the term is evaluated; the target's features and evaluations outside the loop run
    without gradient)."""
    net = perceptual_net("mobilenet", "cpu")
    calls = []
    features = net.features

    def counting(x):
        if torch.is_grad_enabled():
            calls.append(x.shape[0])
        return features(x)
    monkeypatch.setattr(net, "features", counting)
    return calls


def ilo_config(every: int) -> ILOConfig:
    loss = LossConfig(mse=1.0, perceptual=0.05, perceptual_every=every)
    return ILOConfig(csgm=CSGMConfig(steps=STEPS, restarts=2, loss=loss),
                     rounds=(RoundConfig(layer=1, steps=STEPS, radius=0.3, relative=True),
                             RoundConfig(layer=2, steps=STEPS - 1, radius=0.3, relative=True)),
                     loss=loss)


def test_every_step_is_bit_for_bit_the_objective_without_a_step(digiface, problem, monkeypatch):
    op, y = problem
    with_step = ilo(y, op, digiface, ilo_config(1), seeds=5)
    every2 = ilo(y, op, digiface, ilo_config(2), seeds=5)
    assert not torch.equal(every2.latents["h"], with_step.latents["h"])  # the last round's state differs
    evaluate = rounds_module.Round.evaluate
    monkeypatch.setattr(rounds_module.Round, "evaluate", lambda self, p, f, step=None: evaluate(self, p, f))
    without = ilo(y, op, digiface, ilo_config(1), seeds=5)  # every objective call as before the option
    assert torch.equal(with_step.image, without.image)
    assert all(torch.equal(with_step.latents[k], without.latents[k]) for k in without.latents)
    assert [h["loss"] for h in with_step.history] == [h["loss"] for h in without.history]


@pytest.mark.parametrize("every", [1, 2, 4])
def test_the_network_runs_on_every_kth_step_only(digiface, problem, counted, every):
    op, y = problem
    seen: list[int] = []  # per step: network calls so far
    res = csgm(y, op, digiface, CSGMConfig(steps=STEPS, restarts=2, loss=ilo_config(every).csgm.loss),
               callback=lambda info: seen.append(len(counted)))
    ran = [t for t in range(STEPS) if seen[t] > (seen[t - 1] if t else 0)]
    assert ran == list(range(0, STEPS, every))
    assert counted == [2] * len(ran)  # one call per such step, at batch images x restarts
    assert res.steps == STEPS


def test_ilo_counts_per_stage(digiface, problem, counted):
    op, y = problem
    ilo(y, op, digiface, ilo_config(1), seeds=0)
    full = list(counted)
    counted.clear()
    ilo(y, op, digiface, ilo_config(2), seeds=0)
    # CSGM stage 6 steps at batch 2, rounds 6 and 5 steps at batch 1: half of each stage's steps (0, 2, 4)
    assert full == [2] * STEPS + [1] * STEPS + [1] * (STEPS - 1)
    assert counted == [2] * 3 + [1] * 3 + [1] * 3


def test_objective_skips_the_term_off_the_kth_steps(digiface, problem):
    op, y = problem
    x = digiface(digiface.sample_latent(1, torch.Generator().manual_seed(0)))
    every = Objective(LossConfig(mse=1.0, perceptual=0.5, perceptual_every=3), op)
    mse_only = Objective(LossConfig(mse=1.0), op)(x, y)
    full = Objective(LossConfig(mse=1.0, perceptual=0.5), op)(x, y)
    assert (full > mse_only).all()
    for step, expected in ((None, full), (0, full), (1, mse_only), (2, mse_only), (3, full), (7, mse_only)):
        assert torch.equal(every(x, y, step=step), expected), step


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_validation(bad):
    with pytest.raises(ValueError, match="perceptual_every"):
        LossConfig(perceptual=0.05, perceptual_every=bad)


def test_needs_mse_on_the_other_steps():
    with pytest.raises(ValueError, match="mse"):
        LossConfig(mse=0.0, perceptual=1.0, perceptual_every=2)
    assert LossConfig(mse=0.0, perceptual=1.0).perceptual_every == 1


def test_recorded_in_the_config():
    cfg = ilo_config(4)
    assert cfg.to_dict()["csgm"]["loss"]["perceptual_every"] == 4
    assert cfg.to_dict()["loss"]["perceptual_every"] == 4
    assert replace(cfg, loss=LossConfig()).to_dict()["loss"]["perceptual_every"] == 1


def test_bench_variants():
    from ilo.bench.solve_cost import variant

    cfg = ilo_config(1)
    every, _ = variant("perceptual-every:4")
    scaled, _ = variant("perceptual-every:2:scaled")
    mse, _ = variant("csgm-mse")
    assert (every(cfg).csgm.loss.perceptual_every, every(cfg).loss.perceptual_every) == (4, 4)
    assert every(cfg).csgm.loss.perceptual == cfg.csgm.loss.perceptual
    assert scaled(cfg).csgm.loss.perceptual == pytest.approx(2 * cfg.csgm.loss.perceptual)
    assert scaled(cfg).loss.perceptual == pytest.approx(2 * cfg.loss.perceptual)
    assert mse(cfg).csgm.loss.perceptual == 0 and mse(cfg).loss == cfg.loss
    back = variant("csgm-perceptual:0.05")[0](mse(cfg))
    assert back.csgm.loss == cfg.csgm.loss and back.loss == cfg.loss
    for bad in ("perceptual-every", "perceptual-every:2:twice", "csgm-mse:1", "csgm-perceptual"):
        with pytest.raises(ValueError):
            variant(bad)


def test_bench_interleaves_variants_per_face(tiny_dcgan, monkeypatch):
    from ilo.bench import solve_cost

    order = []

    def fake_solve(G, truth, task, method, config, *a, **k):
        order.append((config.csgm.loss.perceptual_every, float(truth.sum())))
        return {"psnr": 0.0, "cpu": 0.0, "csgm_steps": 0, "load": 0.0}
    monkeypatch.setattr(solve_cost, "solve_one", fake_solve)
    solve_cost.run(tiny_dcgan, ["shipped", "perceptual-every:2"], ["superres"], 0, [10000, 10001], 9, 2, {},
                   lambda d: None, echo=lambda s: None, reference=False, interleave=True)
    assert [k for k, _ in order] == [1, 2, 1, 2]
    assert order[0][1] == order[1][1] != order[2][1] == order[3][1]  # face after face
