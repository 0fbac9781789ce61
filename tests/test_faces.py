"""Face geometry without a detector: similarity estimation, the FFHQ recipe, the warped operator,
paste-back, and what restore_photo hands to the solver (a fake solver captures it)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ilo.faces.align import (
    MOUTH_FROM_NOSE, Similarity, Template, aligned_crop, align_face, estimate_similarity, ffhq_transform,
)
from ilo.faces.detect import Face
from ilo.faces.paste import feather_window, paste
from ilo.faces.warp import WarpedOperator, face_region
from ilo.operators import Denoising, Inpainting, SuperResolution

S = 64


def smooth_face(seed: int = 0, size: int = S) -> torch.Tensor:
    """A smooth random image [1, 3, S, S] (low-frequency: bilinear resampling barely changes it)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


# --- similarities ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale,angle,shift", [(0.5, 0.0, (3, 4)), (2.3, 17.0, (-40, 12)), (0.21, -25.0, (5, -9))])
def test_estimate_similarity_recovers_known_transform(scale, angle, shift):
    rng = np.random.default_rng(0)
    T = Similarity.from_params(scale, angle, shift)
    src = rng.uniform(0, 100, (5, 2))
    est = estimate_similarity(src, T.apply(src))
    assert np.allclose(est.matrix, T.matrix, atol=1e-9)
    assert est.scale == pytest.approx(scale) and est.angle == pytest.approx(angle)
    # with landmark noise of 0.5 px the estimate stays within 2 % in scale and 1 degree in angle
    noisy = estimate_similarity(src + rng.normal(0, 0.5, src.shape), T.apply(src))
    assert noisy.scale == pytest.approx(scale, rel=0.02) and abs(noisy.angle - angle) < 1.0


def test_estimate_similarity_exception():
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((3, 2)), np.ones((3, 2)))


def canonical_68() -> np.ndarray:
    """A frontal face's 68 landmarks: eyes centred at (40, 50) and (60, 50), mouth corners at y = 72."""
    lm = np.zeros((68, 2))
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    lm[36:42] = np.c_[40 + 4 * np.cos(ang), 50 + 2 * np.sin(ang)]
    lm[42:48] = np.c_[60 + 4 * np.cos(ang), 50 + 2 * np.sin(ang)]
    lm[48], lm[54] = (42, 72), (58, 72)
    return lm


def test_ffhq_recipe_on_a_frontal_face():
    """Eyes 20 apart, mouth 22 below them: the square's half side is max(2 * 20, 1.8 * 22) = 40,
    centred 2.2 below the eyes, so the eye midpoint lands at (S/2, S/2 - 2.2 * S / 80)."""
    T = ffhq_transform(canonical_68(), "68", S)
    assert T.scale == pytest.approx(S / 80) and T.angle == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(T.apply(np.array([[50.0, 50.0]])), [[S / 2, S / 2 - 2.2 * S / 80]])


@pytest.mark.parametrize("model", ["68", "5"])
def test_ffhq_recipe_is_equivariant(model):
    """Moving the face by a similarity P moves the square with it: T(P lm) = T(lm) o P^-1."""
    lm = canonical_68()
    if model == "5":  # eye corners and nose bottom of the same face
        lm = np.array([[64, 50], [56, 50], [36, 50], [44, 50], [50, 50 + 22 / MOUTH_FROM_NOSE]], dtype=float)
    P = Similarity.from_params(1.7, 33.0, (100.0, -20.0))
    T0, T1 = ffhq_transform(lm, model, S), ffhq_transform(P.apply(lm), model, S)
    q = np.array([[0, 0], [S, 0], [0, S], [S / 2, S / 2]], dtype=float)
    assert np.allclose(T1.inverse().apply(q), P.apply(T0.inverse().apply(q)), atol=1e-6)


def test_five_point_ffhq_matches_68_point_when_the_mouth_is_where_assumed():
    lm68 = canonical_68()
    lm5 = np.array([[64, 50], [56, 50], [36, 50], [44, 50], [50, 50 + 22 / MOUTH_FROM_NOSE]], dtype=float)
    assert np.allclose(ffhq_transform(lm5, "5", S).matrix, ffhq_transform(lm68, "68", S).matrix, atol=1e-9)


