"""Tests of the exact l1-ball projections, against an independent bisection reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ilo import projections
from ilo.projections import project_l1_ball, project_l1_deviation

METHODS = ["active-set", "sort"]
SETTINGS = settings(max_examples=60, deadline=None)


# -- independent reference ------------------------------------------------------------------
def reference_projection(v: np.ndarray, r: float) -> np.ndarray:
    """Project one vector by solving ``Σ max(|v| - θ, 0) = r`` for θ with bisection (float64)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    a = np.abs(v)
    if a.sum() <= r:
        return v.copy()
    lo, hi = 0.0, float(a.max())  # f(lo) > r >= f(hi) = 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(a - mid, 0.0).sum() > r:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(a - 0.5 * (lo + hi), 0.0)


def l1(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).abs().sum(1, dtype=torch.float64)


finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
batches = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=finite)
radii = st.floats(0, 60, allow_nan=False, width=64)


# -- agreement with the reference -----------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(v=batches, r=radii)
def test_matches_bisection_reference_float64(method, v, r):
    p = project_l1_ball(torch.from_numpy(v), r, method=method).numpy()
    for b in range(v.shape[0]):
        ref = reference_projection(v[b], r)
        np.testing.assert_allclose(p[b], ref, rtol=0, atol=1e-9 * (1 + np.abs(v[b]).max()))


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(v=batches, r=radii)
def test_matches_reference_float32(method, v, r):
    v32 = torch.from_numpy(v).float()
    p = project_l1_ball(v32, r, method=method)
    assert p.dtype == torch.float32
    for b in range(v.shape[0]):
        ref = reference_projection(v32[b].double().numpy(), r)
        np.testing.assert_allclose(p[b].double().numpy(), ref, rtol=0, atol=1e-4 * (1 + np.abs(v[b]).max()))


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(v=batches, r=radii)
def test_output_inside_ball(method, v, r):
    p = project_l1_ball(torch.from_numpy(v), r, method=method)
    assert bool((l1(p) <= r + 1e-9 * (1 + r)).all())
    # Shrinkage never flips a sign nor grows an entry.
    vt = torch.from_numpy(v)
    assert bool((p * vt >= 0).all()) and bool((p.abs() <= vt.abs()).all())


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(v=batches, r=radii, seed=st.integers(0, 2**31 - 1))
def test_optimality_condition(method, v, r, seed):
    """``p = P(v)`` iff ``<v - p, q - p> <= 0`` for every feasible ``q`` (variational inequality)."""
    vt = torch.from_numpy(v)
    p = project_l1_ball(vt, r, method=method)
    g = torch.Generator().manual_seed(seed)
    for _ in range(5):
        q = torch.randn(vt.shape, generator=g, dtype=torch.float64)
        q = q * (r * torch.rand(vt.shape[0], 1, generator=g, dtype=torch.float64) / l1(q)[:, None])
        inner = ((vt - p) * (q - p)).sum(1)
        scale = (1 + vt.abs().max()) * (1 + r)
        assert bool((inner <= 1e-9 * scale).all()), inner


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(v=batches, r=arrays(np.float64, 4, elements=radii))
def test_per_sample_radii(method, v, r):
    r = torch.from_numpy(r[: v.shape[0]])
    vt = torch.from_numpy(v)
    p = project_l1_ball(vt, r, method=method)
    for b in range(v.shape[0]):
        alone = project_l1_ball(vt[b : b + 1], float(r[b]), method=method)
        torch.testing.assert_close(p[b : b + 1], alone, rtol=0, atol=1e-12)
        np.testing.assert_allclose(p[b].numpy(), reference_projection(v[b], float(r[b])), atol=1e-8 * (1 + abs(v[b]).max()))


# -- exact behaviours ----------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_inside_points_unchanged_exactly(method):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 3, 7, 7, generator=g)
    norms = l1(v)
    r = norms.clone()
    r[0] *= 1.5  # strictly inside
    r[2] = norms[2]  # exactly on the sphere
    r[[1, 3, 4]] *= 0.5  # outside: must move
    p = project_l1_ball(v, r, method=method)
    for b in (0, 2):
        assert torch.equal(p[b], v[b])
    for b in (1, 3, 4):
        assert not torch.equal(p[b], v[b])
        assert abs(float(l1(p[b : b + 1])) - float(r[b])) < 1e-4 * float(r[b])
    assert p.shape == v.shape and p.data_ptr() != v.data_ptr()


