"""Typed, immutable solver configurations and presets.

Budgets are counted in optimisation steps of the batch (one generator forward + backward
each). ``ILOConfig.total_steps`` includes the CSGM stage, so an ILO run and a CSGM run with the
same ``total_steps`` and ``restarts`` have the same budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..losses.composite import LossConfig


@dataclass(frozen=True)
class Schedule:
    """Adam learning-rate schedule: linear warm-up over ``rampup`` of the steps, cosine
    ramp-down over the last ``rampdown`` (fractions; 0 disables either), as in the
    StyleGAN-2 projector and the official ILO code."""

    rampup: float = 0.05
    rampdown: float = 0.25

    def factor(self, t: int, steps: int) -> float:
        import math

        p = t / max(steps, 1)
        f = 1.0
        if self.rampdown > 0:
            f = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - p) / self.rampdown) * math.pi)
        if self.rampup > 0:
            f *= min(1.0, (p + 1.0 / max(steps, 1)) / self.rampup)
        return f


@dataclass(frozen=True)
class CSGMConfig:
    """CSGM (Bora et al. 2017): Adam on the input latent from ``restarts`` random starts.

    Args:
        steps: Adam steps (each restart; the restarts run as one batch).
        lr: Adam learning rate.
        restarts: random initialisations per image; the one with the lowest measurement loss wins.
        latent_radius: if set, z is projected onto the l2 ball ``B2(latent_radius)`` after every
            step (the ``z in B2(r1)`` constraint of Algorithm 1); None = unconstrained.
        sphere: keep every latent vector (last dimension ``d``) on the sphere of radius
            ``sqrt(d)`` (PULSE's constraint).
        keys: which entries of the latent state are optimised (None: the generator's
            ``trainable_keys(0)``), e.g. StyleGAN-2's w+ and its first five noise maps.
        loss: loss weights.
        schedule: learning-rate schedule.
    """

    steps: int = 300
    lr: float = 0.05
    restarts: int = 4
    latent_radius: float | None = None
    sphere: bool = False
    keys: tuple[str, ...] | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.restarts < 1 or self.lr <= 0:
            raise ValueError(f"invalid CSGM config: steps={self.steps}, restarts={self.restarts}, lr={self.lr}")

    @property
    def total_steps(self) -> int:
        return self.steps

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RoundConfig:
    """One ILO round: projected gradient descent on the state at generator layer ``layer``.

    Args:
        layer: which intermediate layer is optimised (``1 .. num_layers - 1``).
        steps: Adam steps in this round.
        lr: Adam learning rate.
        radius: l1 radius of the allowed deviation from the round's starting point
            (``float``: the same for every state entry; ``dict``: per entry name).
        relative: if True, ``radius`` is a fraction of each sample's l1 norm of the starting
            point (per entry), so one preset fits layers and generators of any width.
        keys: which state entries are optimised (None: the generator's ``trainable_keys``);
            the others stay at the round's starting point.
    """

    layer: int
    steps: int = 100
    lr: float = 0.05
    radius: float | dict = 100.0
    relative: bool = False
    keys: tuple[str, ...] | None = None

    def radius_for(self, key: str) -> float:
        """The radius of one state entry; a dict may name an entry (``"noise7"``) or its
        family (``"noise"`` for every noise map); entries it does not name get radius 0."""
        if isinstance(self.radius, dict):
            if key in self.radius:
                return float(self.radius[key])
            family = key.rstrip("0123456789")
            return float(self.radius.get(family, 0.0))
        return float(self.radius)


@dataclass(frozen=True)
class ILOConfig:
    """Intermediate Layer Optimization (Algorithm 1 of Daras et al. 2021, in rounds over layers).

    Args:
        csgm: the first stage (line 1 of Algorithm 1).
        rounds: one :class:`RoundConfig` per intermediate layer, shallow to deep.
        back_to_range: after each round, find the previous layer's point whose image under
            ``G1`` is closest to the round's solution (line 5), and start the next round from it.
        back_to_range_steps, back_to_range_lr: the Adam budget of that step.
        select: ``"measurement"`` returns, per image, the iterate with the lowest measurement
            loss over all rounds (including CSGM); ``"last"`` the final iterate.
        loss: loss weights for the ILO rounds.
        schedule: learning-rate schedule, restarted every round.
    """

    csgm: CSGMConfig = field(default_factory=CSGMConfig)
    rounds: tuple[RoundConfig, ...] = ()
    back_to_range: bool = False
    back_to_range_steps: int = 50
    back_to_range_lr: float = 0.05
    select: str = "measurement"
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self) -> None:
        if self.select not in {"measurement", "last"}:
            raise ValueError(f"select must be 'measurement' or 'last', got {self.select!r}")
        layers = [r.layer for r in self.rounds]
        if layers != sorted(layers) or any(k < 1 for k in layers):
            raise ValueError(f"round layers must be >= 1 and non-decreasing, got {layers}")

    @property
    def total_steps(self) -> int:
        b2r = self.back_to_range_steps * len(self.rounds) if self.back_to_range else 0
        return self.csgm.steps + sum(r.steps for r in self.rounds) + b2r

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Presets for the DCGAN family. Tuned on tuning images only (generated seeds 10_000-10_003 and
# LFW faces 70, 80, 90), never on evaluation images; see docs/BENCHMARKS.md.

#: relative l1 radius of every ILO round (fraction of the layer's l1 norm), by task
DCGAN_RELATIVE_RADIUS = {"inpaint": 0.3, "superres": 0.3, "denoise": 0.1, "cs": 0.3}
#: weight of the offline perceptual distance where a preset uses it (MSE has weight 1)
PERCEPTUAL_WEIGHT = 0.05
#: inpainting below this observed fraction uses MSE only (the paper: "scarce measurements")
SCARCE_OBSERVED = 0.25
#: Adam learning rate of the CSGM (MSE) baseline. Tuned on the tuning images (generated seeds
#: 10000-10003, LFW 70/80/90) over 0.05-0.4: at 600 steps x 4 restarts, inversion PSNR 32.6 ->
#: 44.3 dB (generated) and 21.4 -> 22.3 dB (LFW) going from 0.05 to 0.2; at 100 x 2 0.2 is best
#: or within 0.2 dB of the best on inpainting, compressed sensing and super-resolution.
CSGM_LR = 0.2


def csgm_preset(task: str = "inpaint", total_steps: int = 600, restarts: int = 4, variant: str = "csgm") -> CSGMConfig:
    """CSGM with the MSE loss, the perceptual loss, or both (the paper's three CSGM columns).
    The MSE variant uses the tuned :data:`CSGM_LR`; the perceptual ones keep Adam's 0.05 (not tuned)."""
    loss = {
        "csgm": LossConfig(),
        "csgm-perceptual": LossConfig(mse=0.0, perceptual=1.0),
        "csgm-mse-perceptual": LossConfig(mse=1.0, perceptual=PERCEPTUAL_WEIGHT),
    }[variant]
    return CSGMConfig(steps=total_steps, restarts=restarts, loss=loss, lr=CSGM_LR if variant == "csgm" else 0.05)


def pulse_preset(task: str = "superres", total_steps: int = 600, restarts: int = 4) -> CSGMConfig:
    """PULSE (Menon et al. 2020): latents on the sphere of radius sqrt(d), loss 100 MSE +
    0.05 geocross, Adam lr 0.4; the best iterate is returned (PULSE's code returned the last)."""
    return CSGMConfig(steps=total_steps, restarts=restarts, lr=0.4, sphere=True,
                      loss=LossConfig(mse=100.0, geocross=0.05))


def dcgan_loss(task: str, level: float | None = None) -> LossConfig:
    """The ILO loss preset: SNA for denoising; MSE only for compressed sensing and scarce inpainting."""
    if task == "denoise":
        return LossConfig(mse=1.0, perceptual=PERCEPTUAL_WEIGHT, sna=True)
    if task == "inpaint" and (level is None or level < SCARCE_OBSERVED):
        return LossConfig()
    if task in ("inpaint", "superres"):
        return LossConfig(mse=1.0, perceptual=PERCEPTUAL_WEIGHT)
    return LossConfig()


def dcgan_preset(task: str = "inpaint", total_steps: int = 600, restarts: int = 4, level: float | None = None) -> ILOConfig:
    """ILO preset for a 64x64 DCGAN: CSGM for a third of the budget, then one round per layer
    1-3 with an l1 radius relative to the layer's norm (so it grows with layer width)."""
    csgm_steps = total_steps // 3
    rest = total_steps - csgm_steps
    layers = (1, 2, 3)
    per = [rest // len(layers)] * len(layers)
    per[-1] += rest - sum(per)
    r = DCGAN_RELATIVE_RADIUS.get(task, 0.3)
    loss = dcgan_loss(task, level)
    rounds = tuple(RoundConfig(layer=k, steps=s, lr=0.05, radius=r, relative=True) for k, s in zip(layers, per))
    return ILOConfig(csgm=CSGMConfig(steps=csgm_steps, restarts=restarts, loss=loss), rounds=rounds, loss=loss)


def with_budget(cfg: ILOConfig, total_steps: int) -> ILOConfig:
    """Rescale every stage's steps proportionally so that ``cfg.total_steps == total_steps``."""
    scale = total_steps / max(cfg.total_steps, 1)
    rounds = tuple(replace(r, steps=max(1, round(r.steps * scale))) for r in cfg.rounds)
    csgm = replace(cfg.csgm, steps=max(1, total_steps - sum(r.steps for r in rounds)))
    return replace(cfg, csgm=csgm, rounds=rounds)


# ---------------------------------------------------------------------------------------------
# StyleGAN-2 (section 4.1 of the paper; defaults of the official code as a starting point)

#: official per-round l1 radii (rounds 1, 2, 3): w+ latents, noise maps, features
STYLEGAN_RADII = {"ws": (100.0, 1000.0, 6000.0), "noise": (1000.0, 1000.0, 6000.0), "x": (1000.0, 1000.0, 6000.0)}
#: official steps per round (CSGM, then rounds 1-3), used as proportions of the budget
STYLEGAN_STEPS = (50, 50, 25, 25)


def stylegan2_loss(task: str, level: float | None = None) -> LossConfig:
    """MSE + perceptual (offline distance, at 256 px) + geocross 0.01; SNA for denoising; MSE
    only (plus geocross) for compressed sensing and scarce inpainting."""
    if task == "cs" or (task == "inpaint" and (level is None or level < SCARCE_OBSERVED)):
        return LossConfig(mse=1.0, geocross=0.01)
    return LossConfig(mse=1.0, perceptual=1.0, geocross=0.01, sna=(task == "denoise"))


def stylegan2_preset(generator, task: str = "inpaint", total_steps: int = 150, restarts: int = 1,
                     level: float | None = None) -> ILOConfig:
    """ILO on StyleGAN-2 as in section 4.1: CSGM on w+ and the first 5 noise maps, then rounds
    at the outputs of the first blocks (layers 1, 3, 5: 4x4, 8x8, 16x16 features), each
    optimising the features, the skip image, the remaining w+ (geocross-regularised) and the
    noise maps up to ``4 + 2 i``, within l1 balls whose radii grow with the layer's width."""
    n_noise = len(generator.noise_keys()) if hasattr(generator, "noise_keys") else 0
    layers = [k for k in (1, 3, 5) if k < generator.num_layers]
    weights = STYLEGAN_STEPS[: len(layers) + 1]
    steps = [max(1, round(total_steps * w / sum(weights))) for w in weights]
    steps[0] += total_steps - sum(steps)
    loss = stylegan2_loss(task, level)
    sched = Schedule(rampup=0.05, rampdown=0.75)
    noise = lambda a, b: tuple(f"noise{j}" for j in range(a, min(b, n_noise)))  # noqa: E731
    latent = "v" if "v" in generator.trainable_keys(0) else "ws"  # Gaussianised or plain w+
    csgm = CSGMConfig(steps=steps[0], lr=0.1, restarts=restarts, keys=(latent,) + noise(0, 5), loss=loss, schedule=sched)
    rounds = []
    for i, (k, st) in enumerate(zip(layers, steps[1:]), start=1):
        radius = {key: vals[i - 1] for key, vals in STYLEGAN_RADII.items()}
        radius["img"] = radius["x"]
        rounds.append(RoundConfig(layer=k, steps=st, lr=0.1, radius=radius, keys=("x", "img", "ws") + noise(k, 5 + 2 * i)))
    return ILOConfig(csgm=csgm, rounds=tuple(rounds), loss=loss, schedule=sched)