def test_align_face_to_landmark_template():
    ref = np.array([[0.7, 0.47], [0.59, 0.47], [0.29, 0.47], [0.41, 0.47], [0.5, 0.72]])
    tpl = Template("t", "landmarks", S, {"5": ref})
    P = Similarity.from_params(3.0, -12.0, (200.0, 80.0))  # aligned frame -> photo
    face = Face((0, 0, 1, 1), P.apply(ref * S), "5")
    al = align_face(face, tpl)
    assert np.allclose(al.transform.matrix, P.inverse().matrix, atol=1e-9) and al.fit_rms < 1e-9
    with pytest.raises(ValueError, match="68-point"):
        align_face(Face((0, 0, 1, 1), np.zeros((68, 2)), "68"), tpl)


# --- warp and paste ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale,angle", [(0.5, 10.0), (1.0, -20.0), (2.0, 35.0)])
def test_warp_then_aligned_crop_returns_the_face(scale, angle):
    """A face drawn into a photo with a known transform comes back through the inverse warp:
    mean absolute error < 0.02 (on [-1, 1]) inside the central 80 % of the frame."""
    x = smooth_face(1)
    L = Similarity.from_params(scale, angle, (0.0, 0.0)).matrix[:, :2]
    T = Similarity(np.c_[L, S / 2 - L @ [100.0, 90.0]])  # photo -> aligned: the face is centred at (100, 90)
    photo = torch.zeros(1, 3, 180, 200)
    box = face_region(T, S, (180, 200))
    op = WarpedOperator(Denoising((3, box[3] - box[1], box[2] - box[0]), 1.0), T, S, box)
    photo[..., box[1]:box[3], box[0]:box[2]] = op.warp(x)
    back = aligned_crop(photo, T, S)
    inner = slice(int(0.1 * S), int(0.9 * S))
    assert (back - x)[..., inner, inner].abs().mean() < 0.02


def test_warped_operator_measurements_are_the_photo_operators():
    """The mask and the noise are the inner operator's, in photo coordinates, unchanged."""
    g = torch.Generator().manual_seed(0)
    T = Similarity.from_params(1.5, 15.0, (-40.0, -30.0))
    box = face_region(T, S, (120, 140))
    h, w = box[3] - box[1], box[2] - box[0]
    mask = (torch.rand(1, 1, h, w, generator=g) > 0.3).float()
    op = WarpedOperator(Inpainting((3, h, w), mask), T, S, box)
    assert torch.equal(op.inner.mask, mask) and op.task == "inpaint" and op.input_shape == (3, S, S)
    # the loss counts observed pixels inside the face only: changing y elsewhere changes nothing
    x = smooth_face(2)
    y = op.A(x)
    assert float(op.measurement_loss(x, y)) == 0.0
    y2 = y + 5 * (1 - op.weight)
    assert float(op.measurement_loss(x, y2)) == 0.0 and bool((op.weight <= mask).all())
    assert float(op.measurement_loss(x, y + 0.1 * op.weight)) == pytest.approx(0.01, rel=1e-4)
    # denoising: white noise of the photo's sigma, drawn in photo pixels
    dn = WarpedOperator(Denoising((3, h, w), 25.5), T, S, box)
    assert dn.noise.sigma == pytest.approx(0.2)
    n = dn(torch.zeros(1, 3, S, S), torch.Generator().manual_seed(1)) - dn.A(torch.zeros(1, 3, S, S))
    assert n.std().item() == pytest.approx(0.2, rel=0.05)
    lag = (n[..., 1:] * n[..., :-1]).mean().item() / n.var().item()
    assert abs(lag) < 0.05  # white in the photo, not interpolated noise of the aligned frame


@pytest.mark.parametrize("inner", ["denoise", "superres"])
def test_warped_operator_adjoint(inner):
    T = Similarity.from_params(0.8, 20.0, (-10.0, -12.0))
    box = face_region(T, S, (200, 200))
    h, w = box[3] - box[1], box[2] - box[0]
    f = 3 if inner == "superres" else 1
    op = WarpedOperator(SuperResolution((3, h * f, w * f), f) if f > 1 else Denoising((3, h, w), 1.0), T, S, box, f)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, S, S, generator=g, dtype=torch.float64)
    y = torch.randn(2, *op.A(x.float()).shape[1:], generator=g, dtype=torch.float64)
    op = op.double()
    assert torch.dot(op.A(x).flatten(), y.flatten()).item() == pytest.approx(
        torch.dot(x.flatten(), op.A_adjoint(y).flatten()).item(), rel=1e-9)