def test_all_inside_skips_the_threshold_search(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("threshold search must not run when every sample is inside")

    monkeypatch.setitem(projections.METHODS, "sort", fail)
    monkeypatch.setitem(projections.METHODS, "active-set", fail)
    v = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    for method in METHODS:
        assert torch.equal(project_l1_ball(v, float(l1(v).max()) + 1, method=method), v)
    with pytest.raises(AssertionError, match="must not run"):
        project_l1_ball(v, 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_radius_zero_gives_zeros(method):
    v = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(2))
    p = project_l1_ball(v, 0.0, method=method)
    assert torch.equal(p, torch.zeros_like(p))
    p = project_l1_ball(v, torch.tensor([0.0, 1.0, 0.0]), method=method)
    assert torch.equal(p[0], torch.zeros_like(p[0])) and torch.equal(p[2], torch.zeros_like(p[2]))
    assert abs(float(l1(p[1:2])) - 1.0) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_ties_and_known_values(method):
    v = torch.ones(2, 8, dtype=torch.float64)
    v[1] = -v[1]
    p = project_l1_ball(v, 2.0, method=method)
    torch.testing.assert_close(p, v * 0.25, rtol=0, atol=1e-15)
    v = torch.tensor([[3.0, -1.0, 0.5, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(project_l1_ball(v, 3.0, method=method), torch.tensor([[2.5, -0.5, 0.0, 0.0]], dtype=torch.float64))


def test_methods_agree_on_feature_map_sizes():
    g = torch.Generator().manual_seed(3)
    v = torch.randn(4, 32, 16, 16, generator=g) * torch.rand(4, 1, 1, 1, generator=g)
    v[0, :8] = 0.5  # many ties
    v[1] = torch.tan(torch.pi * (torch.rand(v[1].shape, generator=g) - 0.5))  # Cauchy: heavy tails
    for frac in (1e-3, 0.1, 0.5, 0.99):
        r = l1(v) * frac
        fast = project_l1_ball(v, r, method="active-set")
        ref = project_l1_ball(v, r, method="sort")
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5 * float(v.abs().max()))
        torch.testing.assert_close(l1(fast), r, rtol=1e-4, atol=1e-4)


def test_does_not_modify_input():
    v = torch.randn(2, 30, generator=torch.Generator().manual_seed(4))
    before = v.clone()
    project_l1_ball(v, 1.0)
    project_l1_deviation(v, torch.zeros_like(v), 1.0)
    assert torch.equal(v, before)


# -- deviation ---------------------------------------------------------------------------
@SETTINGS
@given(x=batches, seed=st.integers(0, 2**31 - 1), r=radii)
def test_deviation_is_shifted_projection(x, seed, r):
    xt = torch.from_numpy(x)
    c = torch.randn(xt.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    p = project_l1_deviation(xt, c, r)
    torch.testing.assert_close(p, c + project_l1_ball(xt - c, r), rtol=0, atol=1e-12)
    assert bool((l1(p - c) <= r + 1e-9 * (1 + r + float(xt.abs().max()))).all())


def test_deviation_inside_returns_x_bitwise_and_broadcasts_center():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 4, 4, generator=g)
    c = torch.randn(1, 2, 4, 4, generator=g)
    dev = l1(x - c)
    r = dev.clone()
    r[1] *= 0.25
    p = project_l1_deviation(x, c, r)
    assert torch.equal(p[0], x[0]) and torch.equal(p[2], x[2])
    assert abs(float(l1(p[1:2] - c)) - float(r[1])) < 1e-4 * float(r[1])
    assert torch.equal(project_l1_deviation(x, c, float(dev.max()) * 2), x)


# -- exceptions ----------------------------------------------------------------------------
def test_exceptions():
    v = torch.randn(2, 5)
    with pytest.raises(ValueError, match=">= 0"):
        project_l1_ball(v, -1.0)
    with pytest.raises(ValueError, match=">= 0"):
        project_l1_ball(v, float("nan"))
    with pytest.raises(ValueError, match="tensor"):
        project_l1_ball(v, torch.ones(3))
    with pytest.raises(TypeError, match="floating"):
        project_l1_ball(torch.ones(2, 5, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="method"):
        project_l1_ball(v, 0.1, method="bogus")
    with pytest.raises(ValueError, match="batch"):
        project_l1_ball(torch.tensor(3.0), 1.0)
