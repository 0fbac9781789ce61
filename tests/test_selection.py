"""ILO's range extension and self-tuning (ilo.solvers.selection): held-out splits, SURE, records."""

from dataclasses import replace

import pytest
import torch

from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.operators.base import GaussianNoise
from ilo.rng import PURPOSES
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import DeviationConfig, SelectionConfig, self_tuned
from ilo.solvers.classical import RESIDUAL_METHODS
from ilo.solvers.selection import HeldOut, candidate_names, candidate_stages, split

SHAPE = (3, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: thousands of tiny ops run faster on one thread


def _cfg(**kw):
    base = ILOConfig(csgm=CSGMConfig(steps=6, restarts=2, lr=0.05), rounds=(RoundConfig(1, 6, 0.05, 5.0),))
    return self_tuned(base, weights=(0.01, 0.1), steps=10) if not kw else replace(base, **kw)


def _truth(G, n=2):
    return G(G.sample_latent(n, torch.Generator().manual_seed(7))).detach()


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("base", [SuperResolution(SHAPE, 4),
                                  CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))])
def test_held_out_operator_is_adjoint_and_ignores_the_rest(base):
    x = _rand((2, *SHAPE), 1)
    y = base.A(_rand((2, *SHAPE), 2))
    keep = (torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    op = HeldOut(base, keep)
    assert float((op.A(x) * y).sum()) == pytest.approx(float((x * op.A_adjoint(y)).sum()), rel=1e-4)
    changed = y + 5 * (1 - keep)  # only entries outside `keep` differ
    assert torch.allclose(op.measurement_loss(x, y), op.measurement_loss(x, changed))
    assert not torch.allclose(HeldOut(base, 1 - keep).measurement_loss(x, y),
                              HeldOut(base, 1 - keep).measurement_loss(x, changed))
    rep = op.batch_repeat(3)
    assert torch.allclose(rep.A(x.repeat_interleave(3, 0)), op.A(x).repeat_interleave(3, 0))


def test_random_split_is_a_partition_per_image_seed():
    masks = torch.cat([Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(i)).mask for i in range(3)])
    op = Inpainting(SHAPE, masks)
    y = op(_rand((3, *SHAPE), 0))
    fit, y_fit, val, rec = split(op, y, [10, 11, 12], SelectionConfig(holdout=0.3))
    assert torch.equal(fit.mask + val.mask, masks)  # disjoint, and together the observed pixels
    assert torch.equal(y_fit, y * fit.mask)
    frac = val.mask.sum() / masks.sum()
    assert 0.15 < float(frac) < 0.45
    alone = split(Inpainting(SHAPE, masks[1:2]), y[1:2], [11], SelectionConfig(holdout=0.3))[2]
    assert torch.equal(alone.mask[0], val.mask[1])  # an image's split does not depend on its batch
    assert rec["seeds"] == [10, 11, 12] and rec["stream"] in PURPOSES


def test_box_split_holds_out_patches_next_to_the_hole():
    op = Inpainting.box(SHAPE, 5, 5, 11, 11)
    y = op(_rand((1, *SHAPE), 0))
    fit, _, val, rec = split(op, y, [0], SelectionConfig(patch=2))
    held = val.mask[0, 0].nonzero()
    assert len(held) > 0 and bool((fit.mask * val.mask).sum() == 0)
    # every held-out pixel is observed and within 2 pixels (Chebyshev) of the box [5, 11)
    assert bool(((held >= 3) & (held < 13)).all())
    assert not bool(val.mask[0, 0, 5:11, 5:11].any())
    assert rec["kind"].startswith("patches")


def test_superres_split_holds_out_whole_low_res_pixels():
    op = SuperResolution(SHAPE, 2)
    y = op(_rand((2, *SHAPE), 0))
    fit, y_fit, val, _ = split(op, y, [0, 1], SelectionConfig(holdout=0.3))
    assert torch.equal(fit.keep + val.keep, torch.ones_like(y))
    assert torch.equal(val.keep, val.keep[:, :1].expand_as(val.keep))  # all channels together


