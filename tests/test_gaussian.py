"""The generator's Gaussian prior (ilo.solvers.gaussian): fit, linear MMSE inpainting and
super-resolution (isotropic and harmonic remainders), cache, self-tuning."""

from __future__ import annotations

import pytest
import torch

from ilo import metrics as M
from ilo.operators import Inpainting, SuperResolution
from ilo.solvers import gaussian
from ilo.solvers.config import SelectionConfig
from ilo.solvers.gaussian import (AUGMENT, PLAIN, Augment, GaussianConfig, GaussianPrior, fit_prior, gaussian_inpaint,
                                  posterior_mean, prior_for, supports)

SHAPE = (3, 16, 16)


def _low_rank_prior(k: int = 5, residual: float = 1e-6, seed: int = 0) -> GaussianPrior:
    g = torch.Generator().manual_seed(seed)
    D = SHAPE[0] * SHAPE[1] * SHAPE[2]
    V, _ = torch.linalg.qr(torch.randn(D, k, generator=g))
    return GaussianPrior(0.1 * torch.randn(D, generator=g), V, torch.linspace(2.0, 0.5, k), residual, SHAPE).check()


def test_fit_prior_is_an_orthonormal_descending_pca_of_the_generator(tiny_dcgan):
    prior = fit_prior(tiny_dcgan, samples=1024, components=40, augment=PLAIN)
    V = prior.basis
    assert V.shape == (768, 40) and prior.shape == tuple(tiny_dcgan.image_shape)
    torch.testing.assert_close(V.T @ V, torch.eye(40), atol=1e-4, rtol=0)
    assert bool((prior.variances[:-1] >= prior.variances[1:]).all()) and prior.residual > 0
    # the mean is the mean of the generator's images: close to that of another sample
    with torch.no_grad():
        other = tiny_dcgan(tiny_dcgan.sample_latent(1024, torch.Generator().manual_seed(99))).flatten(1)
    assert float((other.mean(0) - prior.mean).abs().max()) < 0.05
    # the components explain most of the variance of unseen images, the remainder the rest
    c = (other - prior.mean) @ V
    explained = float(c.var(0).sum() / (other - prior.mean).var(0).sum())
    assert explained > 0.8
    with pytest.raises(ValueError, match="samples"):
        fit_prior(tiny_dcgan, samples=1)


