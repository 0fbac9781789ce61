"""Perceptual distances: the offline MobileNetV2 distance, real LPIPS on user-supplied backbones, resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data, filters

from ilo.losses import LPIPS, BackboneMissing, MobileNetPerceptualDistance, resize_for_perceptual
from ilo.losses import lpips as lpips_mod
from ilo.losses.perceptual import unit_normalize
from ilo.nets import VGG16, AlexNet, MobileNetV2, WeightsUnavailable, load_mobilenet_v2
from ilo.nets.weights import LPIPS_HEADS, read_state_dict


def photo(name: str) -> torch.Tensor:
    img = getattr(data, name)()
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    img = ((x[0].permute(1, 2, 0).numpy() + 1) / 2).astype(np.float64)
    out = filters.gaussian(img, sigma=sigma, channel_axis=-1, mode="reflect")
    return torch.from_numpy(out).permute(2, 0, 1)[None].float() * 2 - 1


@pytest.fixture(scope="module")
def dist() -> MobileNetPerceptualDistance:
    return MobileNetPerceptualDistance()


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    astronaut, chelsea = photo("astronaut"), photo("chelsea")  # 512x512, 300x451
    return {
        "astronaut256": resize_for_perceptual(astronaut),
        "astronaut64": F.interpolate(astronaut, size=(64, 64), mode="bicubic", antialias=True),
        "chelsea_crop128": chelsea[..., 40:168, 150:278],
    }


# --- offline MobileNetV2 distance -----------------------------------------------------------


def test_smoke_zero_for_identical_and_shape(dist, images):
    x = torch.cat([images["astronaut64"], images["chelsea_crop128"][..., :64, :64]])
    d = dist(x, x)
    assert d.shape == (2,)
    assert torch.equal(d, torch.zeros(2))


@pytest.mark.parametrize("name", ["astronaut256", "astronaut64", "chelsea_crop128"])
def test_grows_monotonically_with_noise(dist, images, name):
    x = images[name]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    sigmas = [0.02, 0.05, 0.1, 0.2, 0.4]
    with torch.no_grad():
        d = dist(x.expand(len(sigmas), -1, -1, -1), x + torch.tensor(sigmas).view(-1, 1, 1, 1) * noise)
    assert (d[0] > 0) and bool((d[1:] > d[:-1]).all()), d.tolist()


@pytest.mark.parametrize("name", ["astronaut256", "astronaut64", "chelsea_crop128"])
def test_grows_monotonically_with_blur(dist, images, name):
    x = images[name]
    blurred = torch.cat([gaussian_blur(x, s) for s in (0.5, 1.0, 2.0, 4.0)])
    with torch.no_grad():
        d = dist(x, blurred)  # x broadcasts over the batch of blurred versions
    assert (d[0] > 0) and bool((d[1:] > d[:-1]).all()), d.tolist()


def test_different_photos_are_farther_than_noisy_copies(dist, images):
    a = images["astronaut256"][..., 64:192, 64:192]
    b = images["chelsea_crop128"]
    noisy = a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert dist(a, b).item() > 3 * dist(a, noisy).item()


def test_symmetric_and_broadcast(dist, images):
    x = images["chelsea_crop128"]
    y = torch.cat([gaussian_blur(x, 1.0), x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))])
    with torch.no_grad():
        d_xy, d_yx = dist(x, y), dist(y, x)  # batch 1 broadcasts against batch 2, both ways
        d_each = torch.cat([dist(x, y[i : i + 1]) for i in range(2)])
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, d_yx)
    torch.testing.assert_close(d_xy, d_each, rtol=1e-5, atol=1e-6)


def test_cached_target_features_give_same_distance(dist, images):
    x, y = images["astronaut64"], gaussian_blur(images["astronaut64"], 1.5)
    with torch.no_grad():
        per_layer = dist.distance(dist.features(x), dist.features(y))
        assert per_layer.shape == (1, 5) and bool((per_layer > 0).all())
        torch.testing.assert_close(per_layer.sum(1), dist(x, y))


def test_gradient_flows_to_input(dist, images):
    y = images["astronaut64"]
    x = (y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(3))).requires_grad_(True)
    dist(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    assert not any(p.requires_grad for p in dist.parameters())
    # one gradient step towards y lowers the distance
    with torch.no_grad():
        assert dist(x - 0.02 * x.grad / x.grad.abs().max(), y).item() < dist(x, y).item()


def _assert_same_value_and_gradient(d1, d2, y, seed):
    """``d1`` and ``d2`` give the same distance to ``y`` and gradient, within float rounding, at a noisy copy of ``y``."""
    out = []
    for d in (d1, d2):
        x = (y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))).requires_grad_(True)
        value = d(x, y)
        value.sum().backward()
        out.append((value.detach(), x.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-3, atol=1e-6)


def test_fused_batchnorm_path_equals_reference(dist, images):
    reference = MobileNetPerceptualDistance(load_mobilenet_v2(), fuse=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in reference.backbone.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in dist.backbone.modules())
    _assert_same_value_and_gradient(dist, reference, images["chelsea_crop128"][..., :64, :64], seed=4)


def test_gradient_finite_at_identical_images(dist, images):
    x = images["astronaut64"].clone().requires_grad_(True)
    dist(x, images["astronaut64"]).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_backbone_stays_in_eval_mode(dist, images):
    x, y = images["astronaut64"], gaussian_blur(images["astronaut64"], 1.0)
    with torch.no_grad():
        before = dist(x, y)
        dist.train()
        after = dist(x, y)
        dist.eval()
    torch.testing.assert_close(before, after)


def test_exception_bad_shapes(dist):
    with pytest.raises(ValueError, match="same size"):
        dist(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        dist(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="batch sizes 2 and 3"):
        dist(torch.zeros(2, 3, 64, 64), torch.zeros(3, 3, 64, 64))


def test_gradcheck_unit_normalize_and_distance():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit_normalize, (f,))
    norms = unit_normalize(f).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    d = MobileNetPerceptualDistance(MobileNetV2().eval(), taps=(1, 3))
    g = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    h = torch.randn(2, 5, 2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: d.distance([a, b], [g, h]), (f, h.clone().add_(1).requires_grad_()))


# --- resize_for_perceptual ------------------------------------------------------------------


def test_resize_shapes():
    assert resize_for_perceptual(torch.zeros(2, 3, 512, 512)).shape == (2, 3, 256, 256)
    assert resize_for_perceptual(torch.zeros(1, 3, 600, 300)).shape == (1, 3, 256, 128)
    assert resize_for_perceptual(torch.zeros(1, 3, 1024, 1024), size=128).shape == (1, 3, 128, 128)
    for n in (64, 256):
        x = torch.zeros(1, 3, n, n)
        assert resize_for_perceptual(x) is x
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        resize_for_perceptual(torch.zeros(3, 512, 512))


def test_resize_antialiases_and_keeps_smooth_content():
    # stripes at 0.35 cycles/px: above the Nyquist limit (0.25) of the 2x smaller image
    stripes = torch.cos(2 * torch.pi * 0.35 * torch.arange(512.0)).view(1, 1, 1, -1).expand(1, 3, 512, -1)
    ours = resize_for_perceptual(stripes)
    aliased = F.interpolate(stripes, size=(256, 256), mode="bicubic", align_corners=False)  # no low-pass
    assert ours.abs().max() < 0.2 and aliased.abs().max() > 0.5  # suppressed, not folded into false stripes
    ramp = torch.linspace(-1, 1, 512).view(1, 1, 1, -1).expand(1, 3, 512, -1)
    small = resize_for_perceptual(ramp)
    torch.testing.assert_close(small[0, 0, 100, 20:236], torch.linspace(-1, 1, 256)[20:236], atol=5e-3, rtol=0)


def test_gradcheck_resize():
    x = torch.randn(1, 2, 12, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize_for_perceptual(t, size=8), (x,))


# --- LPIPS with user-supplied (here: random) backbones --------------------------------------


def _heads_installed() -> bool:
    try:
        LPIPS_HEADS["vgg"].path()
    except WeightsUnavailable:
        return False
    return True


needs_lpips = pytest.mark.skipif(
    not _heads_installed(), reason=f"the LPIPS heads ship in lpips: {LPIPS_HEADS['vgg'].install_hint}"
)


@pytest.fixture(scope="module")
def backbone_files(tmp_path_factory) -> dict[str, object]:
    """Randomly initialised VGG16/AlexNet files in torchvision's key layout (features only)."""
    root = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    files = {}
    for net, build in (("vgg", VGG16), ("alex", AlexNet)):
        files[net] = root / f"random-{net}.pth"
        torch.save(build(classifier=False).state_dict(), files[net])
    return files