def test_superres_operator_sees_the_face_at_its_own_scale():
    """A face 24 photo pixels wide under a 64-px generator and x4 super-resolution: the warp is a
    x(24 * 4 / 64) = x1.5 enlargement onto the fine grid, then x4 bicubic down to the photo."""
    T = Similarity.from_params(S / 24, 0.0, (-S / 24 * 30, -S / 24 * 20))  # face square at (30..54, 20..44)
    box = face_region(T, S, (80, 80))
    assert box == (28, 18, 56, 46)
    op = WarpedOperator(SuperResolution((3, 28 * 4, 28 * 4), 4), T, S, box, 4)
    assert op.A(torch.zeros(1, 3, S, S)).shape == (1, 3, 28, 28)
    assert int(op.coverage.gt(0.99).sum()) == pytest.approx((24 * 4) ** 2, rel=0.05)


def test_paste_blends_inside_the_face_only():
    canvas = torch.full((1, 3, 100, 120), -0.5)
    face = torch.full((1, 3, S, S), 0.5)
    T = Similarity.from_params(1.0, 30.0, (-20.0, -10.0))
    out, alpha = paste(canvas, face, T)
    centre = T.inverse().apply(np.array([[S / 2, S / 2]]))[0].round().astype(int)
    assert out[0, :, centre[1], centre[0]].allclose(torch.tensor(0.5))
    assert torch.equal(out[alpha.expand_as(out) == 0], canvas[alpha.expand_as(out) == 0])
    assert alpha.max() == 1.0 and alpha.min() == 0.0
    assert feather_window(S)[0, 0, 0].abs().max() == 0  # the frame's border is never pasted


# --- restore_photo with a fake solver ---------------------------------------------------------
class FakeResult:
    def __init__(self, image, rows=1):
        self.image = image.expand(rows, *image.shape[1:])
        self.measurement_loss, self.config = torch.zeros(rows), {"method": "fake"}


@pytest.fixture
def fake_restore(monkeypatch, tiny_dcgan):
    """restore_photo on a photo with one known face; the detector and the solver are replaced:
    the detector returns the true landmarks, the solver records (y, operator) and returns the truth."""
    import ilo.faces.restore as R
    import ilo.solvers

    ref = np.array([[0.7, 0.47], [0.59, 0.47], [0.29, 0.47], [0.41, 0.47], [0.5, 0.72]])
    G, size = tiny_dcgan, tiny_dcgan.image_shape[-1]
    tpl = Template("tiny", "landmarks", size, {"5": ref})
    P = Similarity.from_params(2.5, 12.0, (30.0, 20.0))  # aligned -> photo
    truth_face = smooth_face(4, size)
    calls, state = [], {"face": truth_face}

    def fake_detect(image, **kw):
        h = image.shape[-2]  # detection runs on the classical restoration (x factor for superres)
        f = h // 96
        return [Face((0, 0, 1, 1), P.apply(ref * size) * f, "5", 1.0)]

    real_solve = ilo.solvers.solve

    def fake_solve(y, op, G_, method, config=None, **kw):
        if method in ilo.solvers.CLASSICAL_METHODS:  # the background
            return real_solve(y, op, G_, method, config, **kw)
        calls.append((y.clone(), op, kw.get("seeds")))
        return FakeResult(state["face"], y.shape[0])

    monkeypatch.setattr(R, "detect_faces", fake_detect)
    monkeypatch.setattr(R, "template_for", lambda *a, **k: tpl)
    monkeypatch.setattr(ilo.solvers, "solve", fake_solve)
    photo = torch.zeros(1, 3, 96, 100)
    box = face_region(P.inverse(), size, (96, 100), margin=0)
    photo[..., box[1]:box[3], box[0]:box[2]] = WarpedOperator(
        Denoising((3, box[3] - box[1], box[2] - box[0]), 1.0), P.inverse(), size, box).warp(truth_face)
    return R, G, photo, P, calls, state


