"""Convex blends of two candidates as candidates of the held-out choice (SelectionConfig.blend)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

import ilo.solvers.selection as S
from ilo.solvers.selection import challenger as S_challenger, choice as S_choice, tuning as S_tuning
from ilo.bench import realfaces_eval as rfe
from ilo.operators import CompressedSensing, Inpainting
from ilo.solvers import CSGMConfig, ILOConfig, RoundConfig, solve
from ilo.solvers.config import SelectionConfig, self_tuned

SHAPE = (3, 16, 16)
WEIGHTS = (0.25, 0.5, 0.75)
PAIRS = ("reference", "classical", "top")


def _cfg(blend=(), pairs=("reference",), z=1.5):
    base = ILOConfig(csgm=CSGMConfig(steps=6, restarts=2, lr=0.05), rounds=(RoundConfig(1, 6, 0.05, 5.0),))
    cfg = self_tuned(base, weights=(0.01, 0.1), steps=10)
    # without the CSGM method's challenger (its own tests: test_selection_method_challenger.py)
    return replace(cfg, selection=replace(cfg.selection, z=z, blend=blend, blend_pairs=pairs, method_challenger=False))


def _rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _ops():
    return [Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0)),
            CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("op", _ops(), ids=["inpaint", "cs"])
def test_blends_off_is_the_choice_among_the_other_candidates_bit_for_bit(tiny_dcgan, op):
    """The blends only add rows: the other candidates, their estimates and standard errors are
    those of the run without blends, whose choice is the rule over them alone."""
    y = op(_rand((2, *SHAPE), 3))
    off = solve(y, op, tiny_dcgan, "ilo", _cfg(), seeds=[4, 9])
    on = solve(y, op, tiny_dcgan, "ilo", _cfg(WEIGHTS, PAIRS), seeds=[4, 9])
    so, sn = off.selection, on.selection
    K = len(so["candidates"])
    assert "blend" not in so and off.candidates.shape[0] == K
    kinds = S.usable_pairs(PAIRS, len(so["classical"]))  # two classical methods: every pair (CS: the prior and TV)
    assert so["classical"] == (["biharmonic", "tv-inpaint"] if isinstance(op, Inpainting) else ["gaussian-isotropic", "tv-cs"])
    assert kinds == PAIRS
    assert sn["candidates"][:K] == so["candidates"] and len(sn["candidates"]) == K + len(WEIGHTS) * len(kinds)
    for key in ("estimated_mse", "estimated_se", "eligible"):
        torch.testing.assert_close(torch.tensor(sn[key])[:, :K], torch.tensor(so[key]), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(on.candidates[1:K], off.candidates[1:], rtol=0, atol=0, equal_nan=True)
    est, se, ok = (torch.tensor(sn[k]).T[:K] for k in ("estimated_mse", "estimated_se", "eligible"))
    assert so["choice"] == [so["candidates"][k] for k in S.choose(est, ok, se, 1.5).tolist()]
    for b, c in enumerate(sn["choice"]):
        if c == so["choice"][b]:  # the same choice: the same image, bit for bit
            assert torch.equal(on.image[b], off.image[b])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("op", _ops(), ids=["inpaint", "cs"])
def test_blends_are_scored_from_the_fit_part_and_built_from_the_refit(tiny_dcgan, op, monkeypatch):
    calls = []

    def spy(cands, pairs, weights):
        out = blend(cands, pairs, weights)
        calls.append((cands.clone(), out.clone()))
        return out

    blend = S.blend
    monkeypatch.setattr(S_choice, "blend", spy)  # the fit part's blends (with_blends)
    monkeypatch.setattr(S_tuning, "blend", spy)  # the refit's
    y = op(_rand((2, *SHAPE), 3))
    cfg = _cfg(WEIGHTS, PAIRS)
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=[4, 9])
    sel = res.selection
    names, A = sel["candidates"], len(WEIGHTS)
    kinds = S.usable_pairs(PAIRS, len(sel["classical"]))
    K = len(names) - A * len(kinds)
    assert len(calls) == 2  # the fit part's blends, then the refit's
    (fit, fit_blends), (refit, final_blends) = calls
    assert fit.shape[0] == refit.shape[0] == K
    torch.testing.assert_close(final_blends, res.candidates[K:], rtol=0, atol=0, equal_nan=True)
    _, _, val, _ = S.split(op, y, [4, 9], cfg.selection)
    est = torch.tensor(sel["estimated_mse"]).T  # [K + P * A, B]
    se, ok = torch.tensor(sel["estimated_se"]).T, torch.tensor(sel["eligible"]).T
    score = S.scores(est[:K], ok[:K], se[:K], 1.5)
    alone = [names.index(m) for m in sel["classical"]]
    for b in range(2):
        ref = names.index(sel["reference"][b])
        expect = {  # the pairs, from the rule's scores and the classical methods' estimates
            "reference": [int(score[:, b].scatter(0, torch.tensor([ref]), float("inf")).argmin()), ref],
            "classical": sorted(alone, key=lambda k: float(est[k, b]))[:2][::-1],
            "top": score[:, b].argsort()[:2].tolist()}
        for p, kind in enumerate(kinds):
            for i, a in enumerate(WEIGHTS):
                row, rec = p * A + i, sel["blend"][b][p * A + i]
                assert names[K + row] == ("blend" if kind == "reference" else f"blend-{kind}") + f"@{a:g}"
                k1, k2 = expect[kind]
                assert rec == {"of": [names[k1], names[k2]], "weights": [a, 1 - a]}
                mixed = a * fit[k1, b] + (1 - a) * fit[k2, b]
                torch.testing.assert_close(fit_blends[row, b], mixed)
                # the blend's held-out estimate is the measurement loss of the blended image
                loss = val.measurement_loss(fit_blends[row], y)[b]
                torch.testing.assert_close(est[K + row, b], loss.to(est.dtype), rtol=1e-6, atol=1e-9)
                torch.testing.assert_close(res.candidates[K + row, b], a * res.candidates[k1, b] + (1 - a) * res.candidates[k2, b])
    rows = torch.arange(2)
    choice = torch.tensor([names.index(c) for c in sel["choice"]])
    base = S.choose(est[:K], ok[:K], se[:K], 1.5)  # the choice without the blends
    assert sel["blend_against"] == "choice"
    assert choice.tolist() == S.challenge(est, se, ok, base, K, 1.5).tolist()
    for b in range(2):  # a blend is taken only where its margin against the choice it replaces clears it
        if choice[b] >= K:
            assert est[choice[b], b] + 1.5 * se[choice[b], b] < est[base[b], b]
        else:
            assert choice[b] == base[b]
    torch.testing.assert_close(res.image, S.paste_observed(res.candidates[choice, rows], y, op), rtol=0, atol=0)


@pytest.mark.usefixtures("one_thread")
def test_a_chosen_blend_of_the_csgm_candidate_refits_it_first(tiny_dcgan, monkeypatch):
    """Where the choice is a blend containing the CSGM candidate (row 0), CSGM's refit on all
    measurements runs for that image, and the blend is built from the refit candidate."""
    seen = []
    refit = S.refit_csgm

    def spy_refit(cands, redo, *args):
        seen.append(redo.clone())
        return refit(cands, redo, *args)

    def csgm_and_ref(score, est, alone, ref, pairs):
        return torch.stack([torch.zeros_like(ref), ref])[None]  # [1, 2, B]: csgm with the reference

    always = lambda est, se, eligible, base, K, z: torch.full((est.shape[1],), K)
    monkeypatch.setattr(S_tuning, "refit_csgm", spy_refit)
    monkeypatch.setattr(S_choice, "blend_pairs", csgm_and_ref)
    monkeypatch.setattr(S_tuning, "challenge", always)  # the blend's
    monkeypatch.setattr(S_challenger, "challenge", always)  # the CSGM method's
    op = Inpainting.random(SHAPE, 0.4, torch.Generator().manual_seed(0))
    y = op(_rand((2, *SHAPE), 3))
    res = solve(y, op, tiny_dcgan, "ilo", _cfg((0.25, 0.5)), seeds=[4, 9])
    sel = res.selection
    K = len(sel["candidates"]) - 2
    assert sel["choice"] == ["blend@0.25"] * 2 and seen[0].tolist() == [True, True]
    assert sel["blend"][0][0]["of"] == [sel["candidates"][0], sel["reference"][0]]
    for b in range(2):
        ref = sel["candidates"].index(sel["reference"][b])
        mixed = 0.25 * res.candidates[0, b] + 0.75 * res.candidates[ref, b]  # row 0 after the refit
        torch.testing.assert_close(res.candidates[K, b], mixed)
    torch.testing.assert_close(res.image, S.paste_observed(res.candidates[K], y, op), rtol=0, atol=0)



def _constructed():
    """A 2-image noiseless inpainting problem for hand-made candidates: ``(generator for their
    noise, truth, observation, config with the reference pair's blends, validation part)``."""
    x = _rand((2, *SHAPE), 1)
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(2))
    y = op(x)
    cfg = SelectionConfig(blend=WEIGHTS, blend_pairs=("reference",))
    _, _, val, _ = S.split(op, y, [4, 9], cfg)
    return torch.Generator().manual_seed(0), x, y, cfg, val

