"""Typed, immutable solver configurations and presets.

Budgets are counted in optimisation steps of the batch (one generator forward + backward
each). ``ILOConfig.total_steps`` includes the CSGM stage, so an ILO run and a CSGM run with the
same ``total_steps`` and ``restarts`` have the same budget. The presets are in
:mod:`ilo.solvers.presets`.
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


def with_budget(cfg: ILOConfig, total_steps: int) -> ILOConfig:
    """Rescale every stage's steps proportionally so that ``cfg.total_steps == total_steps``."""
    scale = total_steps / max(cfg.total_steps, 1)
    rounds = tuple(replace(r, steps=max(1, round(r.steps * scale))) for r in cfg.rounds)
    csgm = replace(cfg.csgm, steps=max(1, total_steps - sum(r.steps for r in rounds)))
    return replace(cfg, csgm=csgm, rounds=rounds)
