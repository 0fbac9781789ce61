"""Classifier guidance: the data-fidelity term (augmentations, gradients, randomness), generation
from seed faces, transfer to the held-out classifier, and the ``ilo generate`` command."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ilo.cli import main
from ilo.generate import Generation, GuidanceConfig, generate, seed_faces
from ilo.generators.base import per_sample_generators
from ilo.nets import ImageNetClassifier, UnknownClass
from ilo.nets.weights import EFFICIENTNET_LITE0, WeightsUnavailable
from ilo.losses.classifier import ClassifierGuidance
from ilo.losses.composite import LossConfig, Objective
from ilo.operators import Identity
from ilo.solvers import CSGMConfig, ILOConfig, Result, RoundConfig, ilo


def _installed() -> bool:
    try:
        EFFICIENTNET_LITE0.path()
    except WeightsUnavailable:
        return False
    return True


needs_both = pytest.mark.skipif(not _installed(), reason=f"EfficientNet-Lite0 weights missing: {EFFICIENTNET_LITE0.install_hint}")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here: small batches gain nothing from two, and on a shared 2-core
    machine a second OpenMP thread waiting for a busy core makes every convolution far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_classifier() -> ImageNetClassifier:
    """A small random conv net standing in for an ImageNet classifier (fast, 32-px input)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 1000))
    return ImageNetClassifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), size=32, name="toy")


def op_for(clf, shape=(3, 16, 16), seed=0, **kw) -> ClassifierGuidance:
    return ClassifierGuidance(clf, "goldfish", shape, generator=torch.Generator().manual_seed(seed), **kw)


# -- fidelity term ----------------------------------------------------------------------------
def test_smoke_shapes_and_config(toy_classifier):
    op = op_for(toy_classifier, augmentations=3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert op.logits(x).shape == (2, 1000)
    assert op.augment(x).shape == (2, 3, 3, 32, 32)
    assert op(x).shape == (2,)
    p = op.probabilities(x)
    assert p.shape == (2,) and bool(((p > 0) & (p < 1)).all())
    cfg = json.loads(json.dumps(op.config()))
    assert cfg["fidelity"] == "classifier cross-entropy" and cfg["target"] == 1 and cfg["target_name"] == "goldfish"


def test_is_the_data_term_of_the_objective(toy_classifier):
    """The objective weighs the fidelity term by ``mse``; the operator's measurement loss is not used."""
    x, face = torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 3, 16, 16)
    plain = op_for(toy_classifier, augmentations=0)
    obj = Objective(LossConfig(mse=2.0), Identity((3, 16, 16)), fidelity=plain)
    torch.testing.assert_close(obj(x, face), 2 * plain(x))