def test_two_candidates_with_independent_errors_make_the_even_blend_the_choice():
    """Constructed: a generative candidate and the classical reference, each the truth plus
    independent noise of the same size; their even blend halves the error, the held-out part
    sees it, and the rule (with the margin) takes it over both."""
    g, x, y, cfg, val = _constructed()
    noise = lambda s: s * torch.randn(x.shape, generator=g)
    cands = torch.stack([x + noise(0.1), x + noise(0.3), x + noise(0.1)])  # [gen, a worse one, classical (ref)]
    alone = torch.tensor([False, False, True])
    units = S.held_out_units(y)
    errors = S.unit_errors(val, cands, y, units)
    est = torch.stack([val.measurement_loss(c, y) for c in cands])
    ref = torch.tensor([2, 2])
    se = S.paired_se(errors, ref)
    pairs, est2, se2, ok = S.with_blends(cands, val, y, units, est, se, None, errors, ref, alone, cfg, cfg.blend_pairs)
    assert pairs[0].T.tolist() == [[0, 2], [0, 2]] and ok is None and est2.shape == se2.shape == (6, 2)
    assert S.choose(est, None, se, cfg.z).tolist() in ([0, 0], [0, 2], [2, 0], [2, 2])  # without blends
    assert S.choose(est2, None, se2, cfg.z).tolist() == [4, 4]  # K + 1: blend@0.5 (blend_against="reference")
    base = S.choose(est, None, se, cfg.z)  # the default: the blend must beat the choice without blends
    _, est3, se3, _ = S.with_blends(cands, val, y, units, est, se, None, errors, ref, alone, cfg, cfg.blend_pairs, base)
    torch.testing.assert_close(est3, est2)
    torch.testing.assert_close(se3[:3], se[:3])
    torch.testing.assert_close(se3[3:], S.paired_se(torch.cat([errors, S.unit_errors(val, S.blend(cands, pairs, WEIGHTS), y, units)]), base)[3:])
    pick = S.challenge(est3, se3, None, base, 3, cfg.z)  # a blend, closer to the truth than the choice without
    assert bool((pick >= 3).all())
    every = torch.cat([cands, S.blend(cands, pairs, WEIGHTS)])
    mse = lambda k, b: float((every[k, b] - x[b]).pow(2).mean())
    assert all(mse(int(pick[b]), b) < mse(int(base[b]), b) for b in range(2))
    true = torch.stack([(S.blend(cands, pairs, WEIGHTS)[i] - x).pow(2).flatten(1).mean(1) for i in range(3)])
    assert true.argmin(0).tolist() == [1, 1]  # the even blend is also the truth's best


