"""Classifier guidance: an ImageNet classifier's cross-entropy as a data-fidelity term.

Section 4.3 of Daras et al. (2021), "Out of distribution generation": there is no measured
image, only the wish "this image is class ``c``". The wish is a data-fidelity term of the
objective (:class:`~ilo.losses.fidelity.DataFidelity`), apart from the operator (which says
how data are made, here :class:`~ilo.operators.Identity` of the starting face): ILO minimises
the classifier's cross-entropy for ``c`` within l1 balls around the generator's intermediate
layers, so the radius decides how far the image may leave the face manifold.

The paper used an adversarially robust classifier, whose input gradients point at visible
class features. None of the classifiers that install offline here is robust (MobileNetV2,
EfficientNet-Lite0): their raw gradients make imperceptible adversarial noise that fools the
guiding network and nothing else. :class:`ClassifierGuidance` therefore averages the loss
over ``augmentations`` random views of the image, drawn afresh at every call,

.. math::
    \\ell(x) = \\frac{1}{K} \\sum_{k=1}^{K} \\mathrm{CE}\\big(f(T_k(x + \\sigma n_k)), c\\big),

with ``n_k`` standard Gaussian noise and ``T_k`` a random resized crop (area fraction in
``crop_scale``, aspect ratio in ``crop_ratio``) with a random horizontal flip, resampled to the
classifier's input size. A perturbation only lowers this loss if it survives shifts, rescaling,
mirroring and noise, which pixel-level adversarial patterns do not; class features that are
visible at the image's scale do. Whether that worked is measured by *transfer*: the target
probability of the other classifier, which never guided the image (``tests/test_classifier.py``,
``python -m ilo.bench.classifier``, docs/CLASSIFIER.md).
"""

from __future__ import annotations

import copy
import math
from typing import Any
import torch
import torch.nn.functional as F

from ..nets import ImageNetClassifier, class_index, class_name, load_classifier
from ..operators.base import RandomSource
from .fidelity import DataFidelity

#: short names accepted for the two offline classifiers -> :func:`ilo.nets.load_classifier` names
CLASSIFIER_NAMES = {
    "mobilenet": "mobilenet_v2",
    "mobilenet_v2": "mobilenet_v2",
    "efficientnet": "efficientnet_lite0",
    "efficientnet_lite0": "efficientnet_lite0",
}

_LOADED: dict[tuple[str, str], ImageNetClassifier] = {}


def get_classifier(name: str, device: torch.device | str = "cpu") -> ImageNetClassifier:
    """A frozen ImageNet classifier by short name (``"mobilenet"``, ``"efficientnet"``) or full
    name (``"mobilenet_v2"``, ``"efficientnet_lite0"``), loaded once per process and device.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        ilo.nets.WeightsUnavailable: the weight package is not installed (the message gives the pip command).
    """
    if name not in CLASSIFIER_NAMES:
        raise KeyError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIER_NAMES)}")
    key = (CLASSIFIER_NAMES[name], str(torch.device(device)))
    if key not in _LOADED:
        _LOADED[key] = load_classifier(key[0]).to(device)
    return _LOADED[key]