def test_restore_hands_the_photo_region_and_mask_to_the_operator(fake_restore):
    """The solver gets the face's region twice (one batch, the same seed): the first row without
    the held-out pixels of the weight's choice, the second with every measurement the face
    determines; the solver's face is the truth, so the choice pastes it whole."""
    R, G, photo, P, calls, _ = fake_restore
    mask = torch.ones(1, 1, 96, 100)
    mask[..., 40:60, 30:70] = 0
    rest = R.restore_photo(photo, G, R.RestoreConfig(task="inpaint"), mask=mask)
    (y, op, seeds), = calls
    x0, y0, x1, y1 = rest.faces[0].region
    assert y.shape[0] == 2 and seeds == [0, 0]
    assert torch.equal(y[1:], photo[..., y0:y1, x0:x1]) and torch.equal(y[0], y[1])  # hidden pixels: as the photo
    assert torch.equal(op.inner.mask, mask[..., y0:y1, x0:x1])
    fit, full = op.weight[0], op.weight[1]
    held = full - fit  # [C, h, w]
    assert bool((fit <= full).all()) and held.sum() > 0 and bool((held == held[:1]).all())  # whole pixels
    assert bool((held * (1 - mask[0, 0, y0:y1, x0:x1])).eq(0).all())  # only observed pixels are held out
    choice = rest.faces[0].choice
    assert choice.held_out == int(held[0].sum()) and rest.faces[0].weight == 1.0 == choice.weight
    assert choice.estimates[-1] < choice.estimates[0]  # the face (= the truth) beats biharmonic interpolation
    assert np.allclose(op.transform.matrix, P.inverse().matrix, atol=1e-6)
    # the observed pixels are kept; the solver's face (= the truth) fills the hole
    assert torch.equal(rest.image * mask, photo * mask)
    inside = rest.faces[0].alpha > 0.99
    assert (rest.image - photo).abs()[inside.expand_as(photo)].mean() < 0.05


def test_restore_superres_works_at_the_photo_resolution(fake_restore):
    R, G, photo, P, calls, _ = fake_restore
    f = 2
    small = R.degrade(photo, R.RestoreConfig(task="superres", factor=f))  # [1, 3, 48, 50]
    rest = R.restore_photo(small, G, R.RestoreConfig(task="superres", factor=f, weight=1.0))
    (y, op, seeds), = calls
    x0, y0, x1, y1 = rest.faces[0].region
    assert rest.image.shape == (1, 3, 96, 100) and torch.equal(y, small[..., y0:y1, x0:x1])
    assert seeds == 0 and rest.faces[0].choice is None  # a given weight: one row, nothing held out
    assert op.inner.factor == f and op.task == "superres"
    assert op.transform.scale == pytest.approx(f * P.inverse().scale)  # the face is smaller in the small photo


def test_restore_denoise_noise_level_and_no_face(fake_restore, monkeypatch):
    R, G, photo, P, calls, _ = fake_restore
    R.restore_photo(photo, G, R.RestoreConfig(task="denoise", sigma255=30))
    assert calls[0][1].noise.sigma == pytest.approx(30 * 2 / 255)
    monkeypatch.setattr(R, "detect_faces", lambda *a, **k: [])
    with pytest.raises(R.NoFaceFound):
        R.restore_photo(photo, G, R.RestoreConfig(task="denoise", sigma255=30))


@pytest.mark.parametrize("task", ["denoise", "superres"])
def test_restore_keeps_the_background_where_the_face_is_wrong(fake_restore, task):
    """A solver whose face is not the photo's (its negative): the held-out measurements say so,
    the weight is 0 and the restored photo is the classical restoration itself; with the weight
    given as 1 the wrong face is pasted."""
    R, G, photo, P, calls, state = fake_restore
    state["face"] = -state["face"]
    cfg = R.RestoreConfig(task=task, sigma255=10 if task == "denoise" else None, factor=2 if task == "superres" else None)
    y = R.degrade(photo, cfg, seed=1)
    rest = R.restore_photo(y, G, cfg)
    fr = rest.faces[0]
    assert fr.weight == 0.0 and fr.choice.estimates[0] < min(fr.choice.estimates[1:])
    assert torch.equal(rest.image, rest.background)
    forced = R.restore_photo(y, G, replace(cfg, weight=1.0))
    inside = forced.faces[0].alpha.expand_as(forced.image) > 0.99
    assert (forced.image - rest.image).abs()[inside].mean() > 0.5
    # the comparison picture says what was pasted
    assert R.comparison_row(rest, 0, y)[1][3] == "pasted (classical)"
    assert R.comparison_row(forced, 0, y)[1][3] == "pasted (weight 1)"