def test_blend_config_validates():
    with pytest.raises(ValueError, match="blend weights must lie in"):
        SelectionConfig(blend=(0.5, 1.0))
    with pytest.raises(ValueError, match="blend_pairs must be of"):
        SelectionConfig(blend=(0.5,), blend_pairs=("best",))
    with pytest.raises(ValueError, match="blend_against must be one of"):
        SelectionConfig(blend_against="best")
    cfg = SelectionConfig()
    assert cfg.blend == WEIGHTS and cfg.blend_pairs == ("reference", "classical") and cfg.blend_against == "choice"


def test_rescoring_without_the_blends_ignores_them():
    sel = {"candidates": ["round1", "biharmonic", "blend@0.5"], "estimated_mse": [[0.9, 1.0, 0.1]],
           "estimated_se": [[0.2, 0.0, 0.0]], "true_mse": [[0.01, 0.001, 0.0001]]}
    assert rfe.rescored(sel, 0.0) == pytest.approx([40.0])
    assert rfe.rescored(sel, 0.0, ("blend",)) == pytest.approx([20.0])  # round1: the lowest without the blend
    assert rfe.oracle_psnr(sel) == pytest.approx([40.0]) and rfe.oracle_psnr(sel, ("blend",)) == pytest.approx([30.0])


