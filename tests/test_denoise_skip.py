"""Denoising's self-tuning under SURE's "classical" stage rule: without the rounds and the
candidates the rule can never choose, and the same image as the full computation."""

import math
from dataclasses import replace

import pytest
import torch

from ilo.operators import Denoising
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import DeviationConfig, self_tuned
from ilo.solvers.classical import RESIDUAL_METHODS
from ilo.solvers.selection import candidate_names

SHAPE = (3, 16, 16)
METHODS = RESIDUAL_METHODS[Denoising]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**selection):
    base = ILOConfig(csgm=CSGMConfig(steps=8, restarts=2, lr=0.05),
                     rounds=(RoundConfig(1, 5, 0.05, 5.0), RoundConfig(2, 5, 0.05, 5.0)))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, **selection))


def _noisy(G, sigma255, n=3):
    x = G(G.sample_latent(n, torch.Generator().manual_seed(5))).detach()
    return Denoising(SHAPE, sigma255), x


@pytest.mark.parametrize("sigma255", [25, 50])
def test_skipping_the_rounds_gives_the_full_computations_image(tiny_dcgan, sigma255):
    op, x = _noisy(tiny_dcgan, sigma255)
    y = op(x, torch.Generator().manual_seed(2))
    fast = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[3, 4, 5])
    full = solve(y, op, tiny_dcgan, "ilo", _cfg(every_candidate=True), seeds=[3, 4, 5])
    assert torch.equal(fast.image, full.image)
    f, g = fast.selection, full.selection
    assert f["stage_rule"] == g["stage_rule"] == "classical"
    assert f["choice"] == g["choice"]
    assert f["rounds_run"] is False and g["rounds_run"] is True
    # the candidates the rule allows: the same images and the same SURE estimates, bit for bit
    # (SURE's probes are drawn for the full list, each candidate on its own row)
    allowed = ["csgm", *METHODS, "observation"]
    for name in allowed:
        i, j = f["candidates"].index(name), g["candidates"].index(name)
        assert torch.equal(fast.candidates[i], full.candidates[j])
        assert [e[i] for e in f["estimated_mse"]] == [e[j] for e in g["estimated_mse"]]
    # the rest of the CSGM stage's candidates: listed, never computed nor chosen
    assert f["candidates"] == candidate_names(["csgm"], DeviationConfig(weights=(0.01, 0.1)), identity=True,
                                              methods=METHODS)
    for i, name in enumerate(f["candidates"]):
        if name not in allowed:
            assert bool(fast.candidates[i].isnan().all())
            assert all(math.isnan(e[i]) for e in f["estimated_mse"])
    # what the record says without the rounds: ILO's output is its CSGM stage
    assert f["ilo_choice"] == ["csgm"] * 3 and "round1" in g["candidates"]
    assert fast.layer == 0 and full.layer == 2
    assert fast.steps == f["csgm_steps"] == full.steps - 10


def test_the_rounds_still_run_where_the_rule_can_choose_them(tiny_dcgan):
    op, x = _noisy(tiny_dcgan, 25, n=1)
    y = op(x, torch.Generator().manual_seed(2))
    for cfg in (_cfg(stage="estimate"), _cfg(csgm="own")):
        res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=0)
        assert res.selection["rounds_run"] is True
        assert "round2" in res.selection["candidates"] and res.layer == 2
        assert not bool(res.candidates.isnan().any())
