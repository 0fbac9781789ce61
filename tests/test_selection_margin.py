"""The held-out choice with a margin for the estimate's noise (SelectionConfig.z): units, paired
standard errors, the rule on constructed estimates, and what self-tuning records."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import CompressedSensing, Inpainting, SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned
from ilo.solvers.selection import choose, held_out_units, paired_se, split, unit_errors

SHAPE = (3, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: thousands of tiny ops run faster on one thread


def _cfg(z):
    base = ILOConfig(csgm=CSGMConfig(steps=6, restarts=2, lr=0.05), rounds=(RoundConfig(1, 6, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    # the margin rule alone (blends: test_selection_blend.py), against the lowest estimate on every image
    # however few units are held out (sparse_units 0; the first classical method below that: test_selection_sparse.py)
    return replace(cfg, selection=replace(cfg.selection, z=z, blend=(), sparse_units=0))


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _units(values):
    """``[K, 1, U]`` per-unit errors of K candidates on one image."""
    return torch.tensor(values, dtype=torch.float64).unsqueeze(1)


def test_a_lower_mean_with_a_huge_standard_error_loses_to_the_reference():
    g = torch.Generator().manual_seed(0)
    ref = 1.0 + 0.01 * torch.randn(200, generator=g, dtype=torch.float64)
    noisy = ref - 0.05 + 2.0 * torch.randn(200, generator=g, dtype=torch.float64)  # lower mean, huge spread
    u = torch.stack([ref, noisy]).unsqueeze(1)
    est = u.mean(2)
    se = paired_se(u, torch.tensor([0]))
    assert float(se[0, 0]) == 0 and float(se[1, 0]) > 0.1
    eligible = torch.ones_like(est, dtype=torch.bool)
    assert float(est[1, 0]) < float(est[0, 0])  # the lowest noisy mean ...
    assert choose(est, eligible, se, 0.0).tolist() == [1]  # ... is today's choice
    assert choose(est, eligible, se, 1.0).tolist() == [0]  # the margin keeps the reference


def test_a_clearly_better_candidate_wins_and_ineligible_ones_never_do():
    g = torch.Generator().manual_seed(1)
    ref = 1.0 + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)
    better = 0.5 * ref  # paired: better on every unit
    u = torch.stack([ref, better, better - 0.2]).unsqueeze(1)
    est, se = u.mean(2), paired_se(u, torch.tensor([0]))
    assert choose(est, None, se, 3.0).tolist() == [2]
    eligible = torch.tensor([[True], [True], [False]])
    assert choose(est, eligible, se, 3.0).tolist() == [1]
    est_nan = est.clone()
    est_nan[2] = float("nan")  # a skipped candidate
    assert choose(est_nan, None, se, 3.0).tolist() == [1]


def test_paired_se_is_the_standard_error_of_the_differences():
    u = _units([[1.0, 2.0, 4.0, 7.0], [0.0, 0.0, 0.0, 0.0]])
    d = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    assert float(paired_se(u, torch.tensor([1]))[0, 0]) == pytest.approx(float(d.std() / 2))
    u[0, 0, 3] = float("nan")  # a unit with nothing held out is left out
    u[1, 0, 3] = float("nan")
    assert float(paired_se(u, torch.tensor([1]))[0, 0]) == pytest.approx(float(d[:3].std() / 3 ** 0.5))
    one = _units([[1.0, *[float("nan")] * 3], [0.0, *[float("nan")] * 3], [0.0, *[float("nan")] * 3]])
    # one held-out unit: no spread to judge by; a different candidate never beats the reference by a margin
    assert paired_se(one, torch.tensor([1]))[:, 0].tolist() == [float("inf"), 0.0, 0.0]
    lower = _units([[0.5, *[float("nan")] * 3], [1.0, *[float("nan")] * 3]])  # lower on its one unit
    se = paired_se(lower, torch.tensor([1]))
    assert choose(lower.nanmean(2), None, se, 0.0).tolist() == [0] and choose(lower.nanmean(2), None, se, 0.5).tolist() == [1]


def _box():
    return Inpainting.box(SHAPE, 5, 5, 11, 11)


@pytest.mark.parametrize("op, patch", [(Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0)), None),
                                       (_box(), 2), (SuperResolution(SHAPE, 2), None),
                                       (CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0)), None)],
                         ids=["inpaint", "box", "superres", "cs"])
def test_unit_errors_average_to_the_held_out_estimate(op, patch):
    y = op(_rand((2, *SHAPE), 0))
    _, _, val, _ = split(op, y, [3, 4], SelectionConfig(holdout=0.3, patch=patch or 8))
    cands = torch.stack([_rand((2, *SHAPE), 5 + k) for k in range(3)])
    units = held_out_units(y, patch)
    u = unit_errors(val, cands, y, units)
    est = torch.stack([val.measurement_loss(c, y) for c in cands])
    torch.testing.assert_close(u.nanmean(2), est, rtol=1e-5, atol=1e-7)
    held = (val.keep if hasattr(val, "keep") else val.mask.expand_as(y))
    n_units = [len(units.expand_as(y)[i][held[i] > 0].unique()) for i in range(2)]
    assert (~u[0].isnan()).sum(1).tolist() == n_units
    if patch:  # whole patches: far fewer units than held-out pixels
        assert n_units[0] < held[0, 0].sum() / 2


@pytest.mark.parametrize("op", [Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0)),
                                CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))],
                         ids=["inpaint", "cs"])
def test_self_tuning_records_the_reference_and_standard_errors_and_z0_is_the_lowest_estimate(tiny_dcgan, op):
    y = op(_rand((2, *SHAPE), 3))
    plain = solve(y, op, tiny_dcgan, "ilo", _cfg(0.0), seeds=[4, 9]).selection
    names, alone = plain["candidates"], plain["classical"]
    est, se = torch.tensor(plain["estimated_mse"]).T, torch.tensor(plain["estimated_se"]).T  # [K, B]
    eligible = torch.tensor(plain["eligible"]).T
    assert plain["z"] == 0.0 and plain["units"] == ("pixels" if isinstance(op, Inpainting) else "measurements")
    # z = 0: today's choice, the eligible candidate with the lowest estimate
    low = est.nan_to_num(nan=float("inf")).masked_fill(~eligible, float("inf")).argmin(0)
    assert plain["choice"] == [names[k] for k in low.tolist()]
    for b, r in enumerate(plain["reference"]):  # the classical method alone with the lowest estimate, SE 0
        assert r in alone and est[names.index(r), b] == min(est[names.index(m), b] for m in alone)
        assert se[names.index(r), b] == 0
    big = solve(y, op, tiny_dcgan, "ilo", _cfg(1e6), seeds=[4, 9]).selection
    torch.testing.assert_close(torch.tensor(big["estimated_mse"]).T, est, rtol=0, atol=0, equal_nan=True)
    assert big["z"] == 1e6
    score = (est + 1e6 * se).nan_to_num(nan=float("inf")).masked_fill(~eligible, float("inf"))
    assert big["choice"] == [names[k] for k in score.argmin(0).tolist()]
    assert all(c in alone or se[names.index(c), b] == 0 for b, c in enumerate(big["choice"]))


def test_the_box_records_patches_as_units(tiny_dcgan):
    op = _box()
    cfg = _cfg(1.0)
    cfg = replace(cfg, selection=replace(cfg.selection, patch=2))
    sel = solve(op(_rand((1, *SHAPE), 3)), op, tiny_dcgan, "ilo", cfg, seeds=0).selection
    assert sel["units"] == "2x2 patches" and sel["stage_rule"] == "estimate" and "eligible" not in sel


def test_z_validates():
    with pytest.raises(ValueError, match="z=-1"):
        SelectionConfig(z=-1.0)


def test_the_first_classical_method_as_reference(tiny_dcgan):
    """``reference="first"``: the task's first classical method is the reference on every image,
    so the other classical method too needs the margin; with a huge margin nothing but the
    reference (or a candidate equal to it on every held-out unit) is chosen."""
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(_rand((2, *SHAPE), 3))
    cfg = _cfg(1e6)
    sel = solve(y, op, tiny_dcgan, "ilo", replace(cfg, selection=replace(cfg.selection, reference="first")),
                seeds=[4, 9]).selection
    first = sel["classical"][0]
    assert first == "biharmonic" and sel["reference"] == [first, first]  # half observed: no Gaussian prior
    se = torch.tensor(sel["estimated_se"]).T
    names = sel["candidates"]
    assert bool((se[names.index(first)] == 0).all()) and bool((se[names.index("tv-inpaint")] > 0).all())
    assert all(c == first or se[names.index(c), b] == 0 for b, c in enumerate(sel["choice"]))
    with pytest.raises(ValueError, match="reference must be one of lowest, first"):
        SelectionConfig(reference="best")
