"""Sparsity priors (ilo.priors) and the sparse-deviation solver (ilo.solvers.deviation)."""

import doctest
import importlib
import math

import pytest
import torch

from ilo import metrics as M
from ilo.operators import CompressedSensing, Denoising, Inpainting, SuperResolution
from ilo.operators.base import Operator
from ilo.priors import PRIORS, DCTL1, TotalVariation, WaveletL1, grad, grad_adjoint, make_prior
from ilo.solvers.deviation import deviate, lipschitz


# thousands of tiny tensor ops: with intra-op threads on a busy machine each op waits for a
# core (30x slower measured on 2 shared cores), so run them on one (conftest's fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


SHAPE = (3, 16, 16)


def rand(n=2, shape=SHAPE, seed=0, dtype=torch.float64):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def test_grad_adjoint():
    x, p = rand(2), torch.randn(2, 3, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert float((grad(x) * p).sum()) == pytest.approx(float((x * grad_adjoint(p)).sum()), rel=1e-10)


@pytest.mark.parametrize("name", PRIORS)
def test_prox_is_the_minimiser(name):
    """The prox output beats random perturbations of itself on ½||x - v||² + t R(x) (convex: a
    local minimum is the global one), and t = 0 is the identity."""
    prior = TotalVariation(500) if name == "tv" else make_prior(name)
    v, t = rand(2), torch.tensor([0.05, 0.2], dtype=torch.float64)
    x = prior.prox(v, t)

    def objective(u):
        return 0.5 * (u - v).flatten(1).pow(2).sum(1) + t * prior.value(u)

    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        d = torch.randn(v.shape, generator=g, dtype=v.dtype) * 1e-3
        assert bool((objective(x) <= objective(x + d) + 1e-9).all())
    assert torch.allclose(make_prior(name).prox(v, 0.0), v, atol=1e-12)


def test_tv_prox_matches_scikit_image():
    from skimage.restoration import denoise_tv_chambolle

    v = rand(1, (1, 16, 16))
    ref = denoise_tv_chambolle(v[0, 0].numpy(), weight=0.1, eps=1e-9, max_num_iter=5000)
    ref = torch.from_numpy(ref)[None, None]
    ours = TotalVariation(1000).prox(v, 0.1)
    tv = TotalVariation()
    objective = [float(0.5 * (u - v).pow(2).sum() + 0.1 * tv.value(u)) for u in (ours, ref)]
    assert objective[0] == pytest.approx(objective[1], rel=1e-4)
    assert float((ours - ref).abs().max()) < 5e-3


def test_orthogonal_priors():
    v = rand(2)
    for prior in (WaveletL1("db4"), WaveletL1("haar", levels=2), DCTL1()):
        big = prior.prox(v, 1e6)  # every penalised coefficient is zeroed: what remains is the unpenalised part
        assert float(prior.value(big).abs().max()) < 1e-8
        assert float(prior.value(v).min()) > 0
    with pytest.raises(ValueError, match="orthogonal"):
        WaveletL1("bior2.2")
    with pytest.raises(ValueError, match="unknown prior"):
        make_prior("l0")


def test_lipschitz_matches_known_norms():
    x = rand(2, dtype=torch.float32)
    assert lipschitz(Denoising(SHAPE, 10), x).tolist() == pytest.approx([1.02, 1.02], rel=1e-4)
    dense = CompressedSensing(SHAPE, 0.3, torch.Generator().manual_seed(0))
    top = torch.linalg.matrix_norm(dense.dense_matrix().double(), ord=2) ** 2
    assert lipschitz(dense, x).tolist() == pytest.approx([1.02 * float(top)] * 2, rel=0.02)


def test_deviation_recovers_a_sparse_deviation():
    """Dhar et al.'s setting: the truth is x0 plus a sparse deviation (a block: sparse in TV and
    in Haar); from 50 % compressed measurements, deviate moves x0 towards the truth."""
    g = torch.Generator().manual_seed(4)
    x0 = rand(2, (1, 16, 16), seed=3, dtype=torch.float32) * 0.3
    block = torch.zeros_like(x0)
    block[:, :, 4:8, 6:12] = 0.5  # sparse in TV and in Haar
    truth = x0 + block
    op = CompressedSensing((1, 16, 16), 0.5, g)
    y = op(truth)
    for prior in ("tv", WaveletL1("haar")):
        res = deviate(y, op, x0, prior, weight=0.01, steps=100)
        assert bool((M.psnr(res.image, truth) > M.psnr(x0, truth) + 6).all())
        losses = [h["loss"] for h in res.history]
        assert all(b <= a * 1.05 + 1e-9 for a, b in zip(losses[0], losses[-1]))


def test_deviation_edges():
    x0 = rand(2, dtype=torch.float32) * 0.3  # x0 + δ stays inside [-1, 1]: no clamping
    op = Inpainting.random(SHAPE, 0.5, torch.Generator().manual_seed(0))
    y = op(x0.flip(0))
    assert deviate(y, op, x0, "dct", 0.1, steps=0).image.equal(x0)
    huge = deviate(y, op, x0, "wavelet", 1e6, steps=5).image  # only the unpenalised coarse part moves
    assert float(WaveletL1().value(huge - x0).max()) < 1e-4
    res = deviate(y, op, x0, "tv", torch.tensor([0.0, 0.0]), steps=100)
    assert float(op.measurement_loss(res.image, y).max()) < 1e-6  # no prior: the observed pixels are fitted
    with pytest.raises(ValueError, match="weight"):
        deviate(y, op, x0, "tv", -1.0)
    with pytest.raises(ValueError, match="weight"):
        deviate(y, op, x0, "tv", torch.ones(3))

    class Square(Operator):
        linear = False

        def A(self, x):
            return x * x

    with pytest.raises(ValueError, match="linear"):
        deviate(y, Square(SHAPE), x0)


def test_deviation_per_image_independent_of_batch():
    x = rand(3, dtype=torch.float32) * 0.5
    op = SuperResolution(SHAPE, 2)
    y = op(x)
    x0 = torch.zeros_like(x)
    both = deviate(y, op, x0, "tv", torch.tensor([0.001, 0.01, 0.1]), steps=20).image
    alone = deviate(y[1:2], op, x0[1:2], "tv", 0.01, steps=20).image
    assert torch.allclose(both[1:2], alone, atol=1e-5)


def test_doctests():
    for module in ("ilo.priors", "ilo.solvers.deviation"):
        result = doctest.testmod(importlib.import_module(module))
        assert result.attempted > 0 and result.failed == 0


# -- the fast TV prox and FISTA loop against slow references written from the formulas ------


def reference_grad(x):
    """Forward differences, zero at the far border (Neumann), by concatenation."""
    dv = torch.cat([x[..., 1:, :] - x[..., :-1, :], torch.zeros_like(x[..., :1, :])], -2)
    dh = torch.cat([x[..., :, 1:] - x[..., :, :-1], torch.zeros_like(x[..., :, :1])], -1)
    return torch.stack([dv, dh], 2)


def reference_grad_adjoint(p):
    """Dᵀp by the definition of the adjoint: pixel i receives -p_i and +p_(i-1) along each axis,
    where only the differences that exist (not at the far border) count."""
    out = torch.zeros_like(p[:, :, 0])
    H, W = out.shape[-2:]
    for i in range(H - 1):
        out[..., i, :] -= p[:, :, 0, ..., i, :]
        out[..., i + 1, :] += p[:, :, 0, ..., i, :]
    for j in range(W - 1):
        out[..., :, j] -= p[:, :, 1, ..., :, j]
        out[..., :, j + 1] += p[:, :, 1, ..., :, j]
    return out


def reference_tv_prox(v, t, iterations, p=None):
    """FGP for the isotropic TV (Beck & Teboulle 2009) as in the paper: the dual step from the
    extrapolated point, projection on the unit balls, FISTA momentum. Returns ``(x, dual)``."""
    t = t.view(-1, 1, 1, 1)
    p = torch.zeros_like(reference_grad(v)) if p is None else p
    r, s = p, 1.0
    for _ in range(iterations):
        q = r + reference_grad(v - t * reference_grad_adjoint(r)) / (8 * t.unsqueeze(2))
        q = q / q.norm(dim=2, keepdim=True).clamp_min(1.0)
        s_next = (1 + math.sqrt(1 + 4 * s * s)) / 2
        r = q + (s - 1) / s_next * (q - p)
        p, s = q, s_next
    return v - t * reference_grad_adjoint(p), p


def reference_deviate(y, op, x0, weight, steps, init, iterations=10):
    """FISTA with gradient restart on ½||A(x0 + δ) - y||² + λ TV(δ), the TV prox warm-started
    from the previous call's dual: ``(image, objective per step [steps, B])``."""
    eta = 1.0 / lipschitz(op, x0).clamp_min(1e-12)
    delta = init - x0
    z, t, dual, objectives = delta.clone(), torch.ones_like(eta), None, []
    for _ in range(steps):
        g = op.A_adjoint(op.A(x0 + z) - y)
        nxt, dual = reference_tv_prox(z - eta.view(-1, 1, 1, 1) * g, eta * weight, iterations, dual)
        restart = ((z - nxt) * (nxt - delta)).flatten(1).sum(1) > 0
        t = torch.where(restart, torch.ones_like(t), t)
        t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
        z = nxt + ((t - 1) / t_next).view(-1, 1, 1, 1) * (nxt - delta)
        delta, t = nxt, t_next
        tv = reference_grad(delta).norm(dim=2).flatten(1).sum(1)
        objectives.append(0.5 * (op.A(x0 + delta) - y).flatten(1).pow(2).sum(1) + weight * tv)
    return (x0 + delta).clamp(-1, 1), torch.stack(objectives)


def test_grad_and_adjoint_match_the_references():
    x = rand(2, (3, 7, 11))  # not square: a swapped axis would show
    p = torch.randn(2, 3, 2, 7, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert grad(x).equal(reference_grad(x))
    assert torch.allclose(grad_adjoint(p), reference_grad_adjoint(p), rtol=0, atol=1e-14)
    junk = p.clone()
    junk[:, :, 0, -1, :] = 7.0  # entries grad never produces: ignored
    junk[:, :, 1, :, -1] = -7.0
    assert grad_adjoint(junk).equal(grad_adjoint(p))


@pytest.mark.parametrize("iterations", [1, 10, 50])
def test_tv_prox_matches_reference_fgp(iterations):
    """Per-sample weights, a warm start carried over two calls, a non-square image: equal to
    the reference FGP up to float64 rounding."""
    v = rand(3, (3, 12, 20), seed=5)
    t = torch.tensor([0.003, 0.05, 0.4], dtype=torch.float64)
    prior = TotalVariation(iterations)
    ours, ref = prior.prox(v, t), reference_tv_prox(v, t, iterations)
    assert torch.allclose(ours, ref[0], rtol=0, atol=1e-12)
    v2 = v + 0.05 * rand(3, (3, 12, 20), seed=6)  # the next call starts from the last dual
    assert torch.allclose(prior.prox(v2, t), reference_tv_prox(v2, t, iterations, ref[1])[0], rtol=0, atol=1e-12)
    prior.reset()
    assert torch.allclose(prior.prox(v2, t), reference_tv_prox(v2, t, iterations)[0], rtol=0, atol=1e-12)


def test_tv_prox_float32_close_to_the_float64_reference():
    v = rand(2, (3, 16, 16), seed=7)
    t = torch.tensor([0.01, 0.1], dtype=torch.float64)
    ours = TotalVariation(10).prox(v.float(), t.float())
    assert ours.dtype == torch.float32
    assert float((ours.double() - reference_tv_prox(v, t, 10)[0]).abs().max()) < 1e-5


@pytest.mark.parametrize("task", ["inpaint", "superres", "cs"])
def test_deviate_matches_reference_fista(task):
    """The image and the per-step objective of deviate (TV, per-image weights, from an init)
    equal the reference loop up to float64 rounding; history=False gives the same image."""
    shape = (3, 16, 16)
    g = torch.Generator().manual_seed(3)
    op = {"inpaint": Inpainting.random(shape, 0.3, g), "superres": SuperResolution(shape, 2),
          "cs": CompressedSensing(shape, 0.3, g)}[task]
    truth = rand(3, shape, seed=8) * 0.8
    y = op(truth)
    x0 = rand(3, shape, seed=9) * 0.5
    init = x0 + 0.1 * rand(3, shape, seed=10)
    weight = torch.tensor([0.001, 0.01, 0.1], dtype=torch.float64)
    res = deviate(y, op, x0, "tv", weight, 60, init=init)
    image, objectives = reference_deviate(y, op, x0, weight, 60, init)
    assert torch.allclose(res.image, image, rtol=0, atol=1e-10)
    assert torch.allclose(torch.tensor([h["loss"] for h in res.history], dtype=torch.float64), objectives,
                          rtol=1e-6, atol=1e-8)  # history rounds to 8 digits
    fast = deviate(y, op, x0, "tv", weight, 60, init=init, history=False)
    assert fast.image.equal(res.image) and fast.history == []
    seen = []
    deviate(y, op, x0, "tv", weight, 3, init=init, history=False, callback=lambda info: seen.append(info.step))
    assert seen == [0, 1, 2]
