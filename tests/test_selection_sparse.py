"""The margin's reference where few units are held out (SelectionConfig.sparse_units, session 9):
the first classical method instead of the one with the lowest held-out estimate, per image; every
other case chooses bit for bit as before."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import CompressedSensing, Inpainting, SuperResolution
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned
from ilo.solvers.selection import choose, first_reference, paired_se

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: thousands of tiny ops run faster on one thread

SHAPE = (3, 16, 16)
NAN = float("nan")


def _cfg(**selection):
    base = ILOConfig(csgm=CSGMConfig(steps=6, restarts=2, lr=0.05), rounds=(RoundConfig(1, 6, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, **selection))


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _checkerboard(n=16, side=8):
    """Two 16-px images of 8-px squares: piecewise constant, where TV inpainting is the better
    classical method and has the lower held-out estimate."""
    r = torch.arange(n)
    return torch.where((r[:, None] // side + r[None, :] // side) % 2 == 0, 0.6, -0.6).expand(2, 3, n, n).contiguous()


def test_first_reference_counts_each_images_held_out_units():
    errors = torch.tensor([[1.0, 2.0, NAN, NAN], [1.0, 2.0, 3.0, NAN], [0.5, NAN, NAN, NAN]])  # 2, 3, 1 units
    assert first_reference("auto", errors, 3).tolist() == [True, False, True]  # fewer than 3: strict
    assert first_reference("auto", errors, 0).tolist() == [False, False, False]
    assert first_reference("first", errors, 0).tolist() == [True, True, True]
    assert first_reference("lowest", errors, 100).tolist() == [False, False, False]


def test_sparse_units_validates_and_defaults_between_the_5_and_10_percent_counts():
    with pytest.raises(ValueError, match="sparse_units=-1"):
        SelectionConfig(sparse_units=-1)
    # 64-px faces hold out ~31 pixels at 5 % (15 % of 205 observed) and ~61 at 10 %
    assert 0.15 * 0.05 * 64 * 64 < SelectionConfig().sparse_units < 0.15 * 0.10 * 64 * 64


def test_a_lucky_unit_makes_tv_lowest_and_the_first_reference_keeps_biharmonic():
    """Constructed per-unit held-out errors of (CSGM, biharmonic, TV) on one image, 30 units:
    TV's estimate is the lowest only through one unit it happens to fit far better, and is
    worse on the other 29. Against the lowest reference (TV) biharmonic must beat TV by 1.5
    standard errors and does not, so TV is chosen; with the first reference (``"auto"``, 30
    units < 45) TV must beat biharmonic by the margin, and does not."""
    u = 30
    bih = torch.full((u,), 1.0)
    tv = torch.full((u,), 1.05)
    tv[0] = -0.0  # one unit TV fits exactly
    bih[0] = 2.5
    csgm = torch.full((u,), 1.3)
    errors = torch.stack([csgm, bih, tv])[:, None]  # [K, B, U]
    est = errors.mean(2)  # [K, B]
    assert est[2, 0] < est[1, 0]  # TV's estimate is the lowest ...
    names, methods = ["csgm", "biharmonic", "tv-inpaint"], ("biharmonic", "tv-inpaint")
    lowest = torch.tensor([2])
    picks = {}
    for reference in ("lowest", "auto"):
        ref = torch.where(first_reference(reference, errors[lowest, torch.arange(1)], 45), names.index(methods[0]), lowest)
        picks[reference] = names[int(choose(est, se=paired_se(errors, ref), z=1.5)[0])]
    assert picks == {"lowest": "tv-inpaint", "auto": "biharmonic"}  # ... on 1 unit of 30, so the first is kept


def test_sparse_random_inpainting_takes_the_first_method_as_reference_bit_for_bit(tiny_dcgan):
    """Half the pixels of a 16-px checkerboard observed (~18 held-out pixels per image): TV has
    the lower held-out estimate on both images, so ``"lowest"`` takes it as the reference; the
    default (``"auto"``, fewer than 45 units) takes biharmonic (half observed: no Gaussian prior)
    and is ``"first"`` bit for bit."""
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(_checkerboard())
    lowest = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="lowest"), seeds=[4, 9]).selection
    assert lowest["reference"] == ["tv-inpaint", "tv-inpaint"]
    auto = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9])
    first = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="first"), seeds=[4, 9])
    assert auto.selection["reference"] == ["biharmonic", "biharmonic"]
    assert auto.selection["choice"] == first.selection["choice"]
    torch.testing.assert_close(auto.image, first.image, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(auto.selection["estimated_se"]), torch.tensor(first.selection["estimated_se"]),
                               rtol=0, atol=0, equal_nan=True)
    # with at least sparse_units held out (here 5) the default is "lowest" again, bit for bit
    many = solve(y, op, tiny_dcgan, "ilo", _cfg(sparse_units=5), seeds=[4, 9])
    low = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="lowest"), seeds=[4, 9])
    assert many.selection["reference"] == ["tv-inpaint", "tv-inpaint"] and many.selection["choice"] == low.selection["choice"]
    torch.testing.assert_close(many.image, low.image, rtol=0, atol=0)


@pytest.mark.parametrize("op", [CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0)),
                                Inpainting.box(SHAPE, 5, 5, 11, 11)], ids=["cs", "box"])
def test_other_tasks_choose_bit_for_bit_as_before(tiny_dcgan, op):
    """CS has one classical method, so its first is its lowest (here with fewer than 45
    held-out units, the rule active); next to a box the reference is the first of
    ``box_classical`` (the generator's Gaussian prior) under either rule."""
    y = op(_rand((2, *SHAPE), 3))
    kw = {"patch": 2} if isinstance(op, Inpainting) else {}
    new = solve(y, op, tiny_dcgan, "ilo", _cfg(**kw), seeds=[4, 9])
    old = solve(y, op, tiny_dcgan, "ilo", _cfg(sparse_units=0, **kw), seeds=[4, 9])  # "lowest" on every image: before
    assert new.selection["reference"] == old.selection["reference"] and new.selection["choice"] == old.selection["choice"]
    torch.testing.assert_close(new.image, old.image, rtol=0, atol=0)
    if isinstance(op, Inpainting):
        assert new.selection["reference"] == ["gaussian", "gaussian"]


def test_super_resolution_with_few_held_out_pixels_takes_the_gaussian_prior_as_reference(tiny_dcgan):
    """Super-resolution's classical methods are the Gaussian prior, then TV: with fewer than
    ``sparse_units`` held-out low-resolution pixels (x4 of 16 px: a few) the reference is the
    first, the prior; under ``"lowest"`` it is whichever has the lower held-out estimate."""
    op = SuperResolution(SHAPE, 4)
    y = op(_rand((2, *SHAPE), 3))
    new = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9]).selection
    low = solve(y, op, tiny_dcgan, "ilo", _cfg(sparse_units=0), seeds=[4, 9]).selection
    assert new["classical"] == ["gaussian", "tv-superres"] and new["reference"] == ["gaussian", "gaussian"]
    est = torch.tensor(low["estimated_mse"]).T  # [K, B]
    names = low["candidates"]
    lower = ["gaussian" if est[names.index("gaussian"), b] <= est[names.index("tv-superres"), b] else "tv-superres"
             for b in range(2)]
    assert low["reference"] == lower


def test_inrange_runs_a_task_at_another_level(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    import json

    from ilo.bench import inrange

    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = inrange.main(["--faces", "1", "--steps", "4", "--restarts", "1", "--tasks", "inpaint", "--level", "0.3",
                            "--json", str(path)])
    assert abs(results["inpaint"]["level"] - 0.3) < 0.02 and json.loads(path.read_text())["meta"]["level"] == 0.3