@pytest.mark.parametrize("holdout", [0.001, 0.999])
def test_a_split_of_few_low_res_pixels_keeps_whole_pixels_on_both_sides(holdout):
    """2 x 2 low-resolution pixels: whatever the draw, at least one whole pixel (all its channels) is
    held out and one is left to fit (before, the split was made per channel, and a held-out channel
    made the fit's interpolation of the residual see no pixel at all)."""
    op = SuperResolution(SHAPE, 8)
    y = op(_rand((3, *SHAPE), 0))
    fit, _, val, _ = split(op, y, [0, 1, 2], SelectionConfig(holdout=holdout))
    assert torch.equal(fit.keep + val.keep, torch.ones_like(y))
    assert torch.equal(val.keep, val.keep[:, :1].expand_as(val.keep))
    per_image = val.keep[:, 0].flatten(1).sum(1)
    assert bool((per_image >= 1).all()) and bool((per_image <= 3).all())


def _one_pixel_mask():
    mask = torch.zeros(1, 1, *SHAPE[1:])
    mask[..., 3, 4] = 1
    return Inpainting(SHAPE, mask)


@pytest.mark.parametrize("make", [lambda: SuperResolution(SHAPE, 16), _one_pixel_mask,
                                  lambda: CompressedSensing(SHAPE, 1 / 768, torch.Generator().manual_seed(0))],
                         ids=["x16 on 16 px", "one observed pixel", "one measurement"])
def test_an_observation_too_small_to_split_is_refused_with_a_reason(make, tiny_dcgan):
    """One observed pixel or one measurement: nothing to hold out; the split and the self-tuned
    solve raise a ValueError that says so."""
    op = make()
    y = op(_rand((1, *SHAPE), 0))
    with pytest.raises(ValueError, match="nothing to hold out"):
        split(op, y, [0], SelectionConfig())
    with pytest.raises(ValueError, match="nothing to hold out"):
        solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=0)


def test_self_tuned_denoising_is_never_estimated_worse_than_the_input(tiny_dcgan):
    op = Denoising(SHAPE, 50)
    y = op(_truth(tiny_dcgan), torch.Generator().manual_seed(1))
    for rule in ("auto", "estimate"):
        cfg = _cfg()
        res = solve(y, op, tiny_dcgan, "ilo", replace(cfg, selection=replace(cfg.selection, stage=rule)), seeds=0)
        sel = res.selection
        names = sel["candidates"]
        stages = ["csgm"] if rule == "auto" else ["csgm", "round1"]  # "classical": the rounds are skipped
        assert names == candidate_names(stages, DeviationConfig(weights=(0.01, 0.1)), identity=True,
                                        methods=RESIDUAL_METHODS[Denoising])
        assert res.candidates.shape == (len(names), 2, *SHAPE)
        # auto under SURE: only the candidates that are functions of y alone (the stages were fitted to the
        # noise), and CSGM's solution (its estimate corrected for its latent dimension)
        allowed = names if rule == "estimate" else ["csgm", *RESIDUAL_METHODS[Denoising], "observation"]
        assert sel["stage_rule"] == ("classical" if rule == "auto" else rule)
        for i, est in enumerate(sel["estimated_mse"]):
            assert est[names.index("observation")] == pytest.approx(op.noise.sigma ** 2, rel=1e-5)  # SURE of y
            k = names.index(sel["choice"][i])
            assert sel["choice"][i] in allowed
            assert est[k] == min(est[names.index(n)] for n in allowed) <= op.noise.sigma ** 2 + 1e-9
            assert torch.equal(res.image[i], res.candidates[k, i])
        assert res.config["selection"] is sel and sel["rule"] == "sure"


def test_self_tuned_inpainting_keeps_observed_pixels_and_refits(tiny_dcgan):
    op = Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0))
    x = _truth(tiny_dcgan)
    y = op(x)
    cfg = _cfg()
    # the rule over the candidates (blends: test_selection_blend.py; the challenger: test_selection_method_challenger.py)
    cfg = replace(cfg, selection=replace(cfg.selection, blend=(), method_challenger=False))
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=0)
    m = op.mask.bool().expand_as(x)
    assert torch.equal(res.image[m], y[m])
    # the CSGM method at the whole budget (6 + 6 steps) once, on the fit part, then the refit's round; the
    # fit run's round is counted apart
    assert res.steps == 12 + 6 and res.selection["fit_run_steps"] == 6 and res.selection["csgm_steps"] == 12
    sel = res.selection
    # the margin rule: each estimate plus z standard errors of its difference to the reference
    est = torch.tensor(sel["estimated_mse"]) + sel["z"] * torch.tensor(sel["estimated_se"])
    assert sel["z"] == SelectionConfig().z > 0
    names = res.selection["candidates"]
    origin = torch.tensor(candidate_stages(2, _cfg().deviation, methods=res.selection["classical"]))
    stage = torch.tensor([["csgm", "round1"].index(s) for s in res.selection["stage"]])  # the refit's best
    excluded = (origin[None, :] != stage[:, None]) & (origin[None, :] >= 0)
    excluded[:, names.index(res.selection["csgm_candidate"])] = False  # CSGM's solution: always a candidate
    est[excluded] = float("inf")
    assert [names[k] for k in est.argmin(1).tolist()] == res.selection["choice"]
    assert res.selection["stage_rule"] == "measurement"
    assert "csgm" in names and all(c in names for c in res.selection["ilo_choice"])


