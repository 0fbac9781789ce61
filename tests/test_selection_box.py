"""The held-out part next to a box-shaped hole (SelectionConfig.ring): the whole ring around the
hole, its units, a constructed image where it judges the hole better than half the band's
patches, and reproducibility."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import Inpainting
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.classical import classical
from ilo.solvers.config import SelectionConfig, self_tuned
from ilo.solvers.selection import held_out_units, split, unit_errors

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: thousands of tiny ops run faster on one thread

SHAPE = (3, 16, 16)


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("width", [1, 2, 3])
def test_the_ring_holds_out_exactly_the_observed_pixels_within_its_width_of_the_hole(width):
    op = Inpainting.box(SHAPE, 5, 6, 11, 10)  # columns [5, 11), rows [6, 10)
    y = op(_rand((2, *SHAPE), 0))
    fit, y_fit, val, rec = split(op, y, [0, 1], SelectionConfig(ring=width, patch=2))
    rows, cols = torch.arange(16)[:, None], torch.arange(16)[None, :]
    near = (rows >= 6 - width) & (rows < 10 + width) & (cols >= 5 - width) & (cols < 11 + width)
    expect = (near & op.mask[0, 0].bool()).float()
    for i in range(2):
        assert torch.equal(val.mask[i, 0], expect)
    assert torch.equal(fit.mask + val.mask, op.mask.expand(2, -1, -1, -1))  # a partition of the observed pixels
    assert torch.equal(y_fit, y * fit.mask)
    assert rec["kind"].startswith("patches") and rec["held_out"] == [float(expect.sum())] * 2


def test_the_rings_units_are_the_patches_it_meets():
    op = Inpainting.box(SHAPE, 6, 6, 10, 10)
    y = op(_rand((1, *SHAPE), 0))
    _, _, val, _ = split(op, y, [0], SelectionConfig(ring=2, patch=4))
    units = held_out_units(y, 4)
    u = unit_errors(val, _rand((2, 1, *SHAPE), 1), y, units)  # [K, B, U]
    # the ring spans rows and columns [4, 12): the 4 x 4 grid's blocks (1, 1) ... (2, 2), not the rest
    met = [1 * 4 + 1, 1 * 4 + 2, 2 * 4 + 1, 2 * 4 + 2]
    assert (~u[0, 0].isnan()).nonzero().flatten().tolist() == met


def test_ring_and_box_margin_validate():
    with pytest.raises(ValueError, match="ring=-1"):
        SelectionConfig(ring=-1)
    with pytest.raises(ValueError, match="box_z=-1"):
        SelectionConfig(box_z=-1.0)


def test_a_bar_across_the_hole_the_ring_judges_right_and_half_the_band_does_not():
    """A vertical bar, 5 pixels wide, crosses a 10-pixel box: biharmonic inpainting joins its
    two ends, TV inpainting cuts it (a cut is the shorter edge), 5x worse in the hole. Small
    held-out patches in the band are gaps TV closes, so the band judges TV better; the ring
    leaves gaps as long as the hole's, and judges as the hole does."""
    n = 32
    cols = torch.arange(n)[None, :].expand(n, n)
    x = torch.where((cols - 16).abs() < 3, 0.5, -0.5).expand(1, 3, n, n).contiguous()
    op = Inpainting.box((3, n, n), 11, 11, 21, 21)
    y = op(x)
    methods = ("biharmonic", "tv-inpaint")
    true = {m: float(((classical(y, op, m).image - x) ** 2).mean()) for m in methods}
    assert true["biharmonic"] < true["tv-inpaint"] / 3

    def judged(cfg):
        fit, y_fit, val, _ = split(op, y, [0], cfg)
        est = {m: float(val.measurement_loss(classical(y_fit, fit, m).image, y)) for m in methods}
        return min(est, key=est.get)

    assert judged(SelectionConfig(patch=4)) == "tv-inpaint"
    assert judged(SelectionConfig(patch=4, ring=4)) == "biharmonic"