@pytest.mark.parametrize("kw,match", [
    (dict(task="denoise", sigma255=5, weight=1.5), "weight"),
    (dict(task="denoise", sigma255=5, background="input"), "background .input."),
    (dict(task="cs"), "restore handles"), (dict(task="blur"), "unknown task"), (dict(task="denoise"), "sigma255"), (dict(task="superres", factor=1.5), "factor"),
    (dict(task="denoise", sigma255=5, method="bm3d"), "bm3d"), (dict(task="denoise", sigma255=5, faces="two"), "faces"),
    (dict(task="denoise", sigma255=5, min_score=float("nan")), "min_score"),
])
def test_restore_config_exception(kw, match):
    from ilo.faces.restore import RestoreConfig

    with pytest.raises(ValueError, match=match):
        RestoreConfig(**kw)


# --- templates --------------------------------------------------------------------------------
def test_template_for_ffhq_and_cache_keyed_by_weights(monkeypatch, tmp_path):
    import ilo.faces.template as tmod
    from ilo.faces.template import generator_fingerprint, template_for
    from ilo.generators import DCGANGenerator

    torch.manual_seed(0)
    ffhq = DCGANGenerator(nz=8, ngf=4, size=16, name="my-ffhq-16")
    tpl = template_for(ffhq)
    assert tpl.kind == "ffhq" and tpl.size == 16
    G = DCGANGenerator(nz=8, ngf=4, size=16, name="other")
    monkeypatch.setenv("ILO_CACHE", str(tmp_path))
    made = []

    def fake_estimate(G_, **kw):
        made.append(1)
        return Template("other", "landmarks", 16, {"5": np.full((5, 2), 0.5)}, {"fingerprint": generator_fingerprint(G_)})

    monkeypatch.setattr(tmod, "estimate_template", fake_estimate)
    first, again = template_for(G), template_for(G)
    assert made == [1] and again.landmarks["5"].tolist() == first.landmarks["5"].tolist()
    assert (tmp_path / "faces" / f"{generator_fingerprint(G)}.json").is_file()
    with torch.no_grad():  # other weights, another fingerprint: estimated afresh
        next(G.parameters()).add_(1.0)
    template_for(G)
    assert made == [1, 1]
    with pytest.raises(ValueError, match="template kind"):
        template_for(G, "mean")


@pytest.mark.parametrize("module", ["align", "warp", "paste", "choice"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"ilo.faces.{module}"))
    assert result.failed == 0 and result.attempted > 0


# --- what the operators tell the faces code -----------------------------------------------------
@pytest.mark.parametrize("op", [Inpainting.box((3, 12, 10), 2, 3, 6, 8), Denoising((3, 12, 10), 20),
                                SuperResolution((3, 24, 20), 2)], ids=["inpaint", "denoise", "superres"])
def test_crop_acts_on_the_region_under_the_observed_pixels(op):
    """A local operator's crop observes a region exactly as the whole operator observes it there."""
    s = op.observation_scale({"factor": getattr(op, "factor", None)})
    h, w = op.input_shape[1:]
    x = smooth_face(3, max(h, w))[..., :h, :w]
    box = (1, 2, 8, 9)  # observed pixels
    region = x[..., box[1] * s: box[3] * s, box[0] * s: box[2] * s]
    cropped = op.crop(box)
    assert cropped.input_shape == tuple(region.shape[1:]) and cropped.local and cropped.classical_method
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the crop's border (superres kernel)
    assert torch.allclose(cropped.A(region)[inner], op.A(x)[..., box[1]:box[3], box[0]:box[2]][inner], atol=1e-6)


def test_keep_observed_and_scale_from_the_operator():
    op = Inpainting.box((3, 8, 8), 0, 0, 4, 8)
    x, y = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    assert torch.equal(op.keep_observed(x, y), op.mask.expand_as(x))
    assert torch.equal(Denoising((3, 8, 8), 5).keep_observed(x, y), x)
    assert SuperResolution.observation_scale({"factor": 3}) == 3 and Denoising.observation_scale({"sigma": 5}) == 1
    from ilo.operators import CompressedSensing

    with pytest.raises(ValueError, match="region"):
        CompressedSensing.from_options((3, 8, 8), torch.Generator().manual_seed(0), measurements=0.5).crop((0, 0, 2, 2))


