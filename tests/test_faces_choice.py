"""The face weight's choice on held-out measurements (ilo.faces.choice): what is held out, that
the classical restoration scored on them never sees them, and the margin of the choice."""

from __future__ import annotations

import pytest
import torch

from ilo.faces.align import Similarity
from ilo.faces.choice import (WEIGHTS, blends, choose_weight, classical_without, estimates, fit_and_all, held_out,
                             paste_region)
from ilo.faces.restore import RestoreConfig, photo_operator
from ilo.faces.warp import WarpedOperator, face_region

S = 16


def _setup(task: str, **opts):
    """A 60 x 70 photo observed by ``task``, a face of side S placed at scale 2 inside it, and the
    face's warped operator on its region."""
    g = torch.Generator().manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 9, generator=g) * 2 - 1, size=(60, 70), mode="bicubic")
    mask = None
    if task == "inpaint":
        mask = (torch.rand(1, 1, 60, 70, generator=g) < 0.4).float()
    cfg = RestoreConfig(task=task, **opts)
    f = cfg.scale
    obs_shape = (1, 3, 60 // f, 70 // f)
    op = photo_operator(cfg, obs_shape, mask)
    y = op(photo[..., :obs_shape[2] * f, :obs_shape[3] * f], torch.Generator().manual_seed(1))
    T = Similarity.from_params(2.0 / f, 8.0, (12.0 / f, 10.0 / f)).inverse()  # photo -> aligned
    box = face_region(T, S, obs_shape[2:], margin=2)
    wop = WarpedOperator(op.crop(box), T, S, box, f)
    return y, op, wop, box


@pytest.mark.parametrize("task,opts", [("inpaint", {}), ("denoise", {"sigma255": 20}), ("superres", {"factor": 2})])
def test_held_out_pixels_are_the_faces_and_drawn_from_the_seed(task, opts):
    y, op, wop, box = _setup(task, **opts)
    used = wop.weight.amax(1, keepdim=True) > 0
    h = held_out(wop, 3, 0.3)
    assert h.shape == (1, 1, *wop.weight.shape[-2:]) and bool((h.bool() <= used).all())
    assert 0.15 < float(h.sum() / used.sum()) < 0.45
    assert torch.equal(h, held_out(wop, 3, 0.3)) and not torch.equal(h, held_out(wop, 4, 0.3))
    assert held_out(wop, 3, 1e-9).sum() == 1  # at least one
    two = fit_and_all(wop, h)
    assert two.weight.shape[0] == 2 and torch.equal(two.weight[1:], wop.weight)
    assert torch.equal(two.weight[:1], wop.weight * (1 - h))
    x = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(5)) * 2 - 1
    loss = two.measurement_loss(x, y[..., box[1]:box[3], box[0]:box[2]].expand(2, -1, -1, -1))
    assert loss[1] == pytest.approx(float(wop.measurement_loss(x[1:], y[..., box[1]:box[3], box[0]:box[2]])[0]), rel=1e-6)


@pytest.mark.parametrize("task,opts", [("inpaint", {}), ("denoise", {"sigma255": 20}), ("superres", {"factor": 2})])
def test_the_classical_restoration_without_the_held_out_pixels_never_reads_them(task, opts):
    """Whatever the observation holds at the held-out pixels, the classical candidate is the same:
    their error scores it as a prediction, not as a fit."""
    y, op, wop, box = _setup(task, **opts)
    h = held_out(wop, 0, 0.2)
    a = classical_without(y, op, box, h)
    x0, y0, x1, y1 = box
    f = wop.scale
    assert a.shape == (1, 3, (y1 - y0) * f, (x1 - x0) * f)
    changed = y.clone()
    region = changed[..., y0:y1, x0:x1]
    region += 5 * h  # only the held-out pixels change
    b = classical_without(changed, op, box, h)
    assert torch.allclose(a, b, atol=1e-6)
    # and they do matter to a restoration that may read them
    whole = classical_without(y, op, box, torch.zeros_like(h))
    assert not torch.allclose(a, whole, atol=1e-3)


def test_blends_run_from_the_classical_restoration_to_the_pasted_face():
    y, op, wop, box = _setup("denoise", sigma255=20)
    c = torch.zeros(1, 3, box[3] - box[1], box[2] - box[0])
    face = torch.full((1, 3, S, S), 0.8)
    cands = blends(c, face, wop)
    assert cands.shape == (len(WEIGHTS), 1, *c.shape[1:])
    assert torch.equal(cands[0], c) and cands[-1].max() == pytest.approx(0.8)
    assert torch.allclose(cands[2], cands[-1] / 2)  # linear in the weight
    errs = estimates(cands, wop, y[..., box[1]:box[3], box[0]:box[2]], held_out(wop, 0))
    assert errs.shape[:2] == (len(WEIGHTS), 1) and bool((errs >= 0).all())