def _cfg(**selection):
    base = ILOConfig(csgm=CSGMConfig(steps=6, restarts=2, lr=0.05), rounds=(RoundConfig(1, 6, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    return replace(cfg, selection=replace(cfg.selection, **selection))


def test_self_tuning_with_the_ring_is_reproducible_and_records_its_units(tiny_dcgan):
    op = Inpainting.box(SHAPE, 5, 5, 11, 11)
    y = op(_rand((2, *SHAPE), 3))
    cfg = _cfg(ring=2, patch=2)
    a = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    b = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    assert a.selection["units"] == "2x2 patches" and a.selection["stage_rule"] == "estimate"
    assert a.selection["choice"] == b.selection["choice"]
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(a.selection["estimated_mse"]), torch.tensor(b.selection["estimated_mse"]),
                               rtol=0, atol=0, equal_nan=True)
    assert torch.equal(a.image * op.mask, y)  # noiseless: the observed pixels kept
    band = solve(y, op, tiny_dcgan, "ilo", _cfg(ring=0, patch=2), seeds=[4, 9]).selection
    assert band["held_out"] != a.selection["held_out"]  # the ring is another held-out part


def test_next_to_a_box_harmonic_inpainting_is_the_reference_without_blends(tiny_dcgan):
    """``reference="auto"`` next to a box: the classical methods are ``box_classical`` (here
    harmonic first; by default the generator's Gaussian prior is, tests/test_gaussian.py), the
    first alone is the margin's reference, the blends are off (``box_blend``) although ``blend``
    is on, and with a huge margin (``box_z``; ``z`` is 0) nothing but it (or a candidate equal
    to it on every held-out unit) is chosen; a random mask keeps its class's methods."""
    op = Inpainting.box(SHAPE, 5, 5, 11, 11)
    y = op(_rand((2, *SHAPE), 3))
    cfg = _cfg(reference="auto", patch=2, z=0.0, box_z=1e6, blend=(0.5,), box_csgm=None,  # no challenger
               method_challenger=False,
               box_classical=("harmonic", "tv-inpaint"))
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    sel, names = res.selection, res.selection["candidates"]
    assert sel["csgm"] == "method" and "csgm_challenger" not in sel
    assert sel["classical"] == ["harmonic", "tv-inpaint"] and sel["reference"] == ["harmonic", "harmonic"]
    assert "mean" not in names and not any(n.startswith("blend") for n in names) and sel["z"] == 1e6
    se = torch.tensor(sel["estimated_se"]).T
    k = names.index("harmonic")
    assert all(c == "harmonic" or se[names.index(c), b] == 0 for b, c in enumerate(sel["choice"]))
    torch.testing.assert_close(res.image, classical(y, op, "harmonic").image)  # observed pixels kept exactly
    assert bool((se[k] == 0).all())
    rand = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    away = solve(rand(_rand((2, *SHAPE), 3)), rand, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9]).selection
    assert away["classical"] == ["biharmonic", "tv-inpaint"]  # half observed: no Gaussian prior (gaussian_max_observed)  # away from a box: the generator's Gaussian prior too
    with pytest.raises(ValueError, match="box_classical"):
        SelectionConfig(box_classical=())
    with pytest.raises(ValueError, match="blend weights"):
        SelectionConfig(box_blend=(1.5,))


@pytest.mark.parametrize("image", ["in range", "far"])
def test_next_to_a_box_the_csgm_method_challenges_the_choice_at_its_own_margin(tiny_dcgan, image):
    """By default (``box_csgm="challenge"``) next to a box the CSGM method on all measurements
    challenges the choice with the margin ``box_csgm_z`` from ``box_csgm_min_units`` held-out
    patches: it replaces the choice exactly where its estimate plus that many standard errors
    lies below the choice's, and the output is then its (continued) solution; a random mask
    keeps the CSGM method as its stage."""
    op = Inpainting.box(SHAPE, 5, 5, 11, 11)
    x = (tiny_dcgan(tiny_dcgan.sample_latent(2, torch.Generator().manual_seed(7))).detach() if image == "in range"
         else _rand((2, *SHAPE), 3))
    y = op(x)
    res = solve(y, op, tiny_dcgan, "ilo", _cfg(patch=2), seeds=[4, 9])
    sel, ch = res.selection, res.selection["csgm_challenger"]
    assert sel["csgm"] == "challenge" and ch["run"] and min(ch["units"]) >= SelectionConfig().box_csgm_min_units
    z = SelectionConfig().box_csgm_z
    expect = [e + z * s < c for e, s, c in zip(ch["estimated_mse"], ch["estimated_se"], ch["choice_estimated_mse"])]
    assert ch["taken"] == expect
    for b, taken in enumerate(expect):
        assert (sel["choice"][b] == "csgm-method") == taken
        if taken:
            torch.testing.assert_close(res.image[b], res.candidates[-1][b] * (1 - op.mask[0]) + y[b] * op.mask[0])
    if image == "in range":
        assert any(expect)  # the generator's own images: the CSGM method wins somewhere
    rand = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    assert solve(rand(x), rand, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9]).selection["csgm"] == "method"
    with pytest.raises(ValueError, match="box_csgm"):
        SelectionConfig(box_csgm="auto")
    with pytest.raises(ValueError, match="box_csgm_z"):
        SelectionConfig(box_csgm_min_units=0)


