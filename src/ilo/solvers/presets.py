"""The preset table: solver configurations as data, keyed by generator family and task.

:func:`default_config` looks up ``PRESETS[generator.family][task]`` (a :class:`TaskPreset`:
the ILO loss, the loss below a "scarce" level, the round radius) and hands it to the family's
layout (:data:`LAYOUTS`: how the budget is split into a CSGM stage and rounds); the CSGM
variants and PULSE take their loss from :data:`METHOD_LOSS`. This module and
:mod:`ilo.operators` are the only places that name tasks.

DCGAN presets were tuned on tuning images only (generated seeds 10_000-10_003 and LFW faces
70, 80, 90 for the radii and the CSGM learning rate; the loss terms re-decided term by term on
the 15 real tuning faces and generated seeds 10_000-10_007 with
``python -m ilo.bench.presets_tuning``), never on evaluation images; see docs/BENCHMARKS.md
and docs/PERFORMANCE.md. StyleGAN-2 presets follow section 4.1 of the paper and the defaults
of the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from collections.abc import Callable

from ..losses.composite import LossConfig
from .bm3d import BM3DConfig
from .classical import CLASSICAL, ClassicalConfig
from .config import CSGMConfig, ILOConfig, RoundConfig, Schedule

#: weight of the offline perceptual distance where a DCGAN preset uses it (MSE has weight 1)
PERCEPTUAL_WEIGHT = 0.05
#: inpainting below this observed fraction uses MSE only (the paper: "scarce measurements")
SCARCE_OBSERVED = 0.25
#: Adam learning rate of the CSGM (MSE) baseline. Tuned on the tuning images (generated seeds
#: 10000-10003, LFW 70/80/90) over 0.05-0.4: at 600 steps x 4 restarts, inversion PSNR 32.6 ->
#: 44.3 dB (generated) and 21.4 -> 22.3 dB (LFW) going from 0.05 to 0.2; at 100 x 2 0.2 is best
#: or within 0.2 dB of the best on inpainting, compressed sensing and super-resolution.
CSGM_LR = 0.2
#: the loss of every CSGM-family method (the paper's three CSGM columns and PULSE's
#: 100 MSE + 0.05 geocross, Menon et al. 2020)
METHOD_LOSS = {
    "csgm": LossConfig(),
    "csgm-perceptual": LossConfig(mse=0.0, perceptual=1.0),
    "csgm-mse-perceptual": LossConfig(mse=1.0, perceptual=PERCEPTUAL_WEIGHT),
    "pulse": LossConfig(mse=100.0, geocross=0.05),
}


@dataclass(frozen=True)
class TaskPreset:
    """The ILO preset of one (family, task): ``loss``, and ``scarce_loss`` below the level
    ``scarce_below`` (or when the level is unknown); ``radius``: the relative l1 radius of
    every round, ``csgm_lr``: the Adam learning rate of ILO's first (CSGM) stage (DCGAN layout)."""

    loss: LossConfig
    scarce_loss: LossConfig | None = None
    scarce_below: float | None = None
    radius: float = 0.3
    csgm_lr: float = 0.05

    def loss_at(self, level: float | None) -> LossConfig:
        scarce = self.scarce_loss is not None and (level is None or self.scarce_below is None or level < self.scarce_below)
        return self.scarce_loss if scarce and self.scarce_loss is not None else self.loss


_DCGAN_IMAGE = LossConfig(mse=1.0, perceptual=PERCEPTUAL_WEIGHT)
#: DCGAN inpainting and compressed sensing: MSE only. At 30% observed (300 x 2, tuning faces) the
#: perceptual term cost 1.7 dB on real and 8 dB on generated faces and raised the perceptual
#: distance itself 1.7x / 5x; super-resolution keeps it (+0.6 dB generated, -7% / -22% distance).
#: Denoising (SNA on): MSE only with the CSGM stage at lr 0.2, +1.9 / +3.5 dB real / generated
#: against the perceptual term, the distance -24% generated, +4% real (docs/PERFORMANCE.md)
_DCGAN_MSE = LossConfig()
_SG_IMAGE = LossConfig(mse=1.0, perceptual=1.0, geocross=0.01)
_SG_MSE = LossConfig(mse=1.0, geocross=0.01)