@pytest.fixture(scope="module")
def lpips_nets(backbone_files) -> dict[str, LPIPS]:
    if not _heads_installed():
        pytest.skip(f"the LPIPS heads ship in lpips: {LPIPS_HEADS['vgg'].install_hint}")
    return {net: LPIPS(net, backbone_path=path) for net, path in backbone_files.items()}


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    x = F.interpolate(photo("astronaut"), size=(48, 48), mode="bicubic", antialias=True)
    return x, photo("chelsea")[..., 100:148, 200:248]


@needs_lpips
@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_loads_backbone_and_heads_strictly(lpips_nets, backbone_files, net):
    d = lpips_nets[net]
    saved = read_state_dict(backbone_files[net])
    assert set(d.backbone.state_dict()) == set(saved)
    assert all(torch.equal(d.backbone.state_dict()[k], v) for k, v in saved.items())
    heads = read_state_dict(LPIPS_HEADS[net].path())
    for k, w in enumerate(d.channel_weights()):
        assert torch.equal(w, heads[f"lin{k}.model.1.weight"].flatten()) and bool((w >= 0).all())


@needs_lpips
@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_zero_symmetric_grows_with_noise(lpips_nets, pair, net):
    d = lpips_nets[net]
    x, y = pair
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(d(x, x), torch.zeros(1))
        torch.testing.assert_close(d(x, y), d(y, x))
        levels = d(x, x + torch.tensor([0.05, 0.2, 0.8]).view(-1, 1, 1, 1) * noise)
    assert bool((levels[1:] > levels[:-1]).all()) and levels[0] > 0, levels.tolist()


