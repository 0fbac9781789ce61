"""Named random streams (ilo.rng): one stream per (seed, purpose, index); purposes never collide."""

from __future__ import annotations

import pytest
import torch

from ilo.pipeline import ProblemSpec, build_problem, truth_from_seeds
from ilo.rng import PURPOSES, stream, stream_seed
from ilo.solvers import CSGMConfig, csgm
from ilo.solvers.tracking import stack_latents


def test_streams_are_deterministic_and_distinct():
    keys = [(s, p, *i) for s in (0, 1, 2**40) for p in PURPOSES for i in ((), (0,), (1,), (0, 1))]
    seeds = [stream_seed(*k) for k in keys]
    assert len(set(seeds)) == len(keys) and all(0 <= v < 2**63 for v in seeds)
    assert seeds == [stream_seed(*k) for k in keys]
    a, b = torch.rand(4, generator=stream(3, "noise", 2)), torch.rand(4, generator=stream(3, "noise", 2))
    assert torch.equal(a, b)


def test_exceptions():
    with pytest.raises(ValueError, match="purpose"):
        stream_seed(0, "noize")
    with pytest.raises(ValueError, match=">= 0"):
        stream_seed(-1, "noise")


def test_solver_seed_equal_to_truth_seed_does_not_start_at_the_truth(tiny_dcgan):
    G = tiny_dcgan
    for seed in (0, 7, 600_000):
        truth_latent = G.sample_latent(1, stream(seed, "truth"))["z"]
        starts = stack_latents(G, [seed], 4)["z"]  # [4, nz, 1, 1]
        assert (starts - truth_latent).flatten(1).abs().amax(1).min() > 0.1
    truth = truth_from_seeds(G, [7])
    res = csgm(truth, _identity(G), G, CSGMConfig(steps=0, restarts=1), seeds=7)
    assert float((res.image - truth).abs().max()) > 1e-3  # the start is not the true face (equal streams: exactly 0)


def _identity(G):
    from ilo.operators import Identity

    return Identity(tuple(G.image_shape))


def test_adding_an_image_does_not_change_another_images_streams(tiny_dcgan):
    G = tiny_dcgan
    # solver starts: per image and per restart, whatever the batch or the number of restarts
    one, two = stack_latents(G, [5], 2), stack_latents(G, [5, 6], 2)
    assert torch.equal(one["z"], two["z"][:2])
    assert torch.equal(stack_latents(G, [5], 1)["z"], stack_latents(G, [5], 3)["z"][:1])
    # truths, masks and noise of image i of a problem
    x3 = truth_from_seeds(G, [1, 2, 3])
    assert torch.equal(truth_from_seeds(G, [2]), x3[1:2])
    for spec in (ProblemSpec("inpaint", observed=0.3), ProblemSpec("denoise", sigma=25.0)):
        small = build_problem(spec, G, seed=4, truth=x3[:2])
        large = build_problem(spec, G, seed=4, truth=x3)
        torch.testing.assert_close(small.y, large.y[:2])
        alone = build_problem(spec, G, seed=4, start=2, truth=x3[2:])
        torch.testing.assert_close(alone.y, large.y[2:])
    # noise and operator streams of one image are unrelated (different purposes)
    assert not torch.equal(torch.rand(8, generator=stream(4, "noise")), torch.rand(8, generator=stream(4, "operator")))