def test_the_real_face_bench_runs_blends_and_rescores_without_them(tiny_dcgan, one_thread, tmp_path, monkeypatch):
    from ilo.images import photo

    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: (faces, ["astronaut", "grace_hopper"]))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    results = rfe.main(["--split", "tuning", "--steps", "6", "--restarts", "1",
                        "--keys", "inpaint 0.3,box 0.333333,superres 4,cs 0.1", "--patch", "2",
                        "--blend", "0.25,0.5", "--blend-pairs", "reference,classical,top", "--box-blend", "same",
                        "--box-classical", "class", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["meta"]["blend"] == [0.25, 0.5] and saved["results"] == results  # nothing NaN
    assert saved["meta"]["box_blend"] == saved["meta"]["box_classical"] == "inherit"
    assert "biharmonic" in results["box 0.333333"]["selection"]["candidates"]  # "class": the inpainting methods
    for key, r in results.items():
        sel = r["selection"]
        names = sel["candidates"]
        # two classical methods or more on every task here (super-resolution and CS: the Gaussian prior and TV)
        blends = ["blend@0.25", "blend@0.5", "blend-classical@0.25", "blend-classical@0.5", "blend-top@0.25", "blend-top@0.5"]
        own = names[:-1] if key.startswith("box") else names  # the box's CSGM challenger comes last
        assert names[-1:] != ["csgm-method"] or key.startswith("box")
        assert own[-len(blends):] == blends and not own[-len(blends) - 1].startswith("blend")
        assert len(sel["true_mse"][0]) == len(names) == len(sel["estimated_se"][0]) == len(sel["estimated_mse"][0])
        assert len(sel["blend"][0]) == len(blends) and sel["blend"][0][1]["weights"] == [0.5, 0.5]
        assert rfe.rescored(sel, sel["z"]) == pytest.approx(r["per_image"]["ilo self-tuned"]["psnr"], abs=1e-3)
        best = [10 * math.log10(1 / min(m)) for m in sel["true_mse"]]
        assert rfe.oracle_psnr(sel) == pytest.approx(best)
        assert r["per_image"]["oracle"]["psnr"] == pytest.approx(best, abs=1e-3)
        assert all(a >= b - 1e-9 for a, b in zip(rfe.oracle_psnr(sel), rfe.oracle_psnr(sel, ("blend",))))


def test_a_missing_second_candidate_makes_the_blend_the_first_itself():
    """One held-out unit (x16): every candidate but the reference scores infinity, so the
    reference pair is the reference twice and its blends are the reference exactly (never
    chosen over it: same score, later row)."""
    inf = float("inf")
    score = torch.tensor([[inf, 0.2], [inf, 0.9], [1.0, 1.0]])  # image 0: only the reference (row 2) is finite
    alone = torch.tensor([False, False, True])
    pairs = S.blend_pairs(score, score, alone, torch.tensor([2, 2]), ["reference", "top"])
    assert pairs[:, :, 0].tolist() == [[2, 2], [2, 2]] and pairs[:, :, 1].tolist() == [[0, 2], [0, 1]]
    cands = torch.rand(3, 2, 1, 2, 2) * 3
    out = S.blend(cands, pairs, WEIGHTS)
    assert all(torch.equal(out[i, 0], cands[2, 0]) for i in range(6))  # bit for bit
    est = torch.cat([score, torch.full((6, 2), 1.0)])
    assert S.choose(est)[0] == 2
    with pytest.raises(ValueError, match="needs a classical method"):
        S.blend_pairs(score, score, alone, None, ["reference"])


def test_a_blend_must_clear_its_margin_against_the_choice_it_would_replace():
    """In range the CSGM candidate is near the truth and the classical reference far from it;
    a blend leaning towards the reference has a smaller standard error against the reference
    than CSGM's own candidate, so against the reference it wins on noise; against the choice
    (CSGM's candidate) it must fit the held-out part better by the margin, and does not."""
    g, x, y, cfg, val = _constructed()
    cands = torch.stack([x + 0.01 * torch.randn(x.shape, generator=g), x + 0.3 * torch.randn(x.shape, generator=g)])
    alone, ref = torch.tensor([False, True]), torch.tensor([1, 1])
    units = S.held_out_units(y)
    errors = S.unit_errors(val, cands, y, units)
    est = torch.stack([val.measurement_loss(c, y) for c in cands])
    se = S.paired_se(errors, ref)
    base = S.choose(est, None, se, cfg.z)
    assert base.tolist() == [0, 0]
    _, est2, se2, _ = S.with_blends(cands, val, y, units, est, se, None, errors, ref, alone, cfg, cfg.blend_pairs, base)
    assert S.challenge(est2, se2, None, base, 2, cfg.z).tolist() == [0, 0]
    for k in range(2, 5):  # every blend fits the held-out part worse than CSGM's candidate
        assert bool((est2[k] > est2[0]).all())


def test_rescoring_blends_scored_against_the_choice():
    """A blend replaces the choice among the others only where its score (estimate plus z of
    its standard errors against that choice) lies below the choice's estimate."""
    psnr = lambda m: 10 * math.log10(1 / m)
    sel = {"candidates": ["csgm", "biharmonic", "blend@0.5"], "blend_against": "choice",
           "estimated_mse": [[1.0, 2.0, 0.9], [1.0, 2.0, 0.9]], "estimated_se": [[0.5, 0.0, 0.2], [0.5, 0.0, 0.01]],
           "true_mse": [[0.01, 0.04, 0.02], [0.01, 0.04, 0.02]]}
    # image 0: 0.9 + 1.5 * 0.2 = 1.2 > 1.0 keeps csgm; image 1: 0.9 + 0.015 < 1.0 takes the blend
    assert rfe.rescored(sel, 1.5) == [psnr(0.01), psnr(0.02)]
    assert rfe.rescored(sel, 1.5, ("blend",)) == [psnr(0.01), psnr(0.01)]
    # against the reference, every candidate by its own score: image 0 takes the blend (1.2 < csgm's 1.75)
    assert rfe.rescored({**sel, "blend_against": "reference"}, 1.5) == [psnr(0.02), psnr(0.02)]