@needs_lpips
def test_lpips_matches_the_published_recipe(lpips_nets, pair):
    """Recompute LPIPS-VGG by hand: scaling layer, ReLU taps, x / (||x|| + 1e-10), 1x1 heads, mean, sum."""
    d = lpips_nets["vgg"]
    x, y = pair
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    heads = read_state_dict(LPIPS_HEADS["vgg"].path())

    def taps(img):
        h, out = (img - shift) / scale, []
        for i, layer in enumerate(d.backbone.features[:30]):
            h = layer(h)
            if i in (3, 8, 15, 22, 29):
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        expected = sum(
            F.conv2d((a - b) ** 2, heads[f"lin{k}.model.1.weight"]).mean(dim=(2, 3)).flatten()
            for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True))
        )
        torch.testing.assert_close(d(x, y), expected, rtol=1e-5, atol=1e-7)


@needs_lpips
def test_lpips_gradient_flows(lpips_nets, pair):
    x, y = pair
    x = x.clone().requires_grad_(True)
    lpips_nets["alex"](x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


@needs_lpips
def test_lpips_accepts_full_torchvision_layout(tmp_path):
    """A file with features.* and classifier.* (the real torchvision file) loads; the classifier
    tensors are checked against the layout but not kept (stored as stride-0 views: a few bytes)."""
    state = AlexNet(classifier=False).state_dict()
    with torch.device("meta"):
        full_shapes = {k: v.shape for k, v in AlexNet().state_dict().items() if k.startswith("classifier.")}
    state.update({k: torch.zeros(()).expand(s) for k, s in full_shapes.items()})
    path = tmp_path / "alexnet-full.pth"
    torch.save(state, path)
    d = LPIPS("alex", backbone_path=path)
    assert not hasattr(d.backbone, "classifier")
    state["classifier.6.bias"] = torch.zeros(10)
    torch.save(state, path)
    with pytest.raises(WeightsUnavailable, match=r"wrong shape: classifier\.6\.bias"):
        LPIPS("alex", backbone_path=path)


@needs_lpips
def test_exception_backbone_of_wrong_architecture(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(MobileNetV2().state_dict(), path)
    pattern = r"torchvision VGG16 layout.*missing: classifier.*unexpected: .*features\.0\.0\.weight"
    with pytest.raises(WeightsUnavailable, match=pattern):
        LPIPS("vgg", backbone_path=path)


def test_exception_missing_backbone_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected_place = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(BackboneMissing) as err:
        LPIPS("vgg")
    assert "vgg16-397923af.pth" in str(err.value) and str(expected_place) in str(err.value)
    assert "--lpips-backbone" in str(err.value)
    with pytest.raises(BackboneMissing, match="alexnet-owt-7be5be79.pth"):
        LPIPS("alex", backbone_path=tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="alex"):
        LPIPS("squeezenet")


@needs_lpips
def test_hub_cache_lookup_checks_torchvision_hash(tmp_path, monkeypatch, backbone_files):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "alexnet-owt-7be5be79.pth").write_bytes(backbone_files["alex"].read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailable, match="checksum mismatch.*alexnet-owt-7be5be79"):
        LPIPS("alex")  # found in the cache, but it is not torchvision's file
    d = LPIPS("alex", check_hash=False)
    assert torch.equal(d.backbone.features[0].weight, read_state_dict(backbone_files["alex"])["features.0.weight"])


def test_download_goes_to_hub_cache_and_checks_hash(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(AlexNet(classifier=False).state_dict(), mirror / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr(lpips_mod, "TORCHVISION_URL", mirror.as_uri() + "/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(RuntimeError, match="hash"):  # a random file cannot have torchvision's hash
        lpips_mod.find_backbone("alex", download=True)
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").exists()


def test_docstring_examples():
    import doctest

    from ilo.losses import perceptual

    result = doctest.testmod(perceptual)
    assert result.attempted > 0 and result.failed == 0


def test_channels_last_path_equals_contiguous(dist, images):
    """The default fast path (fused, channels-last) equals the fused contiguous one within float rounding."""
    contiguous = MobileNetPerceptualDistance(load_mobilenet_v2(), channels_last=False)
    assert dist.memory_format == torch.channels_last and contiguous.memory_format == torch.contiguous_format
    _assert_same_value_and_gradient(dist, contiguous, images["chelsea_crop128"][..., :64, :64], seed=5)


def test_perceptual_stages_choose_the_taps():
    """``LossConfig.perceptual_stages`` picks a distance on the first stages only; bad counts are refused."""
    from ilo.losses.composite import LossConfig, perceptual_net
    from ilo.nets.mobilenet_v2 import STAGE_ENDS

    assert perceptual_net("mobilenet", stages=3).taps == STAGE_ENDS[:3]
    assert perceptual_net("mobilenet").taps == STAGE_ENDS
    x, y = torch.zeros(1, 3, 64, 64), torch.full((1, 3, 64, 64), 0.5)
    three, five = perceptual_net("mobilenet", stages=3)(x, y), perceptual_net("mobilenet")(x, y)
    assert 0 < three.item() < five.item()  # a sum over fewer depths
    for bad in (0, 6):
        with pytest.raises(ValueError, match="perceptual_stages"):
            LossConfig(perceptual_stages=bad)
