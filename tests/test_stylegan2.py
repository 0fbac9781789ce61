"""StyleGAN-2 generator: key names, exact layer splits, fast == reference, truncation, noise, gradients."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ilo.generators import stylegan2_net as sg
from ilo.generators.gaussianised import gaussianised
from ilo.generators.stylegan2 import StyleGAN2Generator
from ilo.generators.stylegan2_ops import modulated_conv2d, setup_filter, upfirdn2d, upsample2d


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(g: StyleGAN2Generator, seed: int = 0) -> StyleGAN2Generator:
    """Non-zero noise strengths, biases and w_avg (their initial zeros would hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(g.named_parameters()) + list(g.named_buffers()):
            if name.endswith("noise_strength"):
                t.copy_(0.2 + 0.3 * torch.rand(t.shape, generator=gen))
            elif name.endswith(".bias") and "affine" not in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("w_avg"):
                t.copy_(0.5 * torch.randn(t.shape, generator=gen))
    return g.eval().requires_grad_(False)


def tiny(res: int = 32, seed: int = 0, **kw) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    kw = dict(dict(z_dim=16, w_dim=16, channel_base=256, channel_max=16), **kw)
    return randomise(StyleGAN2Generator(res, **kw), seed)


@pytest.fixture(scope="module")
def g32():
    return tiny(32)


@pytest.fixture(scope="module")
def state32(g32):
    return g32.sample_latent(2, torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------------------------------
# structure and key names


def test_state_dict_keys_are_nvidias():
    g = StyleGAN2Generator(8, z_dim=4, w_dim=6, mapping_layers=2, channel_base=32, channel_max=4)
    sd = g.state_dict()
    layer = ["weight", "noise_strength", "bias", "resample_filter", "noise_const", "affine.weight", "affine.bias"]
    rgb = ["weight", "bias", "affine.weight", "affine.bias"]
    expected = (
        {f"mapping.fc{i}.{p}" for i in range(2) for p in ("weight", "bias")} | {"mapping.w_avg"}
        | {"synthesis.b4.const", "synthesis.b4.resample_filter", "synthesis.b8.resample_filter"}
        | {f"synthesis.b4.conv1.{p}" for p in layer} | {f"synthesis.b4.torgb.{p}" for p in rgb}
        | {f"synthesis.b8.{c}.{p}" for c in ("conv0", "conv1") for p in layer} | {f"synthesis.b8.torgb.{p}" for p in rgb}
    )
    assert set(sd) == expected
    shapes = {
        "mapping.fc0.weight": (6, 4), "mapping.fc1.weight": (6, 6), "mapping.w_avg": (6,),
        "synthesis.b4.const": (4, 4, 4), "synthesis.b8.conv0.weight": (4, 4, 3, 3), "synthesis.b8.conv0.affine.weight": (4, 6),
        "synthesis.b8.conv0.noise_const": (8, 8), "synthesis.b8.conv0.noise_strength": (), "synthesis.b8.torgb.weight": (3, 4, 1, 1),
        "synthesis.b8.torgb.bias": (3,), "synthesis.b8.resample_filter": (4, 4),
    }
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert torch.allclose(sd["synthesis.b8.resample_filter"], torch.tensor([1.0, 3, 3, 1]).outer(torch.tensor([1.0, 3, 3, 1])) / 64)
    assert torch.equal(sd["synthesis.b4.conv1.affine.bias"], torch.ones(4))  # bias_init=1, as NVIDIA


def test_ffhq_config_matches_published_size():
    g = StyleGAN2Generator(1024)
    assert g.num_ws == 18 and g.num_layers == 17
    assert sum(p.numel() for p in g.parameters()) == pytest.approx(30.37e6, rel=2e-3)
    assert [g.synthesis.channels[r] for r in (4, 64, 128, 256, 512, 1024)] == [512, 512, 256, 128, 64, 32]


@pytest.mark.parametrize("res", [4, 8, 16, 64, 1024])
def test_any_power_of_two_resolution(res):
    g = StyleGAN2Generator(res, z_dim=4, w_dim=4, channel_base=16 * res, channel_max=4)
    log2 = res.bit_length() - 1
    assert g.num_ws == 2 * log2 - 2 and g.num_layers == g.num_ws - 1
    if res <= 64:
        s = g.sample_latent(1, torch.Generator().manual_seed(0))
        assert g(s).shape == (1, 3, res, res)


@pytest.mark.parametrize("res", [2, 12, 48])
def test_bad_resolution_is_an_error(res):
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(res)


# ---------------------------------------------------------------------------------------------
# exact splits and the state layout


def test_exact_split_at_every_layer(g32, state32):
    full = g32(state32)
    for k in range(g32.num_layers + 1):
        mid = g32.head(k)(state32)
        assert torch.equal(g32.tail(k)(mid), full), k


def test_exact_split_reference_path():
    g = tiny(16, impl="reference")
    s = g.sample_latent(1, torch.Generator().manual_seed(0))
    full = g(s)
    for k in range(g.num_layers + 1):
        assert torch.equal(g.tail(k)(g.head(k)(s)), full), k


def test_state_layout_and_trainable_keys(g32, state32):
    res = g32.noise_resolutions
    assert res == [4, 8, 8, 16, 16, 32, 32]
    s = state32
    for k in range(g32.num_layers):
        noises = {f"noise{i}" for i in range(k, g32.num_layers)}
        assert set(s) == ({"ws"} if k == 0 else {"x", "img", "ws"}) | noises
        assert set(g32.trainable_keys(k)) == set(s)
        assert s["ws"].shape == (2, g32.num_ws - k, 16)
        for i in range(k, g32.num_layers):
            assert s[f"noise{i}"].shape == (2, 1, res[i], res[i])
        if k > 0:
            assert s["x"].shape[-1] == res[k - 1]
            # right after a block's first (up-sampling) conv the skip image is still the previous block's
            r_img = res[k - 1] if (k - 1) % 2 == 0 else res[k - 1] // 2
            assert s["img"].shape[1:] == (3, r_img, r_img)
        s = g32.stage(k, s)
    assert set(s) == {"image"} and s["image"].shape == (2, 3, 32, 32)
    shapes = g32.layer_shapes()
    assert shapes[3]["x"] == (16, 8, 8) and shapes[3]["img"] == (3, 8, 8) and shapes[3]["ws"] == (5, 16)


def test_split_differs_from_dropping_the_skip_branch(g32, state32):
    """The official ILO code dropped the low-resolution RGB; carrying it matters."""
    k = 3
    mid = dict(g32.head(k)(state32))
    mid["img"] = torch.zeros_like(mid["img"])
    assert (g32.tail(k)(mid) - g32(state32)).abs().max() > 1e-3


def test_state_shape_errors_are_clear(g32, state32):
    bad = dict(state32, ws=state32["ws"][:, :-1])
    with pytest.raises(ValueError, match=r"state 0 'ws': expected shape \[\*, 8, 16\]"):
        g32(bad)
    with pytest.raises(ValueError, match="noise map"):
        g32(dict(state32, noise0=torch.zeros(2, 1, 5, 5)))
    with pytest.raises(ValueError, match="stage index"):
        g32.stage(g32.num_layers, state32)


# ---------------------------------------------------------------------------------------------
# fast path == reference path (NVIDIA's sequence of ops)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fused", [None, True, False])
@pytest.mark.parametrize("channels_last", [None, False])
def test_fast_path_equals_reference(batch, fused, channels_last):
    g = tiny(16, seed=3, conv_clamp=0.7)  # a clamp that bites
    s = g.sample_latent(batch, torch.Generator().manual_seed(2))
    g.impl = "reference"
    ref = g(s)
    g.impl, g.fused_modconv, g.channels_last = "fast", fused, channels_last
    out = g(s)
    assert out.shape == ref.shape and out.is_contiguous()
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert (ref.abs() >= 0.7 - 1e-6).any()  # the clamp was active somewhere


def test_fast_path_gradients_equal_reference():
    g = tiny(16, seed=4)
    s = g.sample_latent(2, torch.Generator().manual_seed(5))
    grads = {}
    for impl in ("fast", "reference"):
        g.impl = impl
        leaves = {k: v.clone().requires_grad_(True) for k, v in s.items()}
        g(leaves).square().sum().backward()
        grads[impl] = {k: v.grad for k, v in leaves.items()}
    for k in s:
        a, b = grads["fast"][k], grads["reference"][k]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item()), k


def test_modulated_conv_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, generator=gen, dtype=torch.float64)
    s = torch.randn(2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    for up in (False, True):
        fn = lambda x, s: modulated_conv2d(x, w, s, up=up, resample_filter=f)
        assert torch.autograd.gradcheck(fn, (x, s), fast_mode=True)


@pytest.mark.parametrize("batch,noise_batch", [(1, 1), (2, 1), (2, 2)])
def test_layer_gradcheck_float64_fast_path(batch, noise_batch):
    """The fast path's hand-written backward passes (frozen weights: ILO's case)."""
    torch.manual_seed(0)
    layer = sg.SynthesisLayer(3, 2, w_dim=4, resolution=8, up=True).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
    layer.requires_grad_(False)
    x = torch.randn(batch, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(batch, 4, dtype=torch.float64, requires_grad=True)
    n = torch.randn(noise_batch, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, n: layer(x, w, n, impl="fast"), (x, w, n), fast_mode=True)
    rgb = sg.ToRGBLayer(2, 3, w_dim=4).double().requires_grad_(False)
    y = torch.randn(batch, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, w: rgb(y, w), (y, w), fast_mode=True)


@pytest.mark.parametrize("fused", [True, False])
def test_layer_gradcheck_float64_trainable_weights(fused):
    """With trainable weights (training) every parameter gets its gradient, fused or not."""
    torch.manual_seed(1)
    layer = sg.SynthesisLayer(2, 2, w_dim=3, resolution=4).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, dtype=torch.float64)
    n = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    params = (layer.weight, layer.bias, layer.noise_strength, layer.affine.weight)

    def f(x, *p):
        return layer(x, w, n, impl="fast", fused=fused)

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


# ---------------------------------------------------------------------------------------------
# FIR resampling maths


def test_upfirdn2d_matches_scipy():
    from scipy.signal import upfirdn

    taps = np.array([1.0, 3, 3, 1]) / 8
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    got = upfirdn2d(x, f.double(), up=2, pad=(2, 1, 2, 1), gain=4.0)[0, 0].numpy()
    # scipy: up-sample (zero insertion) + full convolution; then crop what our padding keeps
    rows = np.stack([upfirdn(taps * 2, r, up=2) for r in x[0, 0].numpy()])
    full = np.stack([upfirdn(taps * 2, c, up=2) for c in rows.T]).T
    # scipy's full output has 2n + 2 samples; padding (2, 1) with a 4-tap filter keeps samples 1 .. 2n
    assert np.allclose(got, full[1:-1, 1:-1])


def test_upsample2d_equals_reference_upfirdn():
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(upsample2d(x, f), upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4.0), atol=1e-6)
    # a constant image stays constant away from the border: gain 4 over zero insertion
    c = upsample2d(torch.ones(1, 1, 6, 6), f)
    assert torch.allclose(c[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))