def test_next_to_a_box_the_mean_reference_is_built_from_the_refit(tiny_dcgan):
    """``reference="mean"``: the candidate ``"mean"`` (the equal mean of the
    classical methods alone and ILO's own output, :func:`mean_candidate`) is the margin's
    reference; with a huge margin next to the box (``box_z``; ``z`` is 0) nothing but it (or a
    candidate equal to it on every held-out unit) is chosen."""
    op = Inpainting.box(SHAPE, 5, 5, 11, 11)
    y = op(_rand((2, *SHAPE), 3))
    res = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="mean", patch=2, z=0.0, box_z=1e6, blend=(), box_csgm=None,
                                               method_challenger=False), seeds=[4, 9])
    sel, names = res.selection, res.selection["candidates"]
    assert sel["reference"] == ["mean", "mean"] and names[-1] == "mean" and sel["z"] == 1e6  # the box's margin
    k = names.index("mean")
    for b in range(2):
        of = sel["mean_of"][b]
        assert of[:-1] == sel["classical"] and of[-1] == sel["ilo_choice"][b]
        parts = torch.stack([res.candidates[names.index(n)][b] for n in of])
        torch.testing.assert_close(res.candidates[k][b], parts.mean(0))
    se = torch.tensor(sel["estimated_se"]).T
    assert bool((se[k] == 0).all())
    assert all(c == "mean" or se[names.index(c), b] == 0 for b, c in enumerate(sel["choice"]))
    assert torch.equal(res.image * op.mask, y)


def test_away_from_a_box_the_reference_and_margin_are_the_usual_ones(tiny_dcgan):
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(_rand((2, *SHAPE), 3))
    # box_z: box only; sparse_units 0: "lowest" on every image however few are held out (test_selection_sparse.py)
    auto = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="auto", box_z=1e6, sparse_units=0), seeds=[4, 9])
    lowest = solve(y, op, tiny_dcgan, "ilo", _cfg(reference="lowest"), seeds=[4, 9])
    assert "mean" not in auto.selection["candidates"] and "mean_of" not in auto.selection
    assert auto.selection["choice"] == lowest.selection["choice"]
    torch.testing.assert_close(auto.image, lowest.image, rtol=0, atol=0)


def test_the_real_face_bench_passes_the_held_out_flags(tiny_dcgan, tmp_path, monkeypatch):
    import json

    from ilo.bench import realfaces_eval as rfe
    from ilo.images import photo

    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: (faces, ["astronaut", "grace_hopper"]))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = rfe.main(["--split", "tuning", "--steps", "6", "--restarts", "1", "--keys", "inpaint 0.3,box 0.333333",
                        "--patch", "2", "--ring", "2", "--box-z", "3", "--holdout", "0.3", "--json", str(path)])
    meta = json.loads(path.read_text())["meta"]
    assert (meta["ring"], meta["box_z"], meta["holdout"]) == (2, 3.0, 0.3)
    box, inpaint = results["box 0.333333"]["selection"], results["inpaint 0.3"]["selection"]
    assert box["reference"] == ["gaussian", "gaussian"] and box["z"] == 3.0 and box["units"] == "2x2 patches"
    assert set(inpaint["reference"]) <= {"gaussian", "biharmonic", "tv-inpaint"} and inpaint["z"] == SelectionConfig().z