class ClassifierGuidance(DataFidelity):
    """Cross-entropy of a target ImageNet class, averaged over random augmentations: ``[B]``.

    A data-fidelity term: ``fidelity(x, y, operator)`` ignores ``y`` and the operator (the
    datum it is faithful to is the target class, fixed at construction).

    Randomness: the augmentations of every call are drawn from ``generator``, either one
    ``torch.Generator`` for the whole batch or a sequence with one per sample (then a sample's
    augmentations do not depend on its batch). ``None`` means a fresh ``torch.Generator``
    seeded with 0, never the global RNG. Two operators built with equally seeded generators
    produce the same sequence of losses.

    Args:
        classifier: an :class:`~ilo.nets.ImageNetClassifier` (or its short name, see
            :func:`get_classifier`).
        target: ImageNet class index or name (see :func:`ilo.nets.class_index`).
        input_shape: per-sample image shape ``(3, H, W)``.
        augmentations: views ``K`` per image and call (``0``: the plain loss, no augmentation).
        crop_scale: range of the crop's area as a fraction of the image.
        crop_ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        flip: mirror each view horizontally with probability 1/2.
        noise_std: std of the Gaussian noise added to each view, in ``[-1, 1]`` image units.
        view_size: side of the views fed to the classifier (None: its native input size, 224;
            smaller is cheaper: the networks are convolutional and pool globally).
        generator: random source of the augmentations (see above).

    Example:
        >>> from ilo.nets import ImageNetClassifier
        >>> net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
        >>> clf = ImageNetClassifier(net, (0.5,) * 3, (0.5,) * 3, size=32)  # a stand-in network
        >>> op = ClassifierGuidance(clf, "goldfish", (3, 16, 16), augmentations=2,
        ...                         generator=torch.Generator().manual_seed(0))
        >>> op.target, op.target_name
        (1, 'goldfish')
        >>> x = torch.zeros(2, 3, 16, 16)
        >>> op(x).shape, op.probabilities(x).shape
        (torch.Size([2]), torch.Size([2]))
    """

    def __init__(
        self,
        classifier: ImageNetClassifier | str,
        target: int | str,
        input_shape: tuple[int, int, int] = (3, 64, 64),
        *,
        augmentations: int = 4,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        noise_std: float = 0.05,
        view_size: int | None = None,
        generator: RandomSource = None,
    ):
        self.input_shape = tuple(int(s) for s in input_shape)
        if self.input_shape[0] != 3:
            raise ValueError(f"ImageNet classifiers take RGB images, got input_shape {self.input_shape}")
        if isinstance(classifier, str):
            classifier = get_classifier(classifier)
        if not isinstance(classifier, ImageNetClassifier):
            raise TypeError(f"classifier must be an ImageNetClassifier or a name, got {type(classifier).__name__}")
        if isinstance(augmentations, bool) or int(augmentations) != augmentations or augmentations < 0:
            raise ValueError(f"augmentations must be an integer >= 0, got {augmentations!r}")
        lo, hi = (float(v) for v in crop_scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {crop_scale}")
        rlo, rhi = (float(v) for v in crop_ratio)
        if not 0.0 < rlo <= rhi:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {crop_ratio}")
        if not float(noise_std) >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.classifier = classifier
        self.target = class_index(target)
        self.target_name = class_name(self.target)
        self.augmentations = int(augmentations)
        self.crop_scale, self.crop_ratio = (lo, hi), (rlo, rhi)
        self.flip, self.noise_std = bool(flip), float(noise_std)
        if view_size is not None and (isinstance(view_size, bool) or int(view_size) != view_size or view_size < 32):
            raise ValueError(f"view_size must be an integer >= 32 or None, got {view_size!r}")
        self.view_size = int(view_size) if view_size is not None else int(classifier.size)
        self.generator: torch.Generator | list[torch.Generator] = (
            torch.Generator().manual_seed(0) if generator is None
            else generator if isinstance(generator, torch.Generator) else list(generator)
        )

    # -- fidelity -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{type(self).__name__} expects [B, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the un-augmented images: ``[B, 3, H, W] -> [B, 1000]``."""
        self.check_input(x)
        return self.classifier(x)

    def target_labels(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The target class index for each of ``batch`` samples: ``[B]``."""
        return torch.full((batch,), self.target, dtype=torch.long, device=device)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probability of the target class for un-augmented images ``x``: ``[B]``."""
        return self.logits(x).softmax(dim=1)[:, self.target]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``K`` random views of every image, ``[B, 3, H, W] -> [B, K, 3, S, S]`` (``S`` =
        ``view_size``), drawn from the operator's generator (see the class docstring).

        Per view: Gaussian noise of std ``noise_std`` on the image, then one bilinear
        ``grid_sample`` that crops, mirrors and resizes (the crop lies inside the image).
        """
        self.check_input(x)
        B, K, S = x.shape[0], self.augmentations, self.view_size
        if K == 0:
            raise ValueError("augment() needs augmentations >= 1")
        u, noise = self._draw(B, x)  # [B, K, 4], [B, K, 3, H, W]
        area = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * u[..., 0]
        log_lo, log_hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
        w = (area * ratio).sqrt().clamp(max=1.0)  # crop width / image width
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (2 * u[..., 2] - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop inside
        cy = (2 * u[..., 3] - 1) * (1 - h)
        sign = 1 - 2 * (u[..., 4] < 0.5).to(w.dtype) if self.flip else torch.ones_like(w)  # -1: mirrored
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * sign, zero, cx], -1), torch.stack([zero, h, cy], -1)], -2)
        views = (x[:, None] + self.noise_std * noise).flatten(0, 1)  # [B*K, 3, H, W]
        grid = F.affine_grid(theta.flatten(0, 1).to(x.dtype), [B * K, 3, S, S], align_corners=False)
        out = F.grid_sample(views, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.view(B, K, 3, S, S)

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None, operator=None) -> torch.Tensor:
        """Cross-entropy of the target class averaged over ``K`` fresh random views: ``[B]``.

        ``y`` and ``operator`` are not used (see the class docstring). With ``augmentations=0``
        it is the plain cross-entropy of ``x``.
        """
        self.check_input(x)
        B = x.shape[0]
        if self.augmentations == 0:
            logits = self.classifier(x)  # [B, 1000]
            return F.cross_entropy(logits, self.target_labels(B, x.device), reduction="none")
        views = self.augment(x).flatten(0, 1)  # [B*K, 3, S, S]
        clf = self.classifier  # views are already S x S: normalise only, no resize to clf.size
        logits = clf.net(((views + 1) / 2 - clf.mean) / clf.std)  # [B*K, 1000]
        ce = F.cross_entropy(logits, self.target_labels(views.shape[0], x.device), reduction="none")
        return ce.view(B, self.augmentations).mean(1)

    def _draw(self, B: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniforms ``[B, K, 5]`` (area, ratio, x, y, flip) and standard noise ``[B, K, 3, H, W]``."""
        K, shape = self.augmentations, (self.augmentations, *self.input_shape)
        gens = self.generator
        if isinstance(gens, torch.Generator):
            u = torch.rand((B, K, 5), generator=gens, device=gens.device)
            n = torch.randn((B, *shape), generator=gens, device=gens.device)
        else:
            if len(gens) != B:
                raise ValueError(f"the operator holds {len(gens)} per-sample generators for a batch of {B}")
            draws = [(torch.rand((K, 5), generator=g, device=g.device),
                      torch.randn(shape, generator=g, device=g.device)) for g in gens]
            u = torch.stack([d[0].to(x.device) for d in draws])
            n = torch.stack([d[1].to(x.device) for d in draws])
        return u.to(x.device, x.dtype), n.to(x.device, x.dtype)

    def batch_repeat(self, r: int) -> ClassifierGuidance:
        """For a batch with every sample repeated ``r`` times in a row: per-sample generators
        are repeated (each sample's ``r`` copies then share, and advance, one stream)."""
        if r == 1 or isinstance(self.generator, torch.Generator):
            return self
        new = copy.copy(self)
        new.generator = [g for g in self.generator for _ in range(r)]
        return new

    def config(self) -> dict:
        cfg: dict[str, Any] = {"fidelity": "classifier cross-entropy", "input_shape": list(self.input_shape)}
        cfg.update(
            classifier=self.classifier.name,
            target=self.target,
            target_name=self.target_name,
            augmentations=self.augmentations,
            crop_scale=list(self.crop_scale),
            crop_ratio=list(self.crop_ratio),
            flip=self.flip,
            noise_std=self.noise_std,
            view_size=self.view_size,
        )
        return cfg

    def extra_repr(self) -> str:
        return f"target={self.target} ({self.target_name}), augmentations={self.augmentations}"