#: family -> task -> preset
PRESETS: dict[str, dict[str, TaskPreset]] = {
    "dcgan": {
        "inpaint": TaskPreset(_DCGAN_MSE, radius=0.3),
        "superres": TaskPreset(_DCGAN_IMAGE, radius=0.3),
        "denoise": TaskPreset(replace(_DCGAN_MSE, sna=True), radius=0.1, csgm_lr=CSGM_LR),
        "cs": TaskPreset(_DCGAN_MSE, radius=0.3),
    },
    "stylegan2": {
        "inpaint": TaskPreset(_SG_IMAGE, scarce_loss=_SG_MSE, scarce_below=SCARCE_OBSERVED),
        "superres": TaskPreset(_SG_IMAGE),
        "denoise": TaskPreset(replace(_SG_IMAGE, sna=True)),
        "cs": TaskPreset(_SG_MSE),
    },
}


def task_preset(family: str, task: str) -> TaskPreset:
    """``PRESETS[family][task]``; ValueError naming what exists otherwise."""
    if family not in PRESETS:
        raise ValueError(f"no presets for generator family {family!r}; known: {', '.join(PRESETS)}")
    if task not in PRESETS[family]:
        raise ValueError(f"no preset for task {task!r}; give a config (presets: {', '.join(PRESETS[family])})")
    return PRESETS[family][task]


def csgm_preset(total_steps: int = 600, restarts: int = 4, variant: str = "csgm") -> CSGMConfig:
    """CSGM with the MSE, the perceptual or the combined loss (the paper's three CSGM columns).
    The MSE variant uses the tuned :data:`CSGM_LR`; the perceptual ones keep Adam's 0.05 (not tuned)."""
    return CSGMConfig(steps=total_steps, restarts=restarts, loss=METHOD_LOSS[variant],
                      lr=CSGM_LR if variant == "csgm" else 0.05)


def pulse_preset(total_steps: int = 600, restarts: int = 4) -> CSGMConfig:
    """PULSE (Menon et al. 2020): latents on the sphere of radius sqrt(d), loss 100 MSE +
    0.05 geocross, Adam lr 0.4; the best iterate is returned (PULSE's code returned the last)."""
    return CSGMConfig(steps=total_steps, restarts=restarts, lr=0.4, sphere=True, loss=METHOD_LOSS["pulse"])


