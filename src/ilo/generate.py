"""Classifier-guided out-of-distribution generation (section 4.3 of Daras et al. 2021).

Start from the generator's face for a seed and ask an ImageNet classifier for a class, e.g.
"goldfish". ILO searches, layer after layer, within an l1 ball around each intermediate
representation of the face; the radius bounds how far the image may leave the face manifold:

    radius 0       the unchanged face
    small radius   a face with the class's colours and textures
    large radius   an image the classifiers take for the class

There is no CSGM stage and no random start: the starting latent is the seed's latent, exactly
the face :func:`ilo.pipeline.truth_from_seeds` draws (as ``ilo solve --truth-seed``).
Each radius is one call of :func:`ilo.solvers.ilo` with ``init`` = that face and one round per
layer. The operator is :class:`~ilo.operators.Identity` with the face as its observation (so
the measurement loss is the distance from the face); the objective's data-fidelity term is the
guiding classifier's loss averaged over random augmentations
(:class:`~ilo.losses.classifier.ClassifierGuidance`); the *other* classifier never guides
and measures whether the class features are real rather than adversarial.

Radii are **relative**: round ``k`` keeps ``||h_k - h_k^0||_1 <= r * ||h_k^0||_1`` per image,
``h_k^0`` the round's starting point (the previous round's solution carried forward), like the
repository's ILO presets, so one radius means the same for every layer width.

>>> from ilo.generators import load_generator                                # doctest: +SKIP
>>> out = generate(load_generator("digiface-dcgan"), "goldfish", [0, 0.1], seeds=[0, 1])  # doctest: +SKIP
>>> out.images.shape, out.probabilities["efficientnet_lite0"].shape           # doctest: +SKIP
(torch.Size([2, 2, 3, 64, 64]), torch.Size([2, 2]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from collections.abc import Callable, Sequence

import torch

from .generators.base import LayeredGenerator
from .losses.classifier import CLASSIFIER_NAMES, ClassifierGuidance, get_classifier
from .losses.composite import LossConfig, perceptual_net
from .nets import class_index, class_name
from .operators import Identity
from .rng import stream, streams
from .solvers import CSGMConfig, ILOConfig, Result, RoundConfig, ilo
from .solvers.optim import StepInfo

#: the two offline classifiers; each image is scored by both (one guided it, one is held out)
CLASSIFIERS = ("mobilenet_v2", "efficientnet_lite0")


@dataclass(frozen=True)
class GuidanceConfig:
    """Hyperparameters of :func:`generate` (the defaults are those of the CLI and docs/CLASSIFIER.md).

    Args:
        steps: Adam steps per radius, split evenly over the rounds (the last takes the rest).
        layers: the generator layers optimised, one round each, shallow to deep;
            None = every intermediate layer ``1 .. num_layers - 1``.
        lr: Adam learning rate of every round (cosine ramp-down, restarted per round).
        augmentations, crop_scale, crop_ratio, flip, noise_std, view_size: the random views
            the guiding loss is averaged over (see :class:`ClassifierGuidance`).
    """

    steps: int = 20
    layers: tuple[int, ...] | None = None
    lr: float = 0.1
    augmentations: int = 4
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    noise_std: float = 0.05
    view_size: int | None = 160

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    def rounds(self, generator: LayeredGenerator, radius: float) -> tuple[RoundConfig, ...]:
        """One relative-radius round per layer, the steps split evenly."""
        layers = tuple(self.layers) if self.layers is not None else tuple(range(1, generator.num_layers))
        if not layers or any(not 1 <= k < generator.num_layers for k in layers) or list(layers) != sorted(set(layers)):
            raise ValueError(f"layers must be increasing intermediate layers in [1, {generator.num_layers - 1}], got {layers}")
        if self.steps < len(layers):
            raise ValueError(f"steps={self.steps} is fewer than one step per layer ({len(layers)} layers)")
        per = [self.steps // len(layers)] * len(layers)
        per[-1] += self.steps - sum(per)
        return tuple(RoundConfig(layer=k, steps=s, lr=self.lr, radius=float(radius), relative=True)
                     for k, s in zip(layers, per))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    """What :func:`generate` returns; ``S`` seeds (rows) by ``R`` radii (columns).

    Attributes:
        images: ``[S, R, C, H, W]`` in ``[-1, 1]``; column ``j`` has radius ``radii[j]``.
        probabilities: classifier name -> target-class softmax probability ``[S, R]``, for
            both classifiers (no augmentation, native 224-px input).
        distances: ``[S, R]`` MobileNet perceptual distance
            (:class:`~ilo.losses.perceptual.MobileNetPerceptualDistance`) to the seed's face.
        target, target_name: the ImageNet class.
        guide: the classifier that guided; the other one is :attr:`held_out`.
        radii, seeds: the columns and rows.
        config: the resolved configuration (JSON-serialisable).
        results: per radius, the solver's :class:`~ilo.solvers.Result` (None for radius 0).
    """

    images: torch.Tensor
    probabilities: dict[str, torch.Tensor]
    distances: torch.Tensor
    target: int
    target_name: str
    guide: str
    radii: tuple[float, ...]
    seeds: tuple[int, ...]
    config: dict = field(default_factory=dict)
    results: list[Result | None] = field(default_factory=list)

    @property
    def held_out(self) -> str:
        return next(c for c in CLASSIFIERS if c != self.guide)

    def to_dict(self) -> dict:
        """The numbers, JSON-serialisable: per seed and radius, both probabilities and the distance."""
        def num(v: torch.Tensor) -> float:
            return float(f"{float(v):.6g}")

        cells = [
            {"seed": s, "radius": r, "distance": num(self.distances[i, j]),
             **{f"p_{name}": num(p[i, j]) for name, p in self.probabilities.items()}}
            for i, s in enumerate(self.seeds) for j, r in enumerate(self.radii)
        ]
        means = [
            {"radius": r, "distance": num(self.distances[:, j].mean()),
             **{f"p_{name}": num(p[:, j].mean()) for name, p in self.probabilities.items()}}
            for j, r in enumerate(self.radii)
        ]
        return {"target": self.target, "target_name": self.target_name, "guide": self.guide,
                "held_out": self.held_out, "radii": list(self.radii), "seeds": list(self.seeds),
                "mean_over_seeds": means, "cells": cells}


def seed_faces(generator: LayeredGenerator, seeds: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The faces ``[S, C, H, W]`` and latent states (layer 0) of the seeds, each from the stream
    ``(seed, "truth")``: the faces of :func:`ilo.pipeline.truth_from_seeds`."""
    states = [generator.sample_latent(1, stream(int(s), "truth")) for s in seeds]
    state = {k: torch.cat([s[k] for s in states]).to(generator.device) for k in states[0]}
    with torch.no_grad():
        return generator(state), state