def test_augment_flips_shifts_and_zooms_reproducibly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16, generator=g) * 2 - 1
    assert PLAIN.identity and PLAIN(x, g) is x and PLAIN.tag == "plain"
    # flips alone: each image exactly itself or its mirror, both kinds present
    flips = Augment(flip=True, shift=0.0, zoom=(1.0, 1.0))(x, torch.Generator().manual_seed(1))
    same = (flips - x).abs().flatten(1).amax(1) < 1e-5
    mirrored = (flips - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert bool((same | mirrored).all()) and 10 < int(same.sum()) < 54
    # the default: every image changed, within the range, the same draws give the same images
    a = AUGMENT(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and bool(((a - x).abs().flatten(1).amax(1) > 0.01).all())
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    torch.testing.assert_close(AUGMENT(x, torch.Generator().manual_seed(2)), a, atol=0, rtol=0)
    # a ramp zoomed in 2x about the centre: half the slope per pixel
    ramp = torch.linspace(-0.9, 0.9, 16).expand(1, 3, 16, 16).contiguous()
    zoomed = Augment(flip=False, shift=0.0, zoom=(2.0, 2.0))(ramp, torch.Generator())
    slope = lambda im: float(im[0, 0, 0, 9] - im[0, 0, 0, 6])
    assert slope(zoomed) == pytest.approx(slope(ramp) / 2, rel=1e-3)
    assert AUGMENT.tag != PLAIN.tag and "f-" in AUGMENT.tag
    for bad in (dict(shift=0.6), dict(zoom=(1.2, 1.1)), dict(zoom=(0.0, 1.0))):
        with pytest.raises(ValueError, match="augmentation"):
            Augment(**bad)  # type: ignore[arg-type]


def test_an_augmented_prior_is_mirror_symmetric_and_cached_apart(tiny_dcgan, tmp_path, monkeypatch):
    monkeypatch.setattr(gaussian, "cache_folder", lambda: tmp_path)
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    plain = prior_for(tiny_dcgan, samples=2048, components=16, augment=PLAIN)
    flipped = prior_for(tiny_dcgan, samples=2048, components=16, augment=Augment(shift=0.0, zoom=(1.0, 1.0)))
    mirror = lambda p: float((p.mean.view(p.shape) - p.mean.view(p.shape).flip(-1)).abs().mean())
    assert mirror(plain) > 0.003 and mirror(flipped) < mirror(plain) / 3
    assert gaussian.cache_path(tiny_dcgan, 2048, 16, augment=PLAIN) != gaussian.cache_path(tiny_dcgan, 2048, 16)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert GaussianConfig().to_dict()["augment"] == AUGMENT.to_dict()
    assert GaussianConfig(augment=False).to_dict()["augment"]["flip"] is False


@pytest.mark.parametrize("width", [6, 5])
def test_mirror_pca_is_the_pca_of_the_images_and_their_mirrors(width):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(30, 2, 3, width, generator=g) * torch.linspace(0.2, 2.0, width)
    X -= X.mean(0)
    both = torch.cat([X, X.flip(-1)]).flatten(1)  # the 2n rows the split never forms
    D = both.shape[1]
    torch.manual_seed(0)
    V, S2, norm = gaussian.mirror_pca(X, D)
    k = V.shape[1]
    assert norm == pytest.approx(float(both.square().sum()), rel=1e-5)
    torch.testing.assert_close(V.T @ V, torch.eye(k), atol=1e-4, rtol=0)
    assert bool((S2[:-1] >= S2[1:]).all())
    # the same spectrum and covariance as an exact eigendecomposition of all 2n rows
    exact = torch.linalg.eigvalsh(both.T.double() @ both.double()).flip(0)[:k].float()
    torch.testing.assert_close(S2, exact, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close((V * S2) @ V.T, both.T @ both, atol=2e-3, rtol=1e-3)
    # each component mirror-symmetric or antisymmetric
    img = V.T.reshape(k, 2, 3, width)
    sym = (img - img.flip(-1)).flatten(1).abs().amax(1) < 1e-5
    anti = (img + img.flip(-1)).flatten(1).abs().amax(1) < 1e-5
    assert bool((sym ^ anti).all()) and int(sym.sum()) > 0 and int(anti.sum()) > 0


@pytest.mark.parametrize("symmetric", [True, False])
def test_mirror_pca_computes_a_half_again_where_it_holds_more_than_its_share(symmetric, monkeypatch):
    g = torch.Generator().manual_seed(4)
    P = torch.randn(20, 2, 3, 6, generator=g)
    sign = 1.0 if symmetric else -1.0  # 14 strong patterns of one kind, 6 weak ones of the other
    P = torch.cat([P[:14] + sign * P[:14].flip(-1), P[14:] - sign * P[14:].flip(-1)])
    weight = torch.tensor([3.0] * 14 + [0.3] * 6)
    X = torch.einsum("nr,r,rchw->nchw", torch.randn(40, 20, generator=g), weight, P)  # each half's rank at most 16
    X -= X.mean(0)
    sizes = []
    pca = gaussian._pca
    monkeypatch.setattr(gaussian, "_pca", lambda c, k, its: sizes.append(k) or pca(c, k, its))
    both = torch.cat([X, X.flip(-1)]).flatten(1)
    values, vectors = torch.linalg.eigh(both.T.double() @ both.double())
    values, vectors = values.flip(0)[:16], vectors.flip(1)[:, :16]  # the exact leading 16
    torch.manual_seed(0)
    V, S2, _ = gaussian.mirror_pca(X, 16, share=0.75)
    assert sizes == [12, 12, 16]  # 12 of each, then the strong half (all its 12 kept) again in full
    torch.testing.assert_close(S2.double(), values, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(((V * S2) @ V.T).double(), (vectors * values) @ vectors.T, atol=1e-2, rtol=1e-3)
    sizes.clear()
    gaussian.mirror_pca(torch.randn(40, 2, 3, 6, generator=g), 16, share=0.75)  # a balanced split: no second run
    assert sizes == [12, 12]


def test_a_flipping_fit_draws_one_image_per_two_views_and_is_exactly_mirror_symmetric(tiny_dcgan, monkeypatch):
    drawn = []
    sample = tiny_dcgan.sample_latent
    monkeypatch.setattr(tiny_dcgan, "sample_latent", lambda n, gen: drawn.append(n) or sample(n, gen))
    prior = fit_prior(tiny_dcgan, samples=512, components=24, batch=100)
    assert sum(drawn) == 512 // (2 * gaussian.VIEWS) and max(drawn) == 100 and gaussian.VIEWS > 1
    mean = prior.mean.view(prior.shape)
    torch.testing.assert_close(mean, mean.flip(-1), atol=0, rtol=0)
    img = prior.basis.T.reshape(-1, *prior.shape)
    mirrored = (img - img.flip(-1)).flatten(1).abs().amax(1) < 1e-5
    assert bool((mirrored | ((img + img.flip(-1)).flatten(1).abs().amax(1) < 1e-5)).all())
    drawn.clear()
    fit_prior(tiny_dcgan, samples=512, components=24, batch=100, views=1)
    assert sum(drawn) == 256
    drawn.clear()
    fit_prior(tiny_dcgan, samples=512, components=24, batch=100, augment=PLAIN)  # the plain fit: every image drawn
    assert sum(drawn) == 512
    drawn.clear()
    fit_prior(tiny_dcgan, samples=2, components=24, augment=PLAIN, views=3)  # nothing to view twice
    assert sum(drawn) == 2
    assert gaussian.FIT_VERSION in gaussian.cache_path(tiny_dcgan, 512, 24).name


def test_the_fit_runs_on_every_core_only_where_the_threads_were_chosen_automatically(tiny_dcgan, monkeypatch):
    from ilo import runtime

    seen = []
    svd = torch.svd_lowrank
    monkeypatch.setattr(torch, "svd_lowrank", lambda *a, **k: seen.append(torch.get_num_threads()) or svd(*a, **k))
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        for source, expected in (("auto", 3), ("--threads", 1), ("environment", 1)):
            seen.clear()
            monkeypatch.setattr(runtime, "_current", runtime.Runtime(1, "PASSIVE", 4.0, 3, source, True))
            fit_prior(tiny_dcgan, samples=64, components=4)
            assert seen and set(seen) == {expected} and torch.get_num_threads() == 1, source
        seen.clear()
        monkeypatch.setattr(runtime, "_current", None)  # a host program's own threads
        fit_prior(tiny_dcgan, samples=64, components=4)
        assert set(seen) == {1}
    finally:
        torch.set_num_threads(before)


def test_an_image_in_the_span_is_recovered_from_part_of_its_pixels():
    prior = _low_rank_prior()
    c = torch.tensor([1.0, -0.5, 0.8, 0.3, -1.2])
    x = (prior.mean + prior.basis @ (c * 2)).view(1, *SHAPE)
    assert float(x.abs().max()) < 1  # inside the clamp
    op = Inpainting.random(SHAPE, 0.3, torch.Generator().manual_seed(1))  # 77 pixels x 3 >> 5 components
    xh = gaussian_inpaint(op(x), op, prior)
    assert float((xh - x).abs().max()) < 1e-3
    # far from the truth without the measurements: the prior's mean alone
    assert float((prior.mean.view(1, *SHAPE) - x).abs().max()) > 0.05


def test_centred_at_a_base_and_noise_and_errors():
    prior = _low_rank_prior(residual=0.01)
    g = torch.Generator().manual_seed(2)
    x = (prior.mean + prior.basis @ torch.randn(5, generator=g)).view(1, *SHAPE).clamp(-1, 1)
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(3))
    y = op(x)
    far = torch.full_like(x, 0.9)
    near = gaussian_inpaint(y, op, prior)
    from_far = gaussian_inpaint(y, op, prior, base=far)
    assert float(M.psnr(near, x)) > float(M.psnr(from_far, x))  # the prior's mean is the better centre here
    m = op.mask.bool().expand_as(x)
    assert float((near - x)[m].abs().max()) < 0.02  # noiseless: the observed pixels nearly kept
    with pytest.raises(ValueError, match="inpaints"):
        gaussian_inpaint(y, SuperResolution(SHAPE, 2), prior)
    with pytest.raises(ValueError, match="images"):
        gaussian_inpaint(torch.zeros(1, 3, 8, 8), Inpainting.random((3, 8, 8), 0.5, torch.Generator()), prior)
    with pytest.raises(ValueError, match="shapes"):
        GaussianPrior(prior.mean[:10], prior.basis, prior.variances, 0.1, SHAPE).check()
    with pytest.raises(ValueError, match="non-positive"):
        GaussianPrior(prior.mean, prior.basis, -prior.variances, 0.1, SHAPE).check()


def test_prior_for_caches_on_disk_and_refits_a_bad_file(tiny_dcgan, tmp_path, monkeypatch):
    monkeypatch.setattr(gaussian, "cache_folder", lambda: tmp_path)
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    first = prior_for(tiny_dcgan, samples=256, components=16)
    path = gaussian.cache_path(tiny_dcgan, 256, 16)
    assert path.is_file() and path.parent == tmp_path and not list(tmp_path.glob("*.part"))
    monkeypatch.setattr(gaussian, "_MEMORY", {})
    monkeypatch.setattr(gaussian, "fit_prior", lambda *a, **k: pytest.fail("refitted a good cache file"))
    again = prior_for(tiny_dcgan, samples=256, components=16)
    torch.testing.assert_close(again.basis, first.basis)
    # a truncated file, or one that is not plain tensors, is refitted (never executed)
    monkeypatch.setattr(gaussian, "fit_prior", fit_prior)
    for bad in (path.read_bytes()[:100], b"cos\nsystem\n(S'echo hi'\ntR."):
        path.write_bytes(bad)
        monkeypatch.setattr(gaussian, "_MEMORY", {})
        torch.testing.assert_close(prior_for(tiny_dcgan, samples=256, components=16).basis, first.basis)
    # another generator (other weights): another file
    other = type(tiny_dcgan)(nz=8, ngf=4, size=16).eval()
    assert gaussian.cache_path(other, 256, 16) != path


def test_supports_small_images_only(tiny_dcgan):
    from ilo.generators import StyleGAN2Generator

    assert supports(tiny_dcgan)
    big = StyleGAN2Generator.__new__(StyleGAN2Generator)
    big.image_shape = (3, 1024, 1024)
    assert not supports(big)


def test_self_tuned_ilo_has_the_gaussian_candidates_for_sparse_masks_boxes_superres_and_cs(tiny_dcgan, one_thread):
    from ilo.solvers import preset_for, solve

    g = torch.Generator().manual_seed(5)
    x = tiny_dcgan(tiny_dcgan.sample_latent(2, g))
    rand = Inpainting.random(SHAPE, 0.15, torch.Generator().manual_seed(0))
    cfg = preset_for("ilo", tiny_dcgan, rand, total_steps=8, restarts=1)
    sel = solve(rand(x), rand, tiny_dcgan, "ilo", cfg, seeds=[0, 1]).selection
    assert sel["classical"][0] == "gaussian" and "gaussian" in sel["candidates"]  # first: the sparse reference
    assert any(n.endswith("+gaussian") for n in sel["candidates"])
    # above SelectionConfig.gaussian_max_observed (0.2) observed, not a candidate
    dense = Inpainting.random(SHAPE, 0.3, torch.Generator().manual_seed(0))
    cfg = preset_for("ilo", tiny_dcgan, dense, total_steps=8, restarts=1)
    sel = solve(dense(x), dense, tiny_dcgan, "ilo", cfg, seeds=[0, 1]).selection
    assert sel["classical"] == ["biharmonic", "tv-inpaint"] and "gaussian" not in sel["candidates"]
    with pytest.raises(ValueError, match="gaussian_max_observed"):
        SelectionConfig(gaussian_max_observed=1.5)
    box = Inpainting.box(SHAPE, 5, 5, 11, 11)
    cfg = preset_for("ilo", tiny_dcgan, box, total_steps=8, restarts=1)
    sel = solve(box(x), box, tiny_dcgan, "ilo", cfg, seeds=[0, 1]).selection
    assert sel["classical"][0] == "gaussian" and "gaussian" in sel["candidates"]  # a box: the reference
    # super-resolution: the first classical method; compressed sensing: the isotropic remainder's
    sr = SuperResolution(SHAPE, 4)
    cfg = preset_for("ilo", tiny_dcgan, sr, total_steps=8, restarts=1)
    sel = solve(sr(x), sr, tiny_dcgan, "ilo", cfg, seeds=[0, 1]).selection
    assert sel["classical"] == ["gaussian", "tv-superres"] and "gaussian" in sel["candidates"]
    from ilo.operators import CompressedSensing

    cs = CompressedSensing(SHAPE, 0.2, torch.Generator().manual_seed(1))
    cfg = preset_for("ilo", tiny_dcgan, cs, total_steps=8, restarts=1)
    sel = solve(cs(x), cs, tiny_dcgan, "ilo", cfg, seeds=[0, 1]).selection
    assert sel["classical"] == ["gaussian-isotropic", "tv-cs"] and "gaussian-isotropic" in sel["candidates"]
    assert any(n.endswith("+gaussian-isotropic") for n in sel["candidates"])  # on each stage's residual too


def test_which_problems_take_the_prior():
    from ilo.operators import CompressedSensing, Denoising
    from ilo.solvers.selection import HeldOut, wants_prior

    sel = SelectionConfig()
    shape = (3, 64, 64)
    sparse = Inpainting.random(shape, 0.1, torch.Generator().manual_seed(0))
    dense = Inpainting.random(shape, 0.3, torch.Generator().manual_seed(0))
    box = Inpainting.box(shape, 21, 21, 42, 42)
    assert wants_prior(sparse, sel) and not wants_prior(dense, sel) and wants_prior(box, sel)
    assert wants_prior(SuperResolution(shape, 4), sel) and wants_prior(SuperResolution(shape, 16), sel)
    # x2 of a 64-px image has 3072 measurements, over gaussian.MAX_MEASUREMENTS: its A^T would be dense
    assert not gaussian.solves(SuperResolution(shape, 2)) and not wants_prior(SuperResolution(shape, 2), sel)
    keep = torch.ones(1, 3, 16, 16)
    assert gaussian.solves(HeldOut(SuperResolution(shape, 4), keep))
    assert not wants_prior(Denoising(shape, 0.1), sel)
    cs = CompressedSensing(shape, 100, torch.Generator().manual_seed(0))
    assert wants_prior(cs, sel) and wants_prior(HeldOut(cs, torch.ones(1, 100)), sel)
    assert not wants_prior(CompressedSensing(shape, gaussian.MAX_MEASUREMENTS + 1, torch.Generator()), sel)
    assert not wants_prior(sparse, SelectionConfig(classical=("biharmonic",)))  # not among the methods
    assert not wants_prior(box, SelectionConfig(box_classical=("harmonic",)))


def _smooth_images(n: int, seed: int) -> torch.Tensor:
    """Smooth random images in [-0.6, 0.6]: low frequencies only, so no clamping."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, SHAPE[0], 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bicubic", align_corners=False)
    return 0.6 * x / x.abs().amax((1, 2, 3), keepdim=True)


@pytest.mark.parametrize("op", [Inpainting.box(SHAPE, 4, 4, 12, 12),
                                Inpainting.random(SHAPE, 0.3, torch.Generator().manual_seed(4))],
                         ids=["box", "random"])
def test_harmonic_remainder_without_components_is_harmonic_inpainting(op):
    from ilo.solvers.classical import classical

    D = SHAPE[0] * SHAPE[1] * SHAPE[2]
    none = GaussianPrior(torch.zeros(D), torch.eye(D)[:, :3], torch.full((3,), 1e-12), 0.01, SHAPE).check()
    x = _smooth_images(2, 8)
    y = op(x)
    out = posterior_mean(y, op, none)
    torch.testing.assert_close(out, classical(y, op, "harmonic").image, atol=2e-3, rtol=0)
    assert torch.equal(out[op.mask.bool().expand_as(x)], y[op.mask.bool().expand_as(x)])  # observed pixels kept
    # centred at a base: the base plus the harmonic fill of the residual
    base = _smooth_images(2, 9)
    centred = posterior_mean(y, op, none, base=base)
    fill = classical(y - op.A(base), op, "harmonic").image
    torch.testing.assert_close(centred, (base + fill).clamp(-1, 1), atol=2e-3, rtol=0)


def test_harmonic_remainder_recovers_the_span_and_beats_either_part_alone():
    prior = _low_rank_prior()
    c = torch.tensor([1.0, -0.5, 0.8, 0.3, -1.2])
    x = (prior.mean + prior.basis @ (c * 2)).view(1, *SHAPE)
    box = Inpainting.box(SHAPE, 4, 4, 12, 12)
    torch.testing.assert_close(posterior_mean(box(x), box, prior, scale=1e-6), x, atol=1e-3, rtol=0)
    # an image = a span image + a smooth one: the harmonic remainder fills it better than
    # the components with an isotropic remainder, or than harmonic inpainting alone
    from ilo.solvers.classical import classical

    mix = (0.5 * x + _smooth_images(1, 3)).clamp(-1, 1)
    y = box(mix)
    both = M.psnr(posterior_mean(y, box, prior), mix)
    assert float(both) > float(M.psnr(posterior_mean(y, box, prior, remainder="isotropic"), mix)) + 1
    assert float(both) > float(M.psnr(classical(y, box, "harmonic").image, mix)) + 1
    with pytest.raises(ValueError, match="remainder"):
        posterior_mean(y, box, prior, remainder="cubic")


@pytest.mark.parametrize("remainder", ["harmonic", "isotropic"])
def test_super_resolution_posterior_mean_fits_the_kept_measurements(remainder):
    from ilo.solvers.selection import HeldOut

    prior = _low_rank_prior(residual=0.01)
    x = 0.5 * (0.5 * (prior.mean + prior.basis @ torch.randn(5, generator=torch.Generator().manual_seed(6))).view(1, *SHAPE)
               + _smooth_images(1, 5)).clamp(-0.9, 0.9)  # small: the posterior mean is not clamped
    op = SuperResolution(SHAPE, 4)  # 48 measurements
    y = op(x)
    xh = posterior_mean(y, op, prior, remainder=remainder)
    torch.testing.assert_close(op(xh), y, atol=1e-4, rtol=0)  # noiseless: the measurements are met
    assert float(M.psnr(xh, x)) > float(M.psnr(prior.mean.view(1, *SHAPE), x))
    in_span = (prior.mean + prior.basis @ torch.tensor([1.0, -0.5, 0.8, 0.3, -1.2])).view(1, *SHAPE)
    torch.testing.assert_close(posterior_mean(op(in_span), op, prior, remainder=remainder, scale=1e-8), in_span,
                               atol=1e-3, rtol=0)  # 48 measurements, 5 components
    # kept measurements only: the others are never read
    keep = (torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    held = HeldOut(op, keep)
    a = posterior_mean(y, held, prior, remainder=remainder)
    assert torch.equal(a, posterior_mean(y + (1 - keep) * 0.3, held, prior, remainder=remainder))
    torch.testing.assert_close(held.A(a), keep * y, atol=1e-4, rtol=0)
    assert float((op(a) - y).abs().max()) > 1e-3  # the held-out ones are not fitted


def test_banded_solve_and_the_laplacian():
    import numpy as np
    import scipy.sparse as sp

    from ilo.solvers.classical import grid_laplacian

    L = grid_laplacian(5, 7)
    assert (L != L.T).nnz == 0 and np.allclose(L.diagonal()[:1], 2)  # a corner: two outside neighbours are itself
    u = np.random.default_rng(0).random(35) > 0.4
    A = (L + 1e-3 * sp.identity(35)).tocsr()[u][:, u]
    rhs = np.random.default_rng(1).standard_normal((int(u.sum()), 4))
    np.testing.assert_allclose(gaussian._banded_solve(A, rhs), np.linalg.solve(A.toarray(), rhs), atol=1e-8)


@pytest.mark.parametrize("remainder", ["harmonic", "isotropic"])
def test_compressed_sensing_posterior_mean_is_the_dense_formula(remainder):
    """Against ``m + Σ Aᵀ (A Σ Aᵀ + s² I)⁻¹ (y - A m)`` built from dense matrices: ``A`` from
    :meth:`CompressedSensing.dense_matrix`, ``Σ = V Λ Vᵀ + R`` with ``R`` the remainder's
    covariance applied to the identity; and for the kept measurements of a held-out split."""
    from ilo.operators import CompressedSensing
    from ilo.operators.base import GaussianNoise
    from ilo.solvers.selection import HeldOut

    prior = _low_rank_prior(residual=0.01)
    D = SHAPE[0] * SHAPE[1] * SHAPE[2]
    op = CompressedSensing(SHAPE, 60, torch.Generator().manual_seed(3), noise=GaussianNoise(0.05))
    x = (0.5 * _smooth_images(2, 6) + 0.3 * (prior.basis @ torch.randn(5, 2, generator=torch.Generator().manual_seed(2))
                                           ).T.reshape(2, *SHAPE)).clamp(-0.9, 0.9)
    y = op.A(x) + 0.05 * torch.randn(2, 60, generator=torch.Generator().manual_seed(4))
    A = op.dense_matrix().double()
    gamma = 0.5
    eye = torch.eye(D, dtype=torch.float64).view(D, *SHAPE)
    if remainder == "isotropic":
        R = gamma * prior.residual * torch.eye(D, dtype=torch.float64)
    else:
        import numpy as np  # R = γ (L + εI)⁻¹ per channel, from the DCT that diagonalises the grid's Laplacian
        from scipy.fft import dctn, idctn

        H, W = SHAPE[1:]
        eig = (2 - 2 * np.cos(np.pi * np.arange(H) / H))[:, None] + (2 - 2 * np.cos(np.pi * np.arange(W) / W))[None]
        R = torch.from_numpy(idctn(dctn(eye.numpy(), axes=(2, 3), norm="ortho") / (eig + gaussian.HARMONIC_EPSILON),
                                   axes=(2, 3), norm="ortho").reshape(D, D) * gamma)
    V, lam = prior.basis.double(), prior.variances.double()
    S = V @ torch.diag(lam) @ V.T + R
    m = prior.mean.double()

    def dense(rows):
        Ar = A[rows]
        K = Ar @ S @ Ar.T + 0.05 ** 2 * torch.eye(len(rows), dtype=torch.float64)
        r = y.double()[:, rows] - m @ Ar.T
        return (m + (S @ Ar.T @ torch.linalg.solve(K, r.T)).T).view(2, *SHAPE).clamp(-1, 1)

    out = posterior_mean(y, op, prior, remainder=remainder, scale=gamma)
    torch.testing.assert_close(out.double(), dense(torch.arange(60)), atol=2e-4, rtol=0)
    keep = (torch.rand(1, 60, generator=torch.Generator().manual_seed(5)) > 0.3).float()
    assert gaussian._PRIOR_GRAM[op][0][1:] == (remainder, gamma)  # A Σ Aᵀ kept for the next call on op
    held = posterior_mean(y, HeldOut(op, keep), prior, remainder=remainder, scale=gamma)  # reusing it
    torch.testing.assert_close(held.double(), dense(keep[0].nonzero()[:, 0]), atol=2e-4, rtol=0)
    assert float((held - out).abs().max()) > 1e-3  # the held-out measurements are not used
    other = posterior_mean(y, op, prior, remainder=remainder, scale=2 * gamma)  # another γ: computed afresh
    assert gaussian._PRIOR_GRAM[op][0][1:] == (remainder, 2 * gamma) and float((other - out).abs().max()) > 1e-4
    gaussian._PRIOR_GRAM.clear()
    torch.testing.assert_close(posterior_mean(y, op, prior, remainder=remainder, scale=2 * gamma), other, rtol=0, atol=0)


def test_compressed_sensing_takes_the_prior_and_its_isotropic_remainder(tiny_dcgan):
    from ilo.operators import CompressedSensing
    from ilo.solvers import preset_for, solve

    x = tiny_dcgan(tiny_dcgan.sample_latent(2, torch.Generator().manual_seed(7)))
    op = CompressedSensing(SHAPE, 0.2, torch.Generator().manual_seed(0))
    y = op(x)
    assert gaussian.solves(op) and gaussian.remainder_for(op) == "isotropic"
    assert gaussian.remainder_for(SuperResolution(SHAPE, 4)) == "harmonic"
    assert not gaussian.solves(CompressedSensing((3, 64, 64), gaussian.MAX_MEASUREMENTS + 1, torch.Generator()))
    cfg = preset_for("gaussian", tiny_dcgan, op)
    assert cfg.remainder == "isotropic"
    res = solve(y, op, tiny_dcgan, "gaussian", GaussianConfig(samples=512, components=32, augment=False,
                                                              remainder="isotropic"))
    assert res.config["remainder"] == "isotropic"
    # in range (the prior of the generator's images as they are), far better than the adjoint or the prior's mean
    prior = prior_for(tiny_dcgan, 512, 32, augment=PLAIN)
    assert bool((M.psnr(res.image, x) > M.psnr(prior.mean.view(1, *SHAPE).expand_as(x), x) + 3).all())
    assert bool((M.psnr(res.image, x) > M.psnr(op.A_adjoint(y), x) + 3).all())


def test_gaussian_method_behind_solve_and_the_command_line(tiny_dcgan, digiface, tmp_path, capsys):
    import json

    from ilo.cli import main
    from ilo.solvers import GaussianConfig, solve

    x = tiny_dcgan(tiny_dcgan.sample_latent(2, torch.Generator().manual_seed(7)))
    op = Inpainting.random(SHAPE, 0.2, torch.Generator().manual_seed(0))
    y = op(x)
    res = solve(y, op, tiny_dcgan, "gaussian", GaussianConfig(samples=512, components=32, augment=False))
    m = op.mask.bool().expand_as(x)
    assert res.method == "gaussian" and torch.equal(res.image[m], y[m])  # noiseless: observed pixels kept
    assert res.config["samples"] == 512 and res.config["kept_components"] <= 32
    # in range (the prior of the generator's images as they are), it beats a mean fill of the holes by far
    mean_fill = torch.where(m, y, y.sum((2, 3), keepdim=True) / op.mask.sum())
    assert bool((M.psnr(res.image, x) > M.psnr(mean_fill, x) + 3).all())
    from ilo.operators import Denoising

    with pytest.raises(ValueError, match="Inpainting, SuperResolution and CompressedSensing"):
        solve(torch.zeros(1, *SHAPE), Denoising(SHAPE, 0.1), tiny_dcgan, "gaussian")
    sr = SuperResolution(SHAPE, 4)
    up = solve(sr(x), sr, tiny_dcgan, "gaussian", GaussianConfig(samples=512, components=32, augment=False))
    assert up.config["remainder"] == "harmonic" and float((sr(up.image) - sr(x)).abs().max()) < 1e-3
    assert bool((M.psnr(up.image, x) > M.psnr(sr.A_adjoint(sr(x)) * 16, x)).all())  # beats nearest-neighbour-like
    with pytest.raises(ValueError, match="the generator draws 3x16x16"):  # an operator for other images
        solve(torch.zeros(1, 3, 32, 32), SuperResolution((3, 64, 64), 2), tiny_dcgan, "gaussian")
    from ilo.generators import load_generator

    with pytest.raises(ValueError, match="measurements"):  # refused before any fit
        solve(torch.zeros(1, 3, 32, 32), SuperResolution((3, 64, 64), 2), load_generator("digiface-dcgan"), "gaussian")
    with pytest.raises(ValueError, match="invalid Gaussian config"):
        GaussianConfig(samples=1)

    def run(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        return e.value.code, capsys.readouterr().err

    base = ["solve", "--generator", "digiface-dcgan", "--quiet", "--truth-seed", "3", "--method", "gaussian"]
    code, err = run(base + ["--task", "inpaint", "--observed", "0.1", "--out", str(tmp_path / "g")])
    assert code == 0, err
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text())
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    assert metrics["method"] == "gaussian" and metrics["psnr"] > 20 and cfg["method"] == "gaussian"
    code, err = run(base + ["--task", "superres", "--factor", "8", "--out", str(tmp_path / "s")])
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "config.json").read_text())["solver"]["remainder"] == "harmonic"
    code, err = run(base + ["--task", "cs", "--measurements", "0.1", "--out", str(tmp_path / "c")])
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "config.json").read_text())["solver"]["remainder"] == "isotropic"
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["psnr"] > 18
    code, err = run(base + ["--task", "denoise", "--sigma", "25", "--out", str(tmp_path / "d")])
    assert code == 2 and err.strip().count("\n") == 0 and "only solves --task inpaint or superres or cs" in err
    assert not (tmp_path / "d").exists()
    code, err = run(base + ["--task", "inpaint", "--observed", "0.1", "--loss", "mse", "--out", str(tmp_path / "l")])
    assert code == 2 and "loss terms and SNA do not apply to method 'gaussian'" in err and not (tmp_path / "l").exists()


def test_the_fit_size_from_the_environment(monkeypatch):
    monkeypatch.setenv("X_COUNT", "300")
    assert gaussian._env_count("X_COUNT", 7) == 300
    for bad in ("", "abc", "-5", "1", "2.5"):
        monkeypatch.setenv("X_COUNT", bad)
        assert gaussian._env_count("X_COUNT", 7) == 7


def test_the_isotropic_remainder_as_a_candidate_of_its_own():
    from ilo.solvers.selection import residual_candidates, wants_prior

    prior = _low_rank_prior(residual=0.01)
    op = Inpainting.random(SHAPE, 0.15, torch.Generator().manual_seed(2))
    x = _smooth_images(2, 4)
    y = op(x)
    bases = torch.stack([_smooth_images(2, 5), torch.zeros_like(x)])  # a stage, and zero: the prior alone
    out = residual_candidates(bases, y, op, ("gaussian", "gaussian-isotropic"), prior)  # [S * M, B, ...]
    torch.testing.assert_close(out[0], posterior_mean(y, op, prior, base=bases[0]))
    torch.testing.assert_close(out[1], gaussian_inpaint(y, op, prior, base=bases[0]))
    torch.testing.assert_close(out[3], gaussian_inpaint(y, op, prior))  # at the prior's own mean
    assert not torch.allclose(out[0], out[1], atol=1e-3)
    assert wants_prior(op, SelectionConfig(classical=("gaussian-isotropic", "biharmonic")))