def dcgan_layout(generator, preset: TaskPreset, loss: LossConfig, total_steps: int, restarts: int) -> ILOConfig:
    """ILO for a 64x64 DCGAN: CSGM for a third of the budget, then one round per layer 1-3
    with an l1 radius relative to the layer's norm (so it grows with layer width)."""
    csgm_steps = total_steps // 3
    rest = total_steps - csgm_steps
    layers = (1, 2, 3)
    per = [rest // len(layers)] * len(layers)
    per[-1] += rest - sum(per)
    rounds = tuple(RoundConfig(layer=k, steps=s, lr=0.05, radius=preset.radius, relative=True) for k, s in zip(layers, per))
    return ILOConfig(csgm=CSGMConfig(steps=csgm_steps, restarts=restarts, loss=loss, lr=preset.csgm_lr), rounds=rounds,
                     loss=loss)


#: the share of ILO's round steps kept in a self-tuned preset whose CSGM stage is the CSGM method
#: at ILO's whole budget (the operator's ``self_tuning_csgm == "method"``): the rounds start from
#: that full-budget solution, and half of them kept inpainting, denoising and CS within 0.1 dB on
#: the tuning faces at half their CPU (docs/PERFORMANCE.md, section 9)
SELF_TUNED_ROUNDS = 0.5


def self_tuned_budget(cfg: ILOConfig, share: float = SELF_TUNED_ROUNDS) -> ILOConfig:
    """``cfg`` with each round at ``share`` of its steps (at least 1, at most its own) and its CSGM
    stage given the steps freed, so ``total_steps``, the budget the self-tuning's CSGM-method
    stage runs at, is unchanged.

    >>> cfg = dcgan_layout(None, PRESETS["dcgan"]["inpaint"], LossConfig(), 600, 4)
    >>> [r.steps for r in self_tuned_budget(cfg).rounds], self_tuned_budget(cfg).total_steps
    ([66, 66, 67], 600)
    """
    rounds = tuple(replace(r, steps=min(r.steps, max(1, round(r.steps * share)))) for r in cfg.rounds)
    freed = sum(r.steps for r in cfg.rounds) - sum(r.steps for r in rounds)
    return replace(cfg, rounds=rounds, csgm=replace(cfg.csgm, steps=cfg.csgm.steps + freed))


#: a DCGAN self-tuned preset whose CSGM stage is ILO's own (the operator's ``self_tuning_csgm`` is
#: ``"own"`` or ``"challenge"``: super-resolution) runs its rounds without the perceptual term
#: and that stage with this share of the restarts: at x4 on the tuning
#: faces the self-tuned output was the same on the 8 real faces and the same or better on the 4
#: generated ones, at half the CPU (docs/PERFORMANCE.md, section 10). Since session 9 ILO's CSGM
#: stage too runs without the term (MSE only): at x4 and 600 x 4 on the 15 real and 8 generated
#: tuning faces, mean PSNR -0.09 / +0.07 dB and mean perceptual distance -0.9 % / -1.2 % against
#: the term in that stage, 18 % less CPU, every step within 1.07x a bare generator forward +
#: backward (docs/PERFORMANCE.md, section 12). On its own it fell below CSGM
#: on generated faces (held-out face 600002 at x4: -1.68 dB); the CSGM method's solution, which
#: challenges the choice since session 8 at the budget's restarts (``SelectionConfig.csgm_restarts``,
#: set by :func:`ilo.solvers.preset_for`), closes that on those faces, not on every generated face
#: (docs/BENCHMARKS.md, "Super-resolution in range (session 8)")
SELF_TUNED_OWN_RESTARTS = 0.5
#: the families those measurements were made on
SELF_TUNED_OWN_FAMILIES = ("dcgan",)


def self_tuned_own_stage(cfg: ILOConfig, family: str, share: float = SELF_TUNED_OWN_RESTARTS) -> ILOConfig:
    """``cfg`` for self-tuning with ILO's own CSGM stage on a family of
    :data:`SELF_TUNED_OWN_FAMILIES`: the rounds' and the CSGM stage's loss without the perceptual
    term, and the CSGM stage with ``share`` of its restarts (at least 1); ``cfg`` itself for other
    families.

    >>> cfg = dcgan_layout(None, PRESETS["dcgan"]["superres"], PRESETS["dcgan"]["superres"].loss, 600, 4)
    >>> own = self_tuned_own_stage(cfg, "dcgan")
    >>> own.loss.perceptual, own.csgm.loss.perceptual, own.csgm.restarts, own.total_steps
    (0.0, 0.0, 2, 600)
    """
    if family not in SELF_TUNED_OWN_FAMILIES:
        return cfg
    csgm = replace(cfg.csgm, restarts=max(1, round(cfg.csgm.restarts * share)),
                   loss=replace(cfg.csgm.loss, perceptual=0.0))
    return replace(cfg, loss=replace(cfg.loss, perceptual=0.0), csgm=csgm)


#: official per-round l1 radii (rounds 1, 2, 3): w+ latents, noise maps, features
STYLEGAN_RADII = {"ws": (100.0, 1000.0, 6000.0), "noise": (1000.0, 1000.0, 6000.0), "x": (1000.0, 1000.0, 6000.0)}
#: official steps per round (CSGM, then rounds 1-3), used as proportions of the budget
STYLEGAN_STEPS = (50, 50, 25, 25)


def stylegan2_layout(generator, preset: TaskPreset, loss: LossConfig, total_steps: int, restarts: int) -> ILOConfig:
    """ILO on StyleGAN-2 as in section 4.1: CSGM on w+ and the first 5 noise maps, then rounds
    at the outputs of the first blocks (layers 1, 3, 5: 4x4, 8x8, 16x16 features), each
    optimising the features, the skip image, the remaining w+ (geocross-regularised) and the
    noise maps up to ``4 + 2 i``, within l1 balls whose radii grow with the layer's width."""
    n_noise = len(generator.noise_keys())
    layers = [k for k in (1, 3, 5) if k < generator.num_layers]
    weights = STYLEGAN_STEPS[: len(layers) + 1]
    steps = [max(1, round(total_steps * w / sum(weights))) for w in weights]
    steps[0] += total_steps - sum(steps)
    sched = Schedule(rampup=0.05, rampdown=0.75)
    noise = lambda a, b: tuple(f"noise{j}" for j in range(a, min(b, n_noise)))
    latent = "v" if "v" in generator.trainable_keys(0) else "ws"  # Gaussianised or plain w+
    csgm = CSGMConfig(steps=steps[0], lr=0.1, restarts=restarts, keys=(latent,) + noise(0, 5), loss=loss, schedule=sched)
    rounds = []
    for i, (k, st) in enumerate(zip(layers, steps[1:]), start=1):
        radius = {key: vals[i - 1] for key, vals in STYLEGAN_RADII.items()}
        radius["img"] = radius["x"]
        rounds.append(RoundConfig(layer=k, steps=st, lr=0.1, radius=radius, keys=("x", "img", "ws") + noise(k, 5 + 2 * i)))
    return ILOConfig(csgm=csgm, rounds=tuple(rounds), loss=loss, schedule=sched)


def stylegan2_csgm(ilo_cfg: ILOConfig, method: str, total_steps: int) -> CSGMConfig:
    """A CSGM-family method on StyleGAN-2: ILO's first stage (w+ and noise maps, its schedule)
    for the whole budget, with the method's loss (PULSE: its sphere and lr 0.4; the CSGM
    variants: plus geocross 0.01)."""
    base = replace(ilo_cfg.csgm, steps=total_steps)
    if method == "pulse":
        return replace(base, lr=0.4, sphere=True, loss=METHOD_LOSS["pulse"])
    return replace(base, loss=replace(METHOD_LOSS[method], geocross=0.01))


def dcgan_csgm(ilo_cfg: ILOConfig, method: str, total_steps: int) -> CSGMConfig:
    """A CSGM-family method on a DCGAN: its own preset (:func:`csgm_preset`, :func:`pulse_preset`)."""
    restarts = ilo_cfg.csgm.restarts
    return pulse_preset(total_steps, restarts) if method == "pulse" else csgm_preset(total_steps, restarts, method)


@dataclass(frozen=True)
class Layout:
    """How a family turns a :class:`TaskPreset` into configs: ``ilo`` builds the ILO config,
    ``csgm`` a CSGM-family method's config (given the ILO one)."""

    ilo: Callable[..., ILOConfig]
    csgm: Callable[[ILOConfig, str, int], CSGMConfig]


#: family -> layout
LAYOUTS: dict[str, Layout] = {
    "dcgan": Layout(dcgan_layout, dcgan_csgm),
    "stylegan2": Layout(stylegan2_layout, stylegan2_csgm),
}


def default_config(method: str, generator, task: str, total_steps: int | None = None, restarts: int = 4,
                   level: float | None = None) -> CSGMConfig | ILOConfig | BM3DConfig | ClassicalConfig:
    """The preset configuration of ``method`` for ``generator`` (by its ``family``) and ``task``.

    ``level``: the operator's level (:attr:`ilo.operators.Operator.level`); presets use it
    to drop the perceptual term when measurements are scarce (None counts as scarce).
    """
    if method == "bm3d":
        return BM3DConfig()
    if method in CLASSICAL:
        return ClassicalConfig()
    if method not in METHOD_LOSS and method != "ilo":
        raise ValueError(f"unknown method {method!r}; choose from {', '.join([*METHOD_LOSS, 'ilo', 'bm3d'])}")
    steps = total_steps or 600
    preset = task_preset(generator.family, task)
    layout = LAYOUTS[generator.family]
    ilo_cfg = layout.ilo(generator, preset, preset.loss_at(level), steps, restarts)
    return ilo_cfg if method == "ilo" else layout.csgm(ilo_cfg, method, steps)