def generate(
    generator: LayeredGenerator,
    target: int | str,
    radii: Sequence[float],
    seeds: int | Sequence[int] = 0,
    classifier: str = "mobilenet",
    config: GuidanceConfig | None = None,
    *,
    callback: Callable[[StepInfo], None] | None = None,
    progress: bool = False,
) -> Generation:
    """Classifier-guided ILO from the seeds' faces (section 4.3 of Daras et al. 2021).

    For every radius ``r > 0``: the seeds' faces are the initial point (no CSGM); one ILO
    round per layer minimises the guiding classifier's augmented cross-entropy for ``target``
    within the relative l1 ball of radius ``r``; the final iterate is kept
    (``select="last"``: the loss is a random estimate over fresh augmentations, so the
    iterate with the lowest loss would mostly be a lucky draw, and the l1 balls already bound
    the distance). Radius ``0`` is the unchanged face (no optimisation is run). All seeds run
    as one batch, each with its own augmentation stream ``(seed, "augment")`` (:mod:`ilo.rng`),
    so an image does not depend on the other seeds.

    Args:
        generator: a layered generator (its faces are the starting points).
        target: ImageNet class index or name (unknown or ambiguous names raise
            :class:`ilo.nets.UnknownClass` listing close matches).
        radii: relative l1 radii ``>= 0``, one column each.
        seeds: face seeds (an int ``s`` means the single seed ``s``).
        classifier: the guiding classifier, ``"mobilenet"`` or ``"efficientnet"`` (full names
            accepted); the other one is held out.
        config: hyperparameters (default :class:`GuidanceConfig`).
        callback, progress: passed to the solver.

    Returns:
        :class:`Generation` (images ``[S, R, C, H, W]``, both classifiers' probabilities and
        the perceptual distance to the face, ``[S, R]`` each).
    """
    config = config or GuidanceConfig()
    tgt = class_index(target)
    if classifier not in CLASSIFIER_NAMES:
        raise KeyError(f"unknown classifier {classifier!r}; choose from {', '.join(CLASSIFIER_NAMES)}")
    guide = CLASSIFIER_NAMES[classifier]
    radii = tuple(float(r) for r in radii)
    if not radii or any(not r >= 0 for r in radii):
        raise ValueError(f"radii must be a non-empty list of numbers >= 0, got {list(radii)}")
    seeds_ = (int(seeds),) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds_:
        raise ValueError("seeds must name at least one face")
    for r in radii:  # validate every round before any work
        if r > 0:
            config.rounds(generator, r)
    dev = generator.device
    nets = {name: get_classifier(name, dev) for name in CLASSIFIERS}

    def guidance() -> ClassifierGuidance:  # fresh streams per radius: a column never depends on the others
        return ClassifierGuidance(
            nets[guide], tgt, tuple(generator.image_shape),
            augmentations=config.augmentations, crop_scale=config.crop_scale, crop_ratio=config.crop_ratio,
            flip=config.flip, noise_std=config.noise_std, view_size=config.view_size,
            generator=streams(seeds_, "augment"),
        )

    fid = guidance()
    faces, state0 = seed_faces(generator, seeds_)
    op = Identity(tuple(generator.image_shape))  # the observation is the face itself

    columns, results = [], []
    for r in radii:
        if r == 0:
            columns.append(faces)
            results.append(None)
            continue
        fid = guidance()
        init = Result(image=faces, latents=state0, layer=0, measurement_loss=torch.zeros(len(seeds_), device=dev),
                      method="seed-face")
        # the data-fidelity term (weight LossConfig.mse) is the classifier's cross-entropy
        cfg = ILOConfig(csgm=CSGMConfig(steps=0), rounds=config.rounds(generator, r), select="last", loss=LossConfig())
        res = ilo(faces, op, generator, cfg, seeds=list(seeds_), init=init, fidelity=fid, callback=callback,
                  progress=progress)
        columns.append(res.image)
        results.append(res)

    images = torch.stack(columns, 1)  # [S, R, C, H, W]
    flat = images.flatten(0, 1)
    with torch.no_grad():
        probs = {name: net(flat).softmax(1)[:, tgt].view(len(seeds_), len(radii)).cpu() for name, net in nets.items()}
        dist = perceptual_net("mobilenet", dev)(flat, faces.repeat_interleave(len(radii), 0))
    return Generation(
        images=images.cpu(),
        probabilities=probs,
        distances=dist.view(len(seeds_), len(radii)).cpu(),
        target=tgt,
        target_name=class_name(tgt),
        guide=guide,
        radii=radii,
        seeds=seeds_,
        config={"guidance": config.to_dict(), "fidelity": fid.config(), "generator": generator.name,
                "select": "last", "radius": "relative l1, per round and per image"},
        results=results,
    )