def test_a_margin_over_the_classical_restoration_counts_the_noise():
    """With a margin (z = 1.5), a lower mean that is noise (a large paired spread) keeps the
    classical restoration and the same mean with a small spread wins; with none (the default,
    decided on the tuning photos) the lowest mean wins."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 400, generator=g) + 1
    noisy = base - 0.02 + torch.randn(1, 1, 400, generator=g)  # 0.02 lower on average, spread 1
    tight = base - 0.02 + 0.01 * torch.randn(1, 1, 400, generator=g)
    assert choose_weight(torch.cat([base, noisy]), z=1.5)[0] == 0
    assert choose_weight(torch.cat([base, tight]), z=1.5)[0] == 1
    k, est, se = choose_weight(torch.cat([base, noisy]))  # the default margin: none
    assert (k == 1) == bool(est[1] < est[0]) and se[0] == 0 and se[1] > 0.03


@pytest.mark.parametrize("task,opts", [("inpaint", {}), ("superres", {"factor": 2})])
def test_the_residual_candidate_is_the_face_where_it_explains_the_measurements(task, opts):
    """A photo that is exactly the warped face (noiseless): its residual is zero, so the face plus
    the classical restoration of its residual is the warped face itself; a wrong face is
    corrected towards the photo; neither reads the held-out pixels."""
    from ilo.faces.align import sampling_grid
    from ilo.faces.warp import warp

    y0_, op, wop, box = _setup(task, **opts)
    f = wop.scale
    g = torch.Generator().manual_seed(7)
    face = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g) * 2 - 1, size=(S, S), mode="bicubic")
    face = face.clamp(-1, 1)
    H, W = y0_.shape[-2:]
    photo = warp(face, sampling_grid(wop.transform, (S, S), (0, 0, W, H), f))
    y = op.A(photo)
    h = held_out(wop, 0, 0.2)
    x0, y0, x1, y1 = box
    region = photo[..., y0 * f:y1 * f, x0 * f:x1 * f]
    same = classical_without(y, op, box, h, base=(face, wop))
    assert torch.allclose(same, region, atol=1e-5)
    wrong = classical_without(y, op, box, h, base=(-face, wop))
    assert (wrong - region).abs().mean() < 0.5 * (wop.warp(-face) - region).abs().mean()
    changed = y.clone()
    changed[..., y0:y1, x0:x1] += 5 * h
    assert torch.allclose(classical_without(changed, op, box, h, base=(-face, wop)), wrong, atol=1e-5)


def test_paste_region_blends_the_faces_window_only():
    y, op, wop, box = _setup("denoise", sigma255=20)
    canvas = torch.zeros(1, 3, *y.shape[-2:])
    x0, y0, x1, y1 = box
    image = torch.ones(1, 3, y1 - y0, x1 - x0)
    assert torch.equal(paste_region(canvas, image, wop, 0.0), canvas)
    out = paste_region(canvas, image, wop, 1.0)
    from ilo.faces.paste import feather_window
    from ilo.faces.warp import warp

    alpha = warp(feather_window(S), wop.grid)
    assert torch.allclose(out[..., y0:y1, x0:x1], alpha.expand(1, 3, -1, -1))
    assert out[..., :y0, :].abs().sum() == 0 and out[..., y1:, :].abs().sum() == 0
    half = paste_region(canvas, image, wop, 0.5)
    assert torch.allclose(half, out / 2)


def test_one_held_out_pixel_still_chooses_by_the_estimate():
    """A tiny face with one held-out pixel: no spread, so every standard error but the reference's
    is infinite; without a margin the lowest estimate is taken, with one the reference is kept."""
    e = torch.tensor([[[2.0]], [[0.5]], [[0.1]]])
    k, est, se = choose_weight(e)
    assert k == 2 and torch.isinf(se[1:]).all()
    assert choose_weight(e, z=1.5)[0] == 0


@pytest.mark.parametrize("observed,held,left", [(1, 0, 1), (2, 1, 1)])
def test_a_face_with_almost_no_observed_pixel(observed, held, left):
    """Inpainting that observes one or two pixels of the face: with one nothing can be held out
    and the choice keeps the classical restoration; with two one is held out and one fitted."""
    from ilo.faces.choice import choose

    T = Similarity.from_params(1.0, 0.0, (-10.0, -10.0))  # the face at (10, 10), side S
    mask = torch.zeros(1, 1, 40, 40)
    for k in range(observed):
        mask[..., 15 + k, 15] = 1
    op = photo_operator(RestoreConfig(task="inpaint"), (1, 3, 40, 40), mask)
    box = face_region(T, S, (40, 40), margin=2)
    wop = WarpedOperator(op.crop(box), T, S, box)
    h = held_out(wop, 0, 0.5)
    used = wop.weight.amax(1, keepdim=True) > 0
    assert int(used.sum()) == observed and int(h.sum()) == held and int((used.float() - h).sum()) == left
    if held == 0:
        y = op(torch.zeros(1, 3, 40, 40))
        c = choose(y, op, wop, torch.zeros(1, 3, S, S), h, 0)
        assert (c.choice, c.weight, c.held_out) == ("classical", 0.0, 0)