def test_identity_view_is_the_resized_image(toy_classifier):
    """With a full crop, no flip and no noise a view is the bilinear resize of the image."""
    op = op_for(toy_classifier, augmentations=2, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, noise_std=0.0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ref = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    views = op.augment(x)
    torch.testing.assert_close(views[:, 0], ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(views[:, 1], ref, atol=1e-5, rtol=0)


def test_augmentations_reproducible_from_the_generator_seed(toy_classifier):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    a, b, c = op_for(toy_classifier, seed=5), op_for(toy_classifier, seed=5), op_for(toy_classifier, seed=6)
    first, second = a(x), a(x)
    assert torch.equal(first, b(x)) and torch.equal(second, b(x))
    assert not torch.equal(first, second)  # fresh views at every call
    assert not torch.equal(first, c(x))


def test_per_sample_generators_make_a_sample_independent_of_its_batch(toy_classifier):
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    alone = ClassifierGuidance(toy_classifier, 1, (3, 16, 16), generator=per_sample_generators([11]))
    batch = ClassifierGuidance(toy_classifier, 1, (3, 16, 16), generator=per_sample_generators([11, 12, 13]))
    torch.testing.assert_close(alone.augment(x[:1]), batch.augment(x)[:1])
    with pytest.raises(ValueError, match="per-sample generators"):
        batch.augment(x[:2])
    rep = batch.batch_repeat(2)
    assert rep.augment(x.repeat_interleave(2, 0)).shape[0] == 6


def test_gradient_flows_to_image_and_intermediate_layer(toy_classifier, tiny_dcgan):
    op = op_for(toy_classifier, augmentations=2)
    state = tiny_dcgan.head(2)(tiny_dcgan.sample_latent(2, torch.Generator().manual_seed(0)))
    h = state["h"].clone().requires_grad_(True)
    x = tiny_dcgan.tail(2)({**state, "h": h})
    x.retain_grad()
    op(x).sum().backward()
    for g in (x.grad, h.grad):
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0


def test_exceptions(toy_classifier):
    with pytest.raises(UnknownClass, match="goldfish"):
        ClassifierGuidance(toy_classifier, "goldfsh", (3, 16, 16))
    with pytest.raises(UnknownClass, match="several"):
        ClassifierGuidance(toy_classifier, "crane", (3, 16, 16))
    with pytest.raises(ValueError, match="RGB"):
        ClassifierGuidance(toy_classifier, 1, (1, 16, 16))
    with pytest.raises(ValueError, match="crop_scale"):
        ClassifierGuidance(toy_classifier, 1, (3, 16, 16), crop_scale=(0.0, 1.0))
    op = op_for(toy_classifier)
    with pytest.raises(ValueError, match="expects"):
        op(torch.zeros(2, 3, 8, 8))


def test_ilo_runs_with_the_fidelity_and_restarts(toy_classifier, tiny_dcgan):
    """ILO with the classifier as its data term, from random starts (CSGM restarts repeat the streams);
    the measurement loss is the operator's: the distance from the observed face."""
    fid = ClassifierGuidance(toy_classifier, "goldfish", (3, 16, 16), augmentations=2, generator=per_sample_generators([1, 2]))
    cfg = ILOConfig(csgm=CSGMConfig(steps=3, restarts=2), rounds=(RoundConfig(layer=1, steps=3, radius=0.2, relative=True),),
                    select="last")
    face = torch.zeros(2, 3, 16, 16)
    res = ilo(face, Identity((3, 16, 16)), tiny_dcgan, cfg, seeds=[1, 2], fidelity=fid)
    assert res.image.shape == (2, 3, 16, 16) and res.steps == 6 and bool(torch.isfinite(res.measurement_loss).all())
    torch.testing.assert_close(res.measurement_loss, Identity((3, 16, 16)).measurement_loss(res.image, face))


# -- generation with the real classifiers -----------------------------------------------------
@pytest.fixture(scope="module")
def goldfish(digiface) -> Generation:
    torch.manual_seed(0)  # nothing should depend on it; set so a failure would be reproducible anyway
    # cheaper than the defaults (12 steps, 128-px views) yet a clear transfer
    return generate(digiface, "goldfish", [0.0, 0.15], seeds=[0, 1], classifier="mobilenet",
                    config=GuidanceConfig(steps=12, view_size=128))


@needs_both
def test_transfer_to_the_held_out_classifier(goldfish):
    """Guided by MobileNetV2 only, the image becomes more of a goldfish for EfficientNet-Lite0 too."""
    assert goldfish.guide == "mobilenet_v2" and goldfish.held_out == "efficientnet_lite0"
    held = goldfish.probabilities["efficientnet_lite0"]  # [S, R]
    before, after = held[:, 0].mean(), held[:, 1].mean()
    assert after > 5 * before and after > before + 0.005, (before, after)
    assert bool((held[:, 1] > 2 * held[:, 0]).all()), held  # every seed, not only on average
    guided = goldfish.probabilities["mobilenet_v2"]
    assert float(guided[:, 1].mean()) > 0.3
    assert bool((goldfish.distances[:, 1] > 0).all()) and bool((goldfish.distances[:, 0] == 0).all())


@needs_both
def test_radius_zero_is_the_unchanged_face(goldfish, digiface):
    faces, _ = seed_faces(digiface, [0, 1])
    assert torch.equal(goldfish.images[:, 0], faces)
    assert goldfish.results[0] is None and goldfish.results[1].layer == digiface.num_layers - 1
    d = goldfish.to_dict()
    assert json.loads(json.dumps(d))["cells"][0]["radius"] == 0.0 and len(d["cells"]) == 4


def test_radius_zero_rounds_return_the_face_exactly(digiface):
    """Through the solver itself: l1 balls of radius 0 around every layer keep the face bit for bit."""
    faces, state = seed_faces(digiface, [7])
    fid = ClassifierGuidance("mobilenet", "goldfish", augmentations=1, view_size=64)
    init = Result(image=faces, latents=state, layer=0, measurement_loss=torch.zeros(1))
    cfg = ILOConfig(csgm=CSGMConfig(steps=0), select="last",
                    rounds=tuple(RoundConfig(layer=k, steps=1, radius=0.0, relative=True) for k in (1, 2, 3, 4)))
    res = ilo(faces, Identity(tuple(digiface.image_shape)), digiface, cfg, init=init, seeds=[7], fidelity=fid)
    assert torch.equal(res.image, faces)


def test_generate_rejects_bad_input(digiface):
    with pytest.raises(UnknownClass, match="1 goldfish"):
        generate(digiface, "goldfsh", [0.1], seeds=[0])
    with pytest.raises(ValueError, match="radii"):
        generate(digiface, "goldfish", [-0.1], seeds=[0])
    with pytest.raises(ValueError, match="layers"):
        generate(digiface, "goldfish", [0.1], seeds=[0], config=GuidanceConfig(layers=(0, 1)))
    with pytest.raises(KeyError, match="classifier"):
        generate(digiface, "goldfish", [0.1], seeds=[0], classifier="resnet")


# -- command line -----------------------------------------------------------------------------
def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_unknown_class_one_line_with_suggestions(tmp_path, capsys):
    code, out, err = run(["generate", "--class", "goldfsh", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and err.count("\n") == 1 and "close matches: 1 goldfish" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run(["generate", "--class", "goldfish", "--radii", "0,-1", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--radii" in err


@needs_both
def test_cli_generate_writes_grid_and_numbers(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["generate", "--class", "Granny Smith", "--radii", "0,0.1", "--seed", "4", "--seeds", "2",
                             "--steps", "4", "--augmentations", "1", "--classifier", "efficientnet", "--quiet",
                             "--out", str(out)], capsys)
    assert code == 0, err
    for name in ("grid.png", "generation.json", "config.json"):
        assert (out / name).is_file(), name
    g = json.loads((out / "generation.json").read_text())
    assert g["target"] == 948 and g["guide"] == "efficientnet_lite0" and g["seeds"] == [4, 5]
    assert {"p_mobilenet_v2", "p_efficientnet_lite0", "distance"} <= set(g["cells"][0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["radii"] == [0.0, 0.1] and cfg["held_out"] == "mobilenet_v2" and "relative" in cfg["radius_kind"]
    assert "Granny Smith" in stdout and not list(out.glob(".*tmp*"))


@needs_both
def test_bench_smoke_and_resume(tmp_path, capsys):
    from ilo.bench.classifier import main as bench

    args = ["--out", str(tmp_path), "--seeds", "1", "--radii", "0.1", "--steps", "4", "--augmentations", "1",
            "--classes", "goldfish"]
    bench(args)
    res = json.loads((tmp_path / "classifier.json").read_text())
    row = res["classes"][0]
    assert row["class"] == "goldfish" and len(row["held_out_mean"]) == 2 and row["distance_mean"][0] == 0
    assert (tmp_path / "classifier_grid.png").is_file() and "| goldfish |" in (tmp_path / "classifier.md").read_text()
    capsys.readouterr()
    bench(args)  # same settings: nothing recomputed
    assert "reused" in capsys.readouterr().out