def test_deviation_stage_without_selection_fits_the_measurements_better(tiny_dcgan):
    op = CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))
    y = op(_rand((2, *SHAPE), 5))  # a truth outside the generator's range
    plain = solve(y, op, tiny_dcgan, "ilo", _cfg(deviation=None), seeds=0)
    ext = solve(y, op, tiny_dcgan, "ilo", _cfg(deviation=DeviationConfig(weights=(0.001,), steps=30)), seeds=0)
    assert bool((ext.measurement_loss < 0.5 * plain.measurement_loss).all())
    assert ext.selection is None


def test_selection_and_deviation_configs_validate():
    with pytest.raises(ValueError):
        DeviationConfig(weights=())
    with pytest.raises(ValueError):
        DeviationConfig(weights=(-1.0,))
    with pytest.raises(ValueError):
        SelectionConfig(holdout=1.0)
    with pytest.raises(ValueError, match="csgm must be one of auto, method, own"):
        SelectionConfig(csgm="both")
    assert self_tuned(ILOConfig()).to_dict()["selection"]["holdout"] == SelectionConfig().holdout
    assert self_tuned(ILOConfig()).to_dict()["selection"]["csgm"] == "auto"


@pytest.mark.parametrize("op, mode", [(Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0)), "method"),
                                      (SuperResolution(SHAPE, 2), "challenge")], ids=["inpaint", "superres"])
def test_auto_csgm_stage_is_the_operators_choice(tiny_dcgan, op, mode):
    """``csgm="auto"``: the CSGM method's solution for inpainting, ILO's own (shorter) stage for
    super-resolution, with the CSGM method as a challenger; the record says which, and the CSGM
    steps follow from it."""
    cfg = _cfg()
    res = solve(op(_truth(tiny_dcgan)), op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    assert op.self_tuning_csgm == mode and res.selection["csgm"] == mode
    assert res.selection["csgm_steps"] == (cfg.total_steps if mode == "method" else cfg.csgm.steps)


@pytest.mark.parametrize("op", [Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0)),
                                CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))],
                         ids=["inpaint", "cs"])
def test_the_csgm_methods_solution_on_the_fit_part_is_a_candidate(tiny_dcgan, op):
    from ilo.solvers.csgm import csgm
    from ilo.solvers.ilo import csgm_stage
    from ilo.solvers.presets import csgm_preset

    y = op(_truth(tiny_dcgan))
    cfg = _cfg()
    cfg = replace(cfg, selection=replace(cfg.selection, method_challenger=False))  # the shared stage's candidate
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    stage = csgm_stage(cfg, tiny_dcgan)
    assert stage == csgm_preset(cfg.total_steps, cfg.csgm.restarts)  # a DCGAN: the CSGM method's preset, ILO's budget
    fit, y_fit, _, _ = split(op, y, [4, 9], cfg.selection)
    alone = solve(y_fit, fit, tiny_dcgan, "csgm", stage, seeds=[4, 9])
    sel = res.selection
    k = sel["candidates"].index(sel["csgm_candidate"])
    refit = torch.tensor(sel["csgm_refit"])
    assert refit.tolist() == [c == sel["csgm_candidate"] and bool(r) for c, r in zip(sel["choice"], refit)]
    torch.testing.assert_close(res.candidates[k][~refit], alone.image[~refit], rtol=0, atol=1e-6)
    # where CSGM's candidate is chosen: CSGM continued from it on all measurements, fitting them better
    more = csgm(y, op, tiny_dcgan, replace(stage, steps=round(stage.steps * cfg.selection.csgm_refit), restarts=1),
                seeds=[4, 9], init=alone.latents)
    torch.testing.assert_close(res.candidates[k][refit], more.image[refit], rtol=0, atol=1e-6)
    assert bool((op.measurement_loss(more.image, y) < op.measurement_loss(alone.image, y))[refit].all())
    assert sel["csgm_config"] == stage.to_dict() and sel["csgm"] == "method"
    # "own": each run's own CSGM stage (ILOConfig.csgm), as before; still a candidate
    own = solve(y, op, tiny_dcgan, "ilo", replace(cfg, selection=replace(cfg.selection, csgm="own")), seeds=[4, 9])
    assert own.selection["csgm_steps"] == cfg.csgm.steps and "csgm_config" not in own.selection
    assert own.steps == cfg.total_steps and not torch.allclose(own.candidates[k], alone.image)