# ---------------------------------------------------------------------------------------------
# mapping, truncation, latents, noise


def test_mapping_normalises_z_and_broadcasts(g32):
    z = torch.randn(3, 16)
    ws = g32.mapping(z)
    assert ws.shape == (3, g32.num_ws, 16) and torch.equal(ws[:, 0], ws[:, -1])
    assert torch.allclose(g32.mapping(5 * z), ws, atol=1e-5)
    assert torch.allclose(g32.mapping(z, broadcast=False), ws[:, 0])


def test_truncation_psi0_gives_the_w_avg_image(g32):
    s = g32.sample_latent(2, torch.Generator().manual_seed(0), psi=0.0, noise_mode="const")
    w_avg = g32.mapping.w_avg
    assert torch.allclose(s["ws"], w_avg.expand_as(s["ws"]))
    img = g32(s)
    assert torch.allclose(img[0], img[1])
    assert torch.allclose(img, g32.synthesis(w_avg.expand(2, -1), noise_mode="const"), atol=1e-6)


def test_truncation_cutoff_and_psi(g32):
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(3))
    w = g32.mapping(z)
    half = g32.mapping(z, psi=0.5)
    assert torch.allclose(half, g32.mapping.w_avg + 0.5 * (w - g32.mapping.w_avg), atol=1e-6)
    cut = g32.mapping(z, psi=0.5, cutoff=3)
    assert torch.allclose(cut[:, :3], half[:, :3]) and torch.equal(cut[:, 3:], w[:, 3:])