def test_bench_summaries_compare_like_with_like():
    """The benchmark's summaries: the aligned crop's gain per task and method; restore's means over
    the photos where a face was found, and its wins inside the faces."""
    from ilo.bench.faces import crop_summary, restore_summary

    rows = [{"task": "inpaint", "method": m, "crop": k, "psnr": p + (m == "ilo"), "true_mse": 0.01}
            for m in ("ilo", "csgm") for k, p in (("centre", 20.0), ("box", 21.0), ("aligned", 23.5))]
    (ilo, csgm) = crop_summary(rows)
    assert (ilo["method"], ilo["psnr_aligned"], ilo["gain_vs_centre_db"], ilo["gain_vs_box_db"]) == ("ilo", 24.5, 3.5, 2.5)
    assert csgm["gain_vs_centre_db"] == 3.5 and crop_summary(rows[:2]) == []  # a missing crop: no summary
    photos = [{"task": "denoise", "faces_found": 1, "psnr_photo": 30.0, "psnr_photo_classical": 29.0,
               "psnr_faces": f, "psnr_faces_classical": 28.0} for f in (27.0, 31.0)]
    (d,) = restore_summary(photos + [{"task": "denoise", "faces_found": 0}])
    assert (d["photos"], d["photos_without_face"], d["faces_wins"], d["faces_gain_db"]) == (2, 1, 1, 1.0)


def test_bench_replays_the_choice_at_other_margins():
    """The replay of the paste's choice: per margin the candidate with the lowest estimate plus z
    standard errors, scored by its recorded PSNR; the oracle takes each face's best."""
    from ilo.bench.faces import replay

    names = ["classical", "face@0.5", "face@1"]
    faces = [{"candidates": names, "psnr": [28.0, 29.0, 25.0], "estimates": [1.0, 0.9, 0.8], "se": [0.0, 0.05, 0.3]},
             {"candidates": names, "psnr": [30.0, 29.0, 31.0], "estimates": [1.0, 1.1, 0.5], "se": [0.0, 0.1, 0.2]}]
    rows = [{"task": "denoise", "candidates": faces[:1]}, {"task": "denoise", "candidates": faces[1:]},
            {"task": "inpaint"}]
    (d,) = replay(rows, zs=(0.0, 1.0))
    lone = [{"candidates": names, "psnr": [28.0, 29.0, 25.0], "estimates": [1.0, 0.95, 0.9],
             "se": [0.0, float("inf"), float("inf")]}]  # one held-out pixel: no spread
    again = replay([{"task": "denoise", "candidates": lone}], zs=(0.0, 1.0))[0]
    assert (again["z=0"], again["z=1"]) == (25.0, 28.0)  # the estimate alone; with a margin the reference
    # z=0: face@1 on both (25, 31); z=1: face 1 -> face@0.5 (0.95 < 1.0, 1.1), face 2 -> face@1 (0.7)
    assert (d["faces"], d["oracle"], d["classical"], d["face@1"]) == (2, 30.0, 29.0, 28.0)
    assert (d["z=0"], d["z=1"]) == (28.0, 30.0)


@pytest.mark.parametrize("task", ["inpaint", "denoise", "superres"])
def test_bench_candidates_are_what_the_restore_pastes(fake_restore, task):
    """The benchmark rebuilds every candidate of a face's choice from all measurements; the chosen
    one scores what the restored photo scores inside that face (the paste and the candidates agree)."""
    from ilo.bench.faces import candidate_scores
    from ilo.metrics import psnr

    R, G, photo, P, calls, state = fake_restore
    state["face"] = (state["face"] * 0.7).clamp(-1, 1)  # a face that is not quite the photo's
    cfg = R.RestoreConfig(task=task, sigma255=15 if task == "denoise" else None, factor=2 if task == "superres" else None)
    mask = (torch.rand(1, 1, 96, 100, generator=torch.Generator().manual_seed(3)) < 0.5).float() if task == "inpaint" else None
    y = R.degrade(photo, cfg, mask=mask, seed=2)
    truth = photo[..., :y.shape[-2] * cfg.scale, :y.shape[-1] * cfg.scale]
    rest = R.restore_photo(y, G, cfg, mask=mask)
    (face,) = candidate_scores(rest, y, R.photo_operator(cfg, tuple(y.shape), mask), truth)
    fr = rest.faces[0]
    assert face["candidates"] == fr.choice.candidates and len(face["psnr"]) == 9
    inside = (fr.alpha > 0.5).expand_as(truth)
    got = psnr(rest.image[inside][None], truth[inside][None]).item()
    assert face["psnr"][face["candidates"].index(face["chosen"])] == pytest.approx(got, abs=1e-3)


