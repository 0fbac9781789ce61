"""Tests of the forward operators: adjointness, dense agreement, exact behaviours, randomness."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ilo.operators import (
    CompressedSensing,
    Denoising,
    GaussianNoise,
    Inpainting,
    NoiseModel,
    NoNoise,
    Operator,
    SuperResolution,
)
from ilo.operators.superres import bicubic_matrix, keys_cubic


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def per_sample_mask() -> torch.Tensor:
    return (torch.rand(3, 1, 6, 6, generator=gen(11)) < 0.5).float().index_fill_(3, torch.tensor([0]), 1.0)


# A registry of small operators: every property test runs on each of them.
FACTORIES = {
    "inpaint-random": lambda: Inpainting.random((2, 6, 6), 0.4, gen(0)),
    "inpaint-box": lambda: Inpainting.box((3, 6, 8), 1, 2, 5, 4),
    "inpaint-per-sample": lambda: Inpainting((2, 6, 6), per_sample_mask()),
    "superres-3": lambda: SuperResolution((2, 12, 12), 3),
    "superres-2-truncate": lambda: SuperResolution((1, 8, 12), 2, border="truncate"),
    "superres-1": lambda: SuperResolution((1, 5, 5), 1),
    "denoise": lambda: Denoising((3, 5, 5), sigma255=0.0),
    "cs-fraction": lambda: CompressedSensing((2, 4, 4), 0.3, gen(1)),
    "cs-count-odd-n": lambda: CompressedSensing((1, 5, 7), 11, gen(2)),
}
NAMES = list(FACTORIES)


def batch_size(op: Operator) -> int:
    return op.mask.shape[0] if isinstance(op, Inpainting) and op.mask.shape[0] > 1 else 2


def random_pair(op: Operator, seed: int = 0, dtype=torch.float64):
    g = gen(seed)
    b = batch_size(op)
    x = torch.rand(b, *op.input_shape, generator=g, dtype=dtype) * 2 - 1
    y = torch.randn(b, *op.output_shape, generator=g, dtype=dtype)
    return x, y


# -- properties of every operator ----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_adjointness_float64(name):
    op = FACTORIES[name]().double()
    x, y = random_pair(op)
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_cardinality_and_observation_image(name):
    op = FACTORIES[name]()
    x, _ = random_pair(op, dtype=torch.float32)
    y = op(x)
    assert y.shape == (x.shape[0], *op.output_shape) and y.dtype == torch.float32
    img = op.observation_image(y)
    assert img.shape[:2] == (x.shape[0], op.input_shape[0]) and img.ndim == 4
    assert float(img.min()) >= -1 and float(img.max()) <= 1
    with pytest.raises(ValueError, match="expects"):
        op.A(torch.zeros(1, op.input_shape[0] + 1, *op.input_shape[1:]))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_is_the_adjoint(name):
    """Gradients flow through ``A`` and equal ``A^T`` applied to the upstream gradient."""
    op = FACTORIES[name]().double()
    x, w = random_pair(op, seed=1)
    x.requires_grad_(True)
    (op.A(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, op.A_adjoint(w), rtol=1e-12, atol=1e-12)
    x.grad = None
    op.measurement_loss(x, torch.zeros_like(op.A(x))).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["superres-2-truncate", "cs-count-odd-n", "inpaint-box"])
def test_gradcheck(name):
    op = FACTORIES[name]().double()
    x, _ = random_pair(op, seed=2)
    assert torch.autograd.gradcheck(op.A, (x[:1].requires_grad_(True),))


@pytest.mark.parametrize("name", NAMES)
def test_measurement_loss_zero_at_truth(name):
    op = FACTORIES[name]().double()
    assert op.noise.sigma == 0
    x, _ = random_pair(op, seed=3)
    y = op(x)
    loss = op.measurement_loss(x, y)
    assert loss.shape == (x.shape[0],)
    torch.testing.assert_close(loss, torch.zeros_like(loss), rtol=0, atol=1e-24)
    assert bool((op.measurement_loss(x + 0.1, y) > 0).all())


@pytest.mark.parametrize("name", NAMES)
def test_config_is_json(name):
    op = FACTORIES[name]()
    cfg = json.loads(json.dumps(op.config()))
    assert cfg["task"] == op.task and cfg["input_shape"] == list(op.input_shape)
    assert op.task in {"inpaint", "superres", "denoise", "cs"}


@pytest.mark.parametrize(
    "make",
    [
        lambda noise: Inpainting.random((2, 6, 6), 0.5, gen(0), noise=noise),
        lambda noise: SuperResolution((2, 8, 8), 2, noise=noise),
        lambda noise: CompressedSensing((2, 4, 4), 0.5, gen(0), noise=noise),
        lambda noise: Denoising((2, 6, 6), 20.0),
    ],
    ids=["inpaint", "superres", "cs", "denoise"],
)
def test_noise_per_sample_generators_independent_of_batch(make):
    op = make(GaussianNoise(0.1))
    x = torch.rand(3, *op.input_shape, generator=gen(5)) * 1.6 - 0.8
    batch = op(x, generator=[gen(100 + i) for i in range(3)])
    for i in range(3):
        alone = op(x[i : i + 1], generator=[gen(100 + i)])
        # Same noise; batched FFTs may round differently from single ones, hence the atol.
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-6)
    assert torch.equal(op(x, generator=gen(7)), op(x, generator=gen(7)))
    assert not torch.equal(op(x, generator=gen(7)), op(x, generator=gen(8)))
    assert not torch.equal(batch, op.A(x))


def test_exports():
    assert issubclass(NoNoise, NoiseModel) and issubclass(GaussianNoise, NoiseModel)
    for cls in (Inpainting, SuperResolution, Denoising, CompressedSensing):
        assert issubclass(cls, Operator)


# -- inpainting -----------------------------------------------------------------------------
@pytest.mark.parametrize("observed", [0.05, 0.3, 0.5, 0.77, 1.0])
def test_inpainting_random_exact_count(observed):
    op = Inpainting.random((3, 10, 12), observed, gen(1))
    assert op.mask.shape == (1, 1, 10, 12)
    assert int(op.mask.sum()) == round(observed * 120)
    assert set(op.mask.unique().tolist()) <= {0.0, 1.0}
    y = op.A(torch.ones(1, 3, 10, 12))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])  # same pixels in all channels
    assert op.config()["mask"] == {"kind": "random", "observed": observed}


@pytest.mark.parametrize("observed", [0.0, -0.1, 1.01, float("nan"), 1e-4])
def test_inpainting_random_bad_fraction(observed):
    with pytest.raises(ValueError, match="observed"):
        Inpainting.random((1, 8, 8), observed, gen(0))


def test_inpainting_random_reproducible():
    a = Inpainting.random((1, 16, 16), 0.3, gen(42))
    b = Inpainting.random((1, 16, 16), 0.3, gen(42))
    c = Inpainting.random((1, 16, 16), 0.3, gen(43))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)


def test_inpainting_box():
    op = Inpainting.box((1, 6, 8), x0=2, y0=1, x1=5, y1=4)
    expected = torch.ones(6, 8)
    expected[1:4, 2:5] = 0
    assert torch.equal(op.mask[0, 0], expected)
    assert op.config()["mask"] == {"kind": "box", "box": [2, 1, 5, 4]}
    for bad in [(0, 0, 9, 3), (3, 0, 3, 2), (-1, 0, 2, 2), (0, 4, 2, 7), (0, 0, 8, 6), (0.5, 0, 2, 2)]:
        with pytest.raises(ValueError):
            Inpainting.box((1, 6, 8), *bad)


def test_inpainting_from_image():
    picture = np.zeros((4, 5), dtype=np.uint8)
    picture[1, 2] = 255
    picture[3, 0] = 7
    gray = Inpainting.from_image((3, 4, 5), picture)
    assert gray.mask.shape == (1, 1, 4, 5) and int(gray.mask.sum()) == 2 and gray.mask[0, 0, 1, 2] == 1
    assert int(Inpainting.from_image((3, 4, 5), picture, threshold=127).mask.sum()) == 1
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[0, :, 1] = 255  # a green row counts as observed
    assert torch.equal(Inpainting.from_image((3, 4, 5), rgb).mask[0, 0, :, 0], torch.tensor([1.0, 0, 0, 0]))
    rgba = np.full((4, 5, 4), 255, dtype=np.uint8)
    rgba[2, 3, 3] = 0  # transparent: missing
    assert int(Inpainting.from_image((1, 4, 5), rgba).mask.sum()) == 19
    single = picture[..., None].astype(bool)
    assert torch.equal(Inpainting.from_image((1, 4, 5), single).mask, gray.mask)
    with pytest.raises(ValueError, match="4x5"):
        Inpainting.from_image((3, 6, 5), picture)
    with pytest.raises(ValueError, match="channels"):
        Inpainting.from_image((3, 4, 5), np.ones((4, 5, 2)))
    with pytest.raises(ValueError, match="channels"):
        Inpainting.from_image((3, 4, 5), np.ones((1, 4, 5, 3)))
    with pytest.raises(ValueError, match="no pixel"):
        Inpainting.from_image((3, 4, 5), np.zeros((4, 5)))


def test_inpainting_mask_validation():
    with pytest.raises(ValueError, match="shape"):
        Inpainting((1, 4, 4), torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="0 .missing. or 1"):
        Inpainting((1, 4, 4), torch.full((1, 1, 4, 4), 0.5))
    op = Inpainting((1, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.bool))
    assert op.mask.dtype == torch.float32
    with pytest.raises(ValueError, match="2 masks for a batch of 3"):
        op.A(torch.zeros(3, 1, 4, 4))


def test_inpainting_loss_and_observation_ignore_missing_pixels():
    op = Inpainting.box((2, 4, 4), 0, 0, 2, 4, noise=GaussianNoise(0.5))  # left half missing
    x = torch.rand(2, 2, 4, 4, generator=gen(0))
    y = op(x, generator=gen(1))
    assert torch.equal(y[..., :2], torch.zeros_like(y[..., :2]))  # noise does not leak into holes
    x2 = x.clone()
    x2[..., :2] = 5.0
    torch.testing.assert_close(op.measurement_loss(x2, y), op.measurement_loss(x, y))
    manual = ((x[..., 2:] - y[..., 2:]) ** 2).flatten(1).mean(1)  # observed entries, all channels
    torch.testing.assert_close(op.measurement_loss(x, y), manual)
    img = op.observation_image(y)
    assert bool((img[..., :2] == -1).all()) and torch.equal(img[..., 2:], y[..., 2:].clamp(-1, 1))


def test_with_buffers_replaces_per_sample_buffers_only():
    """A copy with other masks acts with them; the original and its other state are untouched."""
    op = Inpainting.random((2, 6, 6), 0.4, gen(0), noise=GaussianNoise(0.1))
    masks = per_sample_mask()
    new = op.with_buffers(mask=masks)
    x = torch.rand(3, 2, 6, 6, generator=gen(1))
    assert type(new) is Inpainting and new is not op
    torch.testing.assert_close(new.A(x), x * masks)
    assert op.mask.shape[0] == 1 and torch.equal(op.A(x), x * op.mask)  # the original keeps its mask
    assert new.noise is op.noise and new.config()["mask"] == op.config()["mask"]
    assert new.with_buffers().mask is new.mask  # nothing named: a copy sharing every buffer
    stacked = Inpainting.stack([op.with_buffers(mask=m[None]) for m in masks])  # stack and batch_repeat use it
    assert torch.equal(stacked.mask, masks)
    assert torch.equal(new.batch_repeat(2).mask, masks.repeat_interleave(2, 0))
    with pytest.raises(ValueError, match="no per-sample buffer 'mask'"):
        SuperResolution((1, 4, 4), 2).with_buffers(mask=masks)
    with pytest.raises(ValueError, match=r"shape \[B, 1, 6, 6\]"):
        op.with_buffers(mask=torch.ones(2, 1, 6, 5))


# -- super-resolution ------------------------------------------------------------------------
def test_keys_kernel_values():
    t = np.array([0.0, 0.25, 1.0, 1.5, 2.0, 2.5, -0.5])
    a = -0.5
    expected = [1.0, (a + 2) * 0.25**3 - (a + 3) * 0.25**2 + 1, 0.0, a * 1.5**3 - 5 * a * 1.5**2 + 8 * a * 1.5 - 4 * a, 0.0, 0.0, 0.5625]
    np.testing.assert_allclose(keys_cubic(t), expected, atol=1e-15)


@pytest.mark.parametrize("border", ["reflect", "truncate"])
@pytest.mark.parametrize("shape,factor", [((3, 12, 12), 3), ((1, 8, 16), 4), ((2, 16, 6), 2), ((1, 8, 8), 8)])
def test_superres_constant_stays_constant(border, shape, factor):
    op = SuperResolution(shape, factor, border=border).double()
    y = op(torch.full((2, *shape), -0.37, dtype=torch.float64))
    assert y.shape == (2, shape[0], shape[1] // factor, shape[2] // factor)
    torch.testing.assert_close(y, torch.full_like(y, -0.37), rtol=0, atol=1e-14)
    y32 = SuperResolution(shape, factor, border=border)(torch.full((1, *shape), 0.8))
    torch.testing.assert_close(y32, torch.full_like(y32, 0.8), rtol=0, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_superres_alignment_on_a_ramp(factor):
    """A symmetric normalised kernel reproduces linear ramps: output i = (i + 0.5) f - 0.5."""
    n = 12 * factor
    mat = bicubic_matrix(n, factor)
    centres = (np.arange(n // factor) + 0.5) * factor - 0.5
    inner = slice(2, n // factor - 2)  # away from the borders
    np.testing.assert_allclose((mat @ np.arange(n))[inner], centres[inner], atol=1e-12)


def test_superres_factor_one_is_identity():
    op = SuperResolution((3, 7, 5), 1)
    x = torch.randn(2, 3, 7, 5, generator=gen(0))
    assert torch.equal(op(x), x) and torch.equal(op.A_adjoint(x), x)


@pytest.mark.parametrize("factor", [0, 5, -2, 2.5, True])
def test_superres_bad_factor(factor):
    with pytest.raises(ValueError):
        SuperResolution((3, 12, 10), factor)


def test_superres_factor_not_dividing_and_bad_border():
    with pytest.raises(ValueError, match="divide"):
        SuperResolution((3, 12, 10), 4)
    with pytest.raises(ValueError, match="border"):
        SuperResolution((3, 12, 12), 2, border="wrap")


def test_superres_observation_image_is_nearest_upsampling():
    op = SuperResolution((1, 6, 9), 3)
    y = torch.tensor([[[[0.1, -0.2, 0.3], [0.4, 0.5, -2.0]]]])
    img = op.observation_image(y)
    assert img.shape == (1, 1, 6, 9)
    assert torch.equal(img[0, 0, 3:6, 3:6], torch.full((3, 3), 0.5))
    assert float(img[0, 0, 5, 8]) == -1.0  # clipped for display


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_superres_matches_pil_on_astronaut(factor):
    Image = pytest.importorskip("PIL.Image")
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut()[:256, 128:384].astype(np.float64) / 127.5 - 1  # [256, 256, 3]
    size = 256 // factor
    ref = np.stack(
        [
            np.asarray(Image.fromarray(photo[..., c].astype(np.float32)).resize((size, size), Image.BICUBIC, reducing_gap=None))
            for c in range(3)
        ]
    )
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    inner = slice(2, size - 2)  # output pixels whose taps stay inside the image
    out = {}
    for border in ("reflect", "truncate"):
        out[border] = SuperResolution((3, 256, 256), factor, border=border).double()(x)[0].numpy()
        np.testing.assert_allclose(out[border][:, inner, inner], ref[:, inner, inner], atol=2e-5)
    # PIL drops out-of-image taps and renormalises: "truncate" matches it everywhere.
    np.testing.assert_allclose(out["truncate"], ref, atol=2e-5)
    assert np.abs(out["reflect"] - ref).max() > 1e-3  # the borders do differ
    # A half-pixel shift (the official ILO code's "factor 1" bug) would be far off.
    shifted = SuperResolution((3, 256, 256), factor).double()(torch.roll(x, 1, dims=3))[0].numpy()
    assert np.abs(shifted[:, inner, inner] - ref[:, inner, inner]).max() > 1e-2


# -- denoising -------------------------------------------------------------------------------
def test_denoising_noise_level_and_clipping():
    op = Denoising((3, 64, 64), sigma255=25)
    assert op.sigma255 == 25.0 and op.noise.sigma == pytest.approx(50 / 255)
    assert op.config()["sigma255"] == 25.0
    y = op(torch.zeros(1, 3, 64, 64), generator=gen(0))
    assert float(y.std()) == pytest.approx(50 / 255, rel=0.05)
    loud = Denoising((3, 16, 16), sigma255=200)
    y = loud(torch.full((2, 3, 16, 16), 0.9), generator=gen(1))
    assert float(y.min()) == -1.0 and float(y.max()) == 1.0
    assert torch.equal(loud.observation_image(y), y)
    x = torch.rand(1, 3, 16, 16, generator=gen(2))
    assert torch.equal(Denoising((3, 16, 16), 0)(x, generator=gen(3)), x)


@pytest.mark.parametrize("sigma", [-1.0, float("nan")])
def test_denoising_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma255"):
        Denoising((3, 8, 8), sigma)


# -- compressed sensing ----------------------------------------------------------------------
def explicit_matrix(op: CompressedSensing) -> torch.Tensor:
    """``P_Ω C(g) D`` built entry by entry from the buffers, independently of the FFT path."""
    n = op.n
    g = torch.fft.irfft(torch.view_as_complex(op.g_spectrum.double()), n=n)  # [n]
    k = torch.arange(n)
    circulant = g[(k[:, None] - k[None, :]) % n]  # C[k, j] = g[(k - j) mod n]
    return circulant[op.indices] * op.signs.double()[None, :]  # [m, n]


@pytest.mark.parametrize("shape,measurements", [((1, 4, 5), 0.5), ((2, 4, 4), 7), ((3, 3, 3), 1.0), ((1, 1, 9), 1)])
def test_cs_matches_explicit_dense_matrix(shape, measurements):
    op = CompressedSensing(shape, measurements, gen(3)).double()
    mat = explicit_matrix(op)
    assert mat.shape == (op.m, op.n)
    torch.testing.assert_close(op.dense_matrix(), mat, rtol=0, atol=1e-12)
    x = torch.randn(3, *shape, generator=gen(4), dtype=torch.float64)
    y = torch.randn(3, op.m, generator=gen(5), dtype=torch.float64)
    torch.testing.assert_close(op.A(x), x.flatten(1) @ mat.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.A_adjoint(y).flatten(1), y @ mat, rtol=0, atol=1e-12)
    # float32 path agrees to float32 precision
    op32 = op.float()
    torch.testing.assert_close(op32.A(x.float()), (x.flatten(1) @ mat.T).float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,measurements", [((1, 4, 5), 0.5), ((3, 4, 4), 11), ((1, 1, 9), 1.0)])
def test_cs_gram_is_a_times_its_adjoint(shape, measurements):
    """The closed form ``r[(Ω_i - Ω_j) mod n]`` equals ``A Aᵀ`` of the explicit matrix, for the
    float32 operator too (its spectrum is read in float64); operators without one say None."""
    op = CompressedSensing(shape, measurements, gen(6))
    mat = explicit_matrix(CompressedSensing(shape, measurements, gen(6)).double())  # .double() converts in place
    G = op.gram()
    assert op.signs.dtype == torch.float32
    assert G.dtype == torch.float64 and G.shape == (op.m, op.m)
    torch.testing.assert_close(G, mat @ mat.T, rtol=0, atol=1e-10)
    assert Inpainting.random((1, 4, 4), 0.5, gen(0)).gram() is None


def test_cs_buffers():
    op = CompressedSensing((3, 8, 8), 0.25, gen(0))
    assert op.n == 192 and op.m == 48 and op.output_shape == (48,)
    assert op.indices.shape == (48,) and bool((op.indices[1:] > op.indices[:-1]).all())  # sorted, unique
    assert set(op.signs.unique().tolist()) == {-1.0, 1.0}
    assert op.g_spectrum.shape == (97, 2)
    assert sum(b.numel() for b in op.buffers()) == 192 + 97 * 2 + 48  # O(n), no matrix
    cfg = op.config()
    assert cfg["measurements"] == 48 and cfg["fraction"] == 0.25


def test_cs_measurement_counts():
    assert CompressedSensing((1, 4, 4), 1e-9, gen(0)).m == 1  # max(1, round(frac * n))
    assert CompressedSensing((1, 4, 4), 0.33, gen(0)).m == 5
    assert CompressedSensing((1, 4, 4), 16, gen(0)).m == 16
    assert CompressedSensing((1, 4, 4), np.int64(3), gen(0)).m == 3
    for bad in (0.0, 1.5, -0.2, 0, 17, float("nan")):
        with pytest.raises(ValueError, match="measurement"):
            CompressedSensing((1, 4, 4), bad, gen(0))
    with pytest.raises(TypeError):
        CompressedSensing((1, 4, 4), True, gen(0))


def test_cs_reproducible():
    a = CompressedSensing((2, 4, 4), 0.5, gen(9))
    b = CompressedSensing((2, 4, 4), 0.5, gen(9))
    c = CompressedSensing((2, 4, 4), 0.5, gen(10))
    for name in ("signs", "g_spectrum", "indices"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.dense_matrix(), c.dense_matrix())


@pytest.mark.parametrize("m", [8, 32])
def test_cs_norm_preserved_in_expectation(m):
    """``E ||A x||^2 = ||x||^2`` thanks to the ``1 / m`` variance of ``g``."""
    x = torch.randn(1, 1, 8, 8, generator=gen(0), dtype=torch.float64)
    ratios = torch.stack(
        [CompressedSensing((1, 8, 8), m, gen(s)).double().A(x).pow(2).sum() / x.pow(2).sum() for s in range(300)]
    )
    assert abs(float(ratios.mean()) - 1.0) < 0.1
    assert float(ratios.std()) < 1.0  # concentrates as m grows; not a single huge outlier


def test_cs_dense_matrix_refused_for_large_n():
    with pytest.raises(ValueError, match="4096"):
        CompressedSensing((1, 65, 64), 0.1, gen(0)).dense_matrix()


def test_cs_observation_image():
    op = CompressedSensing((3, 4, 4), 0.5, gen(0))
    y = op(torch.rand(2, 3, 4, 4, generator=gen(1)))
    img = op.observation_image(y)
    assert img.shape == (2, 3, 4, 4)
    for b in range(2):
        assert float(img[b].min()) == -1.0 and float(img[b].max()) == pytest.approx(1.0)
    assert torch.equal(op.observation_image(torch.zeros(1, op.m)), torch.zeros(1, 3, 4, 4))


def test_cs_megapixel_runs_in_float32():
    """3 x 1024 x 1024 (n = 3.1 M) works with O(n) buffers: no n x n or m x n matrix."""
    op = CompressedSensing((3, 1024, 1024), 0.1, gen(0))
    buffer_bytes = sum(b.numel() * b.element_size() for b in op.buffers())
    assert buffer_bytes < 16 * op.n  # a dense m x n float32 matrix would be 4 TB
    x = torch.rand(1, 3, 1024, 1024, generator=gen(1)) * 2 - 1
    y = op(x)
    assert y.shape == (1, op.m) and y.dtype == torch.float32
    back = op.A_adjoint(y)
    assert back.shape == x.shape and back.dtype == torch.float32
    # Adjointness holds at this size too (float32 FFT accuracy).
    lhs, rhs = (y.double() * y.double()).sum(), (x.double() * back.double()).sum()
    assert abs(float(lhs - rhs)) < 1e-4 * float(lhs)