def test_const_noise_is_deterministic(g32):
    a = g32.sample_latent(2, torch.Generator().manual_seed(0), noise_mode="const")
    b = g32.sample_latent(2, torch.Generator().manual_seed(9), noise_mode="const")
    for i in range(g32.num_layers):
        assert torch.equal(a[f"noise{i}"], b[f"noise{i}"])
        assert torch.equal(a[f"noise{i}"][0, 0], g32.synthesis.layer(i).noise_const)
    z = torch.randn(2, 16)
    assert torch.equal(g32.generate(z, noise_mode="const"), g32.generate(z, noise_mode="const"))
    # and differs from random noise, which is reproducible from its generator
    r1 = g32.sample_latent(2, torch.Generator().manual_seed(0), noise_mode="random")
    r2 = g32.sample_latent(2, torch.Generator().manual_seed(0), noise_mode="random")
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    assert not torch.equal(r1["noise3"], a["noise3"])


def test_noise_mode_none_means_no_noise(g32):
    s = g32.sample_latent(1, torch.Generator().manual_seed(0), noise_mode="none")
    assert all(s[f"noise{i}"].abs().sum() == 0 for i in range(g32.num_layers))
    g = tiny(32)
    with torch.no_grad():
        for n, p in g.named_parameters():
            if n.endswith("noise_strength"):
                p.zero_()
    assert torch.allclose(g32(s), g.synthesis(s["ws"], noise_mode="const"), atol=1e-6)