# --- `ilo restore --simulate --observed`: a random mask drawn from the seed, saved, replayable --------
def test_restore_simulate_draws_saves_and_replays_a_random_mask(fake_restore, tmp_path):
    """With --observed the command draws the mask as `ilo solve --observed` does (from the seed),
    writes it as mask.png, records it in config.json, and the saved mask given back as --mask
    reproduces the same observation; another seed draws another mask."""
    import json

    from PIL import Image

    from ilo.cli.restore import _restore_one
    from ilo.images import tensor_to_pil

    R, G, photo, *_ = fake_restore
    im = tensor_to_pil(photo)
    cfg = R.RestoreConfig(task="inpaint", weight=1.0, seed=3)
    runs = {}
    for name, seed, mask_im in (("drawn", 3, None), ("other", 4, None)):
        out = tmp_path / name
        _restore_one(tmp_path / "p.png", im, mask_im, None, replace(cfg, seed=seed), G, True, out, {}, True, 1, 0.3)
        runs[name] = out
    out = runs["drawn"]
    assert {p.name for p in out.iterdir()} >= {"mask.png", "observation.png", "restored.png", "config.json"}
    m = np.asarray(Image.open(out / "mask.png").convert("L")) > 127
    assert m.shape == (96, 100) and abs(m.mean() - 0.3) < 0.02
    expect = Inpainting.random((3, 96, 100), 0.3, torch.Generator().manual_seed(3)).mask[0, 0].numpy() > 0.5
    assert np.array_equal(m, expect)
    obs = np.asarray(Image.open(out / "observation.png"), dtype=float)
    truth = np.asarray(im, dtype=float)
    assert np.array_equal(obs[m], truth[m]) and not np.array_equal(obs[~m], truth[~m])
    config = json.loads((out / "config.json").read_text())
    assert config["observed"] == 0.3 and config["mask_seed"] == 3 and config["simulate"] is True
    other = np.asarray(Image.open(runs["other"] / "mask.png").convert("L")) > 127
    assert not np.array_equal(m, other)
    # the saved mask, given back as --mask, reproduces the observation; no mask.png is written then
    again = tmp_path / "again"
    _restore_one(tmp_path / "p.png", im, Image.open(out / "mask.png"), None, cfg, G, True, again, {}, True, 1, None)
    assert np.array_equal(np.asarray(Image.open(again / "observation.png")), obs.astype(np.uint8))
    assert not (again / "mask.png").exists() and "observed" not in json.loads((again / "config.json").read_text())


@pytest.mark.parametrize("extra,match", [
    (["--task", "inpaint", "--observed", "0.3"], "--simulate only"),
    (["--task", "denoise", "--simulate", "--observed", "0.3"], "--simulate only"),
    (["--task", "inpaint", "--simulate", "--observed", "0.3", "--mask", "MASK"], "give one"),
    (["--task", "inpaint", "--simulate", "--observed", "1.5"], "fraction in (0, 1]"),
    (["--task", "inpaint", "--simulate", "--observed", "0"], "fraction in (0, 1]"),
    (["--task", "inpaint", "--simulate"], "--simulate --observed"),
])
def test_cli_restore_observed_errors(tmp_path, capsys, extra, match):
    from PIL import Image

    from ilo.cli import main

    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "p.png")
    Image.fromarray(np.full((96, 128), 255, np.uint8)).save(tmp_path / "m.png")
    extra = [str(tmp_path / "m.png") if a == "MASK" else a for a in extra]
    with pytest.raises(SystemExit) as e:
        main(["restore", str(tmp_path / "p.png"), *extra, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and match in err and err.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_restore_drops_detections_below_min_score(fake_restore):
    """The fake detector scores its face 1.0: a threshold at or under it keeps the face, above it
    the photo has no face (the message names the threshold); the score is recorded per face."""
    R, G, photo, *_ = fake_restore
    rest = R.restore_photo(photo, G, R.RestoreConfig(task="denoise", sigma255=10, weight=1.0, min_score=1.0))
    assert len(rest.faces) == 1 and rest.faces[0].to_dict()["score"] == 1.0
    with pytest.raises(R.NoFaceFound, match="scoring at least 1.5"):
        R.restore_photo(photo, G, R.RestoreConfig(task="denoise", sigma255=10, weight=1.0, min_score=1.5))