@pytest.mark.parametrize("sigma, z", [(0.1, 0.0), (0.03, SelectionConfig().z)], ids=["sigma0.1-z0", "sigma0.03-default"])
@pytest.mark.parametrize("kind", ["inpaint", "cs"])
def test_in_range_the_self_tuned_choice_is_not_worse_than_csgms_candidate(tiny_dcgan, kind, sigma, z):
    """A truth drawn from the generator, noisy measurements: CSGM's 8 latent entries cannot fit
    the noise, ILO's round can (a problem where CSGM is best); the choice is not worse than CSGM's.
    At sigma 0.1 the ~20-40 held-out entries of a 16-pixel image cannot tell CSGM from the
    classical reference beyond the default margin (z standard errors), so the margin keeps the
    reference there: that case is checked with the lowest estimate (z = 0), without the blends
    (with no margin, a blend of CSGM's candidate and the reference can win on the noise of 20-40
    held-out entries); the default (sigma 0.03) keeps them."""
    from ilo import metrics as M

    gen = torch.Generator().manual_seed(0)
    op = (Inpainting.random(SHAPE, 0.4, gen, GaussianNoise(sigma)) if kind == "inpaint"
          else CompressedSensing(SHAPE, 0.3, gen, GaussianNoise(sigma)))
    x = _truth(tiny_dcgan)
    y = op(x, torch.Generator().manual_seed(1))
    base = ILOConfig(csgm=CSGMConfig(steps=20, restarts=2, lr=0.05), rounds=(RoundConfig(1, 20, 0.1, 50.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    blend = cfg.selection.blend if z else ()
    assert not z or blend  # the default checked with its blends
    # the shared stage's CSGM candidate (the challenger of all measurements: test_selection_method_challenger.py);
    # for CS without the generator's Gaussian prior: of this 768-value generator's images it is nearly
    # exact (level with CSGM, test_gaussian.py), so CSGM would not be the one best candidate this needs
    classical = ("tv-cs",) if kind == "cs" else None
    sel = replace(cfg.selection, z=z, blend=blend, method_challenger=False, classical=classical)
    res = solve(y, op, tiny_dcgan, "ilo", replace(cfg, selection=sel), seeds=0)
    names = res.selection["candidates"]
    true = torch.stack([M.mse(c, x) for c in res.candidates]).nan_to_num(nan=1.0)  # [K, B]
    csgm_err = true[names.index(res.selection["csgm_candidate"])]
    assert bool((csgm_err < 0.5 * true[names.index("round1")]).all())  # a problem where CSGM is best
    assert bool((M.mse(res.image, x) <= csgm_err * 1.01 + 1e-9).all())


def test_pipeline_records_the_selection(tiny_dcgan):
    from ilo.pipeline import ProblemSpec, build_problem, record, run_method

    prob = build_problem(ProblemSpec("cs", measurements=0.3), tiny_dcgan, truth=_truth(tiny_dcgan, 1))
    res, scores = run_method(prob, tiny_dcgan, "ilo", config=_cfg())
    assert scores["selection"]["choice"] == res.selection["choice"]
    rec = record(prob, res, scores)
    assert rec["solver"]["selection"]["candidates"] == res.selection["candidates"]


def _sequential(run, y_fit, fit, y, operator, start=None):
    """Self-tuning's fit and refit runs one after the other (what :func:`fit_and_refit` batches)."""
    return run(y_fit, fit, 1, start), run(y, operator, 1, start)


@pytest.mark.parametrize("op", [Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0)),
                                SuperResolution(SHAPE, 2),
                                CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))],
                         ids=["inpaint", "superres", "cs"])