def test_synthesis_convenience_takes_state_noises(g32, state32):
    noises = {k: v for k, v in state32.items() if k.startswith("noise")}
    assert torch.equal(g32.synthesis(state32["ws"], noises), g32(state32))
    assert torch.equal(g32.synthesis(state32["ws"], [noises[f"noise{i}"] for i in range(g32.num_layers)]), g32(state32))


def test_missing_noise_entries_follow_noise_mode(g32, state32):
    partial = {k: v for k, v in state32.items() if k != "noise4"}
    g32.noise_mode = "const"
    try:
        filled = dict(state32, noise4=g32.synthesis.noise_for(4, 2, "const", g32.device))
        assert torch.equal(g32(partial), g32(filled))
    finally:
        g32.noise_mode = "random"


def test_per_sample_generators_make_batches_independent(g32):
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    both = g32.sample_latent(2, gens)
    one = g32.sample_latent(1, [torch.Generator().manual_seed(6)])
    for k in both:  # the mapping's matmul may round differently in a batch
        assert torch.allclose(both[k][1:], one[k], atol=1e-6), k


def test_latent_state_from_z_and_wplus(g32):
    g32.noise_mode = "const"
    try:
        z = torch.randn(2, 16)
        ws = g32.mapping(z)
        assert torch.equal(g32(z), g32(ws))
        assert torch.allclose(g32(z), g32.generate(z, noise_mode="const"))
        with pytest.raises(ValueError, match="expected z"):
            g32(torch.zeros(16))
    finally:
        g32.noise_mode = "random"


def test_gradients_flow_to_every_state_entry(g32, state32):
    k = 4
    mid = {key: v.detach().clone().requires_grad_(True) for key, v in g32.head(k)(state32).items()}
    g32.tail(k)(mid).square().mean().backward()
    for key, v in mid.items():
        assert v.grad is not None and v.grad.abs().sum() > 0, key
    s0 = {key: v.clone().requires_grad_(True) for key, v in state32.items()}
    g32(s0).square().mean().backward()
    assert all(v.grad.abs().sum() > 0 for v in s0.values())


def test_gaussianised_parameterisation(g32):
    fit = gaussianised(g32, n=3000, generator=torch.Generator().manual_seed(0))
    w = g32.mapping(torch.randn(500, 16, generator=torch.Generator().manual_seed(1)), broadcast=False)
    v = fit.from_w(w)
    assert torch.allclose(fit.to_w(v), w, atol=1e-5)
    assert v.mean().abs() < 0.15 and (v.std(0).mean() - 1).abs() < 0.15
    assert torch.allclose(fit.to_w(torch.zeros(16)), F.leaky_relu(fit.mean, 0.2))


@pytest.mark.parametrize("module", ["stylegan2", "stylegan2_net", "stylegan2_ops"])
def test_module_doctests(module):
    result = doctest.testmod(importlib.import_module(f"ilo.generators.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(g32, state32):
    gc = tiny(32).cuda()
    out = gc({k: v.cuda() for k, v in state32.items()}).cpu()
    assert torch.allclose(out, g32(state32), atol=1e-4 * out.abs().max().item())


def test_speed_benchmark_smoke(tmp_path):
    from ilo.bench import stylegan2_speed

    args = ["--res", "8", "--repeats", "1", "--threads", "1", "--channel-base", "64", "--device", "cpu", "--no-memory"]
    out = stylegan2_speed.main(args + ["--json", str(tmp_path / "b.json")])
    rows = out["rows"]
    assert {(r["impl"], r["mode"]) for r in rows} == {(i, m) for i in ("fast", "reference") for m in ("forward", "forward+backward")}
    assert all(r["median_s"] > 0 and r["res"] == 8 for r in rows) and (tmp_path / "b.json").is_file()