def test_fit_and_refit_in_one_batch_equal_the_two_runs(tiny_dcgan, op, monkeypatch):
    from ilo.solvers.selection import tuning

    y = op(_truth(tiny_dcgan))
    steps = []
    stacked = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9], callback=steps.append)
    monkeypatch.setattr(tuning, "fit_and_refit", _sequential)
    alone = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9])
    for key in ("choice", "ilo_choice", "candidates", "fit_run_steps"):
        assert stacked.selection[key] == alone.selection[key]
    torch.testing.assert_close(torch.tensor(stacked.selection["estimated_mse"]),
                               torch.tensor(alone.selection["estimated_mse"]), rtol=1e-4, atol=1e-7, equal_nan=True)
    assert torch.allclose(stacked.candidates, alone.candidates, atol=1e-5, equal_nan=True)
    assert torch.allclose(stacked.image, alone.image, atol=1e-5)
    assert all(torch.allclose(stacked.latents[k], alone.latents[k], atol=1e-5) for k in alone.latents)
    assert stacked.steps == alone.steps == len(steps)  # the callback sees one run of the B images
    meas = lambda res: torch.tensor([h["measurement_loss"] for h in res.history])  # [steps, B]
    assert torch.allclose(meas(stacked), meas(alone), rtol=1e-4, atol=1e-7)
    assert torch.allclose(torch.stack([s.measurement_loss for s in steps]), meas(stacked), rtol=1e-6, atol=1e-8)
    assert steps[0].image.shape[0] == 2 * _cfg().csgm.restarts and steps[-1].best_image.shape[0] == 2


@pytest.mark.parametrize("op", [SuperResolution(SHAPE, 2),
                                CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))],
                         ids=["superres", "cs"])
def test_skipping_the_excluded_stages_changes_nothing_chosen(tiny_dcgan, op):
    y = op(_truth(tiny_dcgan))
    cfg = _cfg()
    fast = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    full_cfg = replace(cfg, selection=replace(cfg.selection, every_candidate=True))
    full = solve(y, op, tiny_dcgan, "ilo", full_cfg, seeds=[4, 9])
    assert fast.selection["stage_rule"] == "measurement"
    assert fast.selection["choice"] == full.selection["choice"]
    assert torch.equal(fast.image, full.image)
    skipped = torch.isnan(fast.candidates).flatten(2).all(2)  # [K, B]
    assert skipped.any() and not torch.isnan(full.candidates).any()
    names, stages = fast.selection["candidates"], fast.selection["stage"]
    for k, b in skipped.nonzero().tolist():  # only other stages' deviations and residuals are skipped
        assert "+" in names[k] and not names[k].startswith(stages[b] + "+")
    kept = ~skipped
    assert torch.equal(fast.candidates[kept], full.candidates[kept])


def test_csgm_refit_replaces_the_chosen_csgm_candidate_only_where_it_fits_better():
    from ilo.operators import Denoising as _D  # an operator with a plain measurement loss
    from ilo.solvers.result import Result
    from ilo.solvers.selection import refit_csgm

    op = _D((1, 2, 2), sigma255=10)
    y = torch.zeros(3, 1, 2, 2)
    cands = torch.ones(2, 3, 1, 2, 2)  # [K, B, ...]: every candidate has loss 1
    new = torch.tensor([0.5, 2.0, 0.0]).view(3, 1, 1, 1).expand(3, 1, 2, 2)  # better, worse, better
    calls = []

    def first(y_, op_, start):
        calls.append(start)
        return Result(image=new.clone(), latents={}, layer=0, measurement_loss=torch.zeros(3), history=[],
                      method="csgm", config={}, seconds=0.0)

    start = object()
    changed = refit_csgm(cands, torch.tensor([0, 0, 1]) == 0, y, op, start, first, 0.25)
    assert changed == [True, False, False] and calls == [start]  # image 2 did not choose CSGM
    assert bool((cands[0, 0] == 0.5).all()) and bool((cands[0, 1:] == 1).all()) and bool((cands[1] == 1).all())
    assert refit_csgm(cands, torch.tensor([0, 0, 0]) == 0, y, op, start, first, 0.0) == [False] * 3 and len(calls) == 1
    assert refit_csgm(cands, torch.tensor([1, 1, 1]) == 0, y, op, start, first, 0.25) == [False] * 3 and len(calls) == 1
