"""Typed, immutable solver configurations and presets.

Budgets are counted in optimisation steps of the batch (one generator forward + backward
each). ``ILOConfig.total_steps`` includes the CSGM stage, so an ILO run and a CSGM run with the
same ``total_steps`` and ``restarts`` have the same budget, except under self-tuning, whose
CSGM stage is by default the CSGM method at the whole budget, followed by the rounds
(:class:`SelectionConfig`). The presets are in :mod:`ilo.solvers.presets`.
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
        patience: early stopping (0: off): stop once, for every image of the batch, the best
            measurement loss over its restarts has not fallen by more than the relative
            ``tolerance`` over the last ``patience`` steps (:class:`ilo.solvers.optim.Plateau`);
            the learning-rate schedule stays that of ``steps``, the result's history holds the
            steps run.
        tolerance: the relative improvement that counts for ``patience``.
        screen: start screening (0: off): draw this many starts per image (start ``r`` from the
            stream of restart ``r``, so the first ``restarts`` are the unscreened starts), score each
            by its measurement loss without gradient and run Adam from the ``restarts`` lowest
            (:func:`ilo.solvers.csgm.screened_starts`); a value ``<= restarts`` is off.
    """

    steps: int = 300
    lr: float = 0.05
    restarts: int = 4
    latent_radius: float | None = None
    sphere: bool = False
    keys: tuple[str, ...] | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: Schedule = field(default_factory=Schedule)
    patience: int = 0
    tolerance: float = 1e-3
    screen: int = 0

    def __post_init__(self) -> None:
        if self.screen < 0:
            raise ValueError(f"invalid CSGM start screening: screen={self.screen} (0: off)")
        if self.steps < 0 or self.restarts < 1 or self.lr <= 0:
            raise ValueError(f"invalid CSGM config: steps={self.steps}, restarts={self.restarts}, lr={self.lr}")
        if self.patience < 0 or not 0 <= self.tolerance < 1:
            raise ValueError(f"invalid CSGM early stopping: patience={self.patience}, tolerance={self.tolerance}")

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


#: the self-tuning grid of deviation weights (log grid; the best weight after CSGM spans three
#: decades on the tuning images, docs/CLASSICAL.md)
SELF_TUNING_WEIGHTS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3)
#: FISTA iterations of each self-tuning candidate (the grid runs as one batch of
#: ``images x stages x weights`` rows, the cost of the stage on a CPU)
SELF_TUNING_STEPS = 50


@dataclass(frozen=True)
class DeviationConfig:
    """ILO's final stage, range extension to the pixels: ``x = G(state) + δ`` with ``δ`` from
    :func:`ilo.solvers.deviation.deviate` (Dhar, Grover & Ermon 2018).

    Args:
        prior: ``"tv"``, ``"wavelet"`` or ``"dct"``.
        weights: the prior weights; one value = that weight; several = a grid the
            :class:`SelectionConfig` chooses from per image (without selection: the first).
        steps: FISTA iterations.
        keep_observed: for noiseless inpainting, take the observed pixels from the observation.
    """

    prior: str = "tv"
    weights: tuple[float, ...] = (0.01,)
    steps: int = 100
    keep_observed: bool = True

    def __post_init__(self) -> None:
        if not self.weights or any(not w >= 0 for w in self.weights) or self.steps < 0:
            raise ValueError(f"invalid deviation config: weights={self.weights}, steps={self.steps}")


#: how self-tuning picks the stage a candidate starts from (:class:`SelectionConfig`)
STAGE_RULES = ("auto", "estimate", "measurement", "classical")
#: where self-tuning's CSGM stage comes from (:class:`SelectionConfig`)
CSGM_STAGES = ("auto", "method", "own", "challenge")
#: :attr:`SelectionConfig.csgm_basin`: the measurements the ``"challenge"`` CSGM method runs on
CSGM_BASINS = ("all", "fit")
#: :attr:`SelectionConfig.reference`: the margin's reference (a classical method alone, or their mean with ILO's output)
REFERENCES = ("lowest", "first", "mean", "auto")
#: :attr:`SelectionConfig.blend_pairs`: which two candidates a blend mixes
BLEND_PAIRS = ("reference", "classical", "top")
#: :attr:`SelectionConfig.blend_against`: what a blend's margin is measured against
BLEND_AGAINST = ("choice", "reference")


@dataclass(frozen=True)
class SelectionConfig:
    """Self-tuning per image from the observation alone (:mod:`ilo.solvers.selection`): the
    candidates are ILO's stage solutions (CSGM, each round's best iterate), each plus the
    deviation at every weight, each plus a classical method on its residual, the classical
    methods alone, and for denoising the observation itself.

    Args:
        holdout: fraction of the observed entries held out for validation (inpainting with
            random masks, super-resolution, compressed sensing); the stages run on the rest,
            the candidate with the lowest validation error is chosen, and ILO is rerun on all
            measurements with the chosen stage and weight.
        patch: side of the held-out patches next to a box-shaped hole (half of the patches
            in the band of this width around the hole are held out; 8 rather than 4 or 6 picks
            better for a 21-pixel box on the tuning faces, with ``z`` 0 and 1.5, docs/BENCHMARKS.md).
        ring: the held-out part next to a box-shaped hole: ``0`` half of the patches of
            :attr:`patch` (above); ``w > 0`` every observed pixel within ``w`` pixels of the hole
            (:func:`ilo.solvers.selection.ring`), so the fit part has a hole enlarged by ``w`` on
            every side; the standard error's units are then the ``patch x patch`` blocks the ring
            meets.
        probes: Monte-Carlo probes of SURE (denoising with known sigma).
        classical: the classical methods of the candidates (:func:`ilo.solvers.classical.on_residual`:
            ``stage + C(y - A(stage))`` for every stage, and ``C(y)``); None = those of
            :data:`ilo.solvers.classical.RESIDUAL_METHODS` for the operator's class; ``()`` none.
            ``"bm3d"`` (the optional package) is a denoiser here too.
        stage: which stages the candidates may start from: ``"estimate"`` any (the held-out
            error or SURE decides the stage too); ``"measurement"`` only the stage whose solution
            fits all measurements best in the (re)fit, besides the candidates without a stage: a
            run on fewer measurements misjudges how much freedom pays (docs/BENCHMARKS.md);
            ``"classical"`` none (the classical methods alone and the observation): SURE holds
            the stages fixed, but they were fitted to the noise, so their estimates are optimistic;
            ``"auto"``: ``"estimate"`` where the held-out part are patches next to a hole,
            ``"measurement"`` for other held-out parts, ``"classical"`` for SURE when there are
            classical candidates (``"estimate"`` otherwise).
        every_candidate: under the ``"measurement"`` rule, also compute the candidates the rule
            excludes (the other stages' deviations and residuals; otherwise NaN images, never
            chosen), and under SURE's ``"classical"`` rule run ILO's rounds and estimate their
            candidates (otherwise skipped): only for benchmarks that look for the best of all
            candidates (an oracle).
        csgm: the CSGM stage. ``"method"``: the CSGM method's preset at ILO's whole budget and
            restarts (:func:`ilo.solvers.ilo.csgm_stage`) runs once, on the fit part (on all
            of ``y`` under SURE), and the rounds of both runs start from its solution, so the
            CSGM method's solution is a candidate; ``"own"``: ILO's ``csgm`` stage in each run
            (the fit and the refit). Under every stage rule the CSGM stage's solution is a
            candidate the choice may take (under SURE its estimate counts its latent dimension
            as divergence, :func:`ilo.solvers.selection.csgm_sure_correction`). ``"challenge"``
            (held-out measurements only): ILO's own stage in each run, as ``"own"``, and the CSGM
            method run once (on all measurements or the fit part, :attr:`csgm_basin`) as a
            challenger: its solution (the candidate ``"csgm-method"``) replaces the choice among
            the other candidates only where its held-out estimate plus ``csgm_z`` standard
            errors of their paired difference lies below the choice's estimate
            (:func:`ilo.solvers.selection.challenge`) on an image with at least
            ``csgm_min_units`` held-out units, and is then continued on all measurements
            (:attr:`csgm_continue`, or ``csgm_refit`` under ``csgm_basin == "fit"``). ``"auto"`` (default): the operator's
            ``self_tuning_csgm`` (``"challenge"`` for super-resolution, ``"method"`` otherwise).
        csgm_refit: under ``"method"``, or ``"challenge"`` with :attr:`csgm_basin` ``"fit"``,
            with held-out measurements, where the
            choice is the CSGM method's candidate (CSGM fitted to the fit part), CSGM continues
            from it on all measurements
            for this fraction of its steps (one restart) and the result replaces it where it
            fits all measurements better; 0: off.
        z: the margin of the held-out choice, in standard errors. Per image the reference is
            (:attr:`reference`) the classical method alone with the lowest held-out estimate
            (next to a box: harmonic inpainting); every candidate scores
            its estimate plus ``z`` times the standard error of its estimate minus the
            reference's (paired over the held-out units: pixels, measurements, or the patches
            next to a box, :func:`ilo.solvers.selection.paired_se`), so a candidate beats the
            reference only by more than the estimate's noise. ``0``: the lowest estimate.
            SURE (denoising) ignores it.
        box_z: the margin next to a box-shaped hole (None: :attr:`z`). 3 there: the held-out
            patches next to a 21-pixel hole hardly tell which candidate fills the hole best
            (docs/BENCHMARKS.md, "The box's held-out part"), so the reference (the generator's
            Gaussian prior, below) is kept unless a candidate is clearly better. On the 15 tuning
            faces (100 x 2) at 2 one face took ILO's round 3 centred prior over the reference
            by more than 2 standard errors and lost 2.7 dB on it (27.40 dB in all, the reference
            alone 27.58); at 3 it is kept (docs/BENCHMARKS.md, "The Gaussian prior with a smooth
            remainder (session 12)"). Before the prior, 2 (harmonic inpainting the reference).
        reference: the reference of the margin: ``"lowest"`` the classical method alone with the
            lowest held-out estimate; ``"first"`` the first of the classical methods (the task's
            default, e.g. biharmonic inpainting), so another classical method too must beat it
            by the margin; ``"mean"`` a candidate of its own, named ``"mean"``: the equal mean
            of the classical methods alone and ILO's own output (the best-fitting stage;
            :func:`ilo.solvers.selection.mean_candidate`); ``"auto"`` (default): ``"first"``
            next to a box-shaped hole (the first of :attr:`box_classical`, harmonic inpainting:
            on the 15 tuning faces 27.41 dB against 27.24 for ``"mean"`` with the same methods;
            session 8's ``"mean"`` of biharmonic, TV and ILO's output was +0.64 dB above TV
            inpainting but 0.3 dB below harmonic inpainting, docs/BENCHMARKS.md, "Harmonic
            inpainting and the box (session 10)"), elsewhere ``"first"``
            on images with fewer than :attr:`sparse_units` held-out units and ``"lowest"`` on
            the others (:func:`ilo.solvers.selection.first_reference`).
        sparse_units: under ``"auto"`` away from a box, the number of held-out units (pixels,
            measurements) below which the reference is the first classical method: with ~30
            held-out pixels (5 % random inpainting of a 64-px face: 19-41) the lowest estimate
            took TV inpainting where biharmonic was better; ``"first"`` gained +0.12 dB on the
            15 tuning faces at 600 x 4, and +0.26 on the 29 eval faces (docs/BENCHMARKS.md,
            "Sparse random inpainting's reference"). 45 lies between that level's counts and those of 10 % (48-74) on the
            44 real faces, so 10 % and 30 % choose as before there. 0: ``"lowest"`` everywhere.
        gaussian_max_observed: the largest observed fraction of a random inpainting mask at which
            the generator's Gaussian prior (:mod:`ilo.solvers.gaussian`) is among the candidates
            (0: never). On the 15 real tuning faces at 100 x 2 it gained +0.41 / +0.24 dB at 5 /
            10 % and nothing at 30 % (−0.02; the 29 eval faces: −0.10 there), so 0.2.
        gaussian_augment: the Gaussian prior fitted to augmented generated images
            (:data:`ilo.solvers.gaussian.AUGMENT`: faces framed a little unlike the generator's),
            or to the generator's images as they are (False: :data:`~ilo.solvers.gaussian.PLAIN`).
        blend: weights ``a`` of convex blends added to the held-out choice's candidates (not
            SURE's): per image and pair of :attr:`blend_pairs`, ``a * first + (1 - a) * second``
            is scored on the held-out part like every candidate and built from the refit
            candidates (:func:`ilo.solvers.selection.blend_pairs`); ``()``: off. The default,
            ``(0.25, 0.5, 0.75)`` with the default pairs and :attr:`blend_against` ``"choice"``,
            wins on the 15 tuning faces (every held-out cell as good or better, mean +0.11 dB;
            docs/BENCHMARKS.md, "Blends against the choice they replace").
        box_classical: the classical methods of the candidates next to a box-shaped hole where
            :attr:`classical` is None (None: those of the operator's class, as elsewhere).
            Default ``("gaussian", "harmonic", "tv-inpaint")``: the generator's Gaussian prior
            with a harmonic remainder (:mod:`ilo.solvers.gaussian`; the reference, being first)
            27.58 dB alone on the 15 tuning faces; harmonic inpainting is the best classical
            method for a 21-pixel box on the real faces (27.41 / 28.19 dB on the 15 tuning / 29
            eval faces, TV 26.43 / 26.89, biharmonic 26.08 / 26.71); biharmonic as a third
            method cost 0.06 dB on the tuning faces (one more candidate to choose wrongly).
        box_blend: the blend weights next to a box-shaped hole (None: :attr:`blend`). ``()``
            (default): with harmonic inpainting as the reference the blends replaced it on 9 of
            the 15 tuning faces and lost 0.10 dB in all (the held-out patches do not tell which
            fill is better, :attr:`box_z`).
        box_csgm: what :attr:`csgm` ``"auto"`` means next to a box-shaped hole (None: the
            operator's, ``"method"``). ``"challenge"`` (default since session 10): ILO's own
            CSGM stage in both runs and the CSGM method on all measurements as the challenger
            of the choice. With harmonic inpainting as the reference the held-out patches kept
            harmonic on generated faces where the CSGM method was 9-11 dB better (its solution
            as a candidate was fitted to the fit part, whose hole is larger); the challenger,
            scored by its continuation on the fit part, is taken there (docs/BENCHMARKS.md,
            "Harmonic inpainting and the box (session 10)").
        box_csgm_z, box_csgm_min_units: :attr:`csgm_z` and :attr:`csgm_min_units` next to a box
            (None: those). 1 and 1: a box has 10-21 held-out 8 x 8 patches, fewer than the
            20 units asked elsewhere, and on the 15 real tuning faces the challenger's estimate
            came within 1 standard error of the choice's on one face only, where it was taken
            at margin 0 and lost.
        blend_pairs: the pairs blended at every weight of :attr:`blend`: ``"reference"`` the
            eligible candidate with the lowest score other than the reference, and the
            reference; ``"classical"`` the two classical methods alone with the lowest estimates
            (the second, and the first); ``"top"`` the two eligible candidates with the lowest
            scores (the first, and the second).
        blend_against: what a blend must beat by the margin ``z``: ``"choice"`` (default) the
            choice among the other candidates (a blend replaces it only where its estimate plus
            ``z`` standard errors of their paired difference lies below the choice's estimate);
            ``"reference"`` the reference, like every other candidate (a blend leans towards
            the reference, so its standard error is smaller and it is penalised less than the
            candidate it blends: it took blends of the CSGM candidate over that candidate in
            range).
        csgm_restarts: the restarts of the CSGM method's run under ``"method"`` and
            ``"challenge"``; None: those of ILO's ``csgm`` stage. The self-tuned presets whose
            stage is ILO's own (fewer restarts, :func:`ilo.solvers.presets.self_tuned_own_stage`)
            give the CSGM method the budget's restarts: with one of two it fell 11 dB below CSGM
            on a generated face (docs/BENCHMARKS.md, "Super-resolution in range").
        csgm_z: the margin, in standard errors, the ``"challenge"`` CSGM candidate must beat the
            choice by; None: :attr:`z`. 0 (its held-out estimate lower than the choice's): at x4
            on the 15 real tuning faces its advantage was -2.2 to -6.3 standard errors (never
            taken), on the two generated tuning faces where it is the better image +1.5 and +1.7
            (docs/BENCHMARKS.md, "Super-resolution in range (session 8)").
        csgm_min_units: the ``"challenge"`` candidate is considered only for images with at
            least this many held-out units (:func:`ilo.solvers.selection.held_out_units`): with
            ~10 (x8) or ~2 (x16) held-out low-resolution pixels its estimate beat the choice's by
            up to 1 standard error on real faces where taking it cost up to 3.6 dB.
        csgm_share: the share of ILO's whole budget the CSGM method's run gets under ``"method"``
            and ``"challenge"`` (at least one step; 1: the whole budget). Below 1 the x4
            challenger lost generated faces it won (docs/BENCHMARKS.md, "Cheaper variants
            (session 8, later)").
        csgm_challenge: under ``"method"`` (held-out measurements), the CSGM method's candidate
            also challenges the choice as the ``"challenge"`` candidate does (margin ``csgm_z``,
            at least ``csgm_min_units`` held-out units), at no extra run. Off: as the default
            for super-resolution x4 it was 41 % cheaper than ``"challenge"`` but fell below CSGM
            on faces the challenger lifted above it (docs/BENCHMARKS.md, "Cheaper variants
            (session 8, later)").
        method_challenger: under ``"method"`` (held-out measurements), the CSGM method also runs
            on all measurements (what the CSGM method alone returns, not the shared stage's run on
            the fit part) and challenges the choice as under ``"challenge"`` with ``csgm_basin``
            ``"all"`` (scored by its continuation on the fit part, :attr:`csgm_probe`; continued
            where taken, :attr:`csgm_continue`; margin :attr:`method_challenger_z`): on generated faces the
            fit part's run can land in a worse basin than all measurements, and no candidate
            built on it then reaches the CSGM method (on by default since session 14: in range
            at 600 x 4, 10 % inpainting's worst tuning face went from 6.3 dB below CSGM to 5.3
            above, CS 10 % from -1.9 to 0.0, CS 5 % from -0.6 to +2.4; never taken on the 15 real
            tuning faces; docs/BENCHMARKS.md, "The CSGM method as a challenger of every held-out
            choice (session 14)"). It runs in one batch with the shared stage
            (on the fit part), on images with at least :attr:`csgm_min_units` held-out units, and
            ignores :attr:`csgm_basin`.
        method_challenger_units: below this many held-out units (pixels, measurements) the
            challenger of :attr:`method_challenger` is taken only where its estimate is below
            the choice's divided by :attr:`method_challenger_ratio`: at 5 % random inpainting of
            a 64-px face (20-30 held-out pixels) the plain rule took it on 3 of 15 real tuning
            faces and lost 1.8-2.9 dB on each (their ratios 1.1-1.8; the generated face that
            needed it: 11.8; docs/BENCHMARKS.md).
        method_challenger_ratio: that ratio.
        method_challenger_z: the margin of :attr:`method_challenger`, in standard errors (as
            :attr:`csgm_z` for ``"challenge"``). 1: on every generated face where the challenger
            was needed (the choice below CSGM) it won by at least 1.59; at 0 it was also taken on
            a demo face (200 steps) where it won by 0.98 and was 0.5 dB worse than the choice.
        csgm_basin: the measurements the ``"challenge"`` CSGM method runs on. ``"all"``
            (default): all of them, so its solution is the CSGM method's own (what a user running
            CSGM gets, not a worse basin found on the fit part); its held-out estimate is that of
            its continuation on the fit part (:attr:`csgm_probe`), and where taken it continues
            on all measurements (:attr:`csgm_continue`). ``"fit"`` (session 8): the fit part,
            scored directly and refit on all measurements where taken (:attr:`csgm_refit`); on
            about one generated face in eight the fit part led CSGM into a worse basin than all
            measurements, 4-10 dB below the CSGM method (docs/BENCHMARKS.md, "Super-resolution
            in range, unseen faces (session 9)").
        csgm_probe: under ``csgm_basin == "all"``, the share of the CSGM method's steps (one
            restart) its continuation on the fit part runs; that continuation's held-out error
            scores it. Shorter continuations keep more of the held-out part's fit (a lower,
            optimistic estimate): 0.1 of 300 steps more than 0.25.
        csgm_continue: under ``csgm_basin == "all"``, where the challenger is taken, CSGM
            continues from it on all measurements for this share of its steps (one restart)
            and replaces it where it fits them better (as :attr:`csgm_refit`); 0: off.
    """

    holdout: float = 0.15
    patch: int = 8
    ring: int = 0
    probes: int = 1
    classical: tuple[str, ...] | None = None
    stage: str = "auto"
    every_candidate: bool = False
    csgm: str = "auto"
    csgm_refit: float = 0.5
    z: float = 1.5
    box_z: float | None = 3.0
    reference: str = "auto"
    sparse_units: int = 45
    gaussian_max_observed: float = 0.2
    gaussian_augment: bool = True
    blend: tuple[float, ...] = (0.25, 0.5, 0.75)
    blend_pairs: tuple[str, ...] = ("reference", "classical")
    blend_against: str = "choice"
    box_classical: tuple[str, ...] | None = ("gaussian", "harmonic", "tv-inpaint")
    box_blend: tuple[float, ...] | None = ()
    box_csgm: str | None = "challenge"
    box_csgm_z: float | None = 1.0
    box_csgm_min_units: int | None = 1
    csgm_restarts: int | None = None
    csgm_z: float | None = 0.0
    csgm_min_units: int = 20
    csgm_share: float = 1.0
    csgm_challenge: bool = False
    method_challenger: bool = True
    method_challenger_units: int = 40
    method_challenger_ratio: float = 4.0
    method_challenger_z: float = 1.0
    csgm_basin: str = "all"
    csgm_probe: float = 0.25
    csgm_continue: float = 1.0

    def next_to_box(self) -> SelectionConfig:
        """This config as it applies next to a box-shaped hole: every ``box_*`` margin, blend and
        challenger field that is not None in place of its general one (:attr:`box_z` for
        :attr:`z`, :attr:`box_blend`, :attr:`box_csgm_z`, :attr:`box_csgm_min_units`).

        >>> s = SelectionConfig(z=1.5, box_z=2.0, box_blend=None).next_to_box()
        >>> s.z, s.blend == SelectionConfig().blend, s.csgm_min_units
        (2.0, True, 1)
        """
        def pick(box, general):
            return general if box is None else box

        return replace(self, z=pick(self.box_z, self.z), blend=pick(self.box_blend, self.blend),
                       csgm_z=pick(self.box_csgm_z, self.csgm_z),
                       csgm_min_units=pick(self.box_csgm_min_units, self.csgm_min_units))

    def __post_init__(self) -> None:
        if (not 0 < self.holdout < 1 or self.patch < 1 or self.ring < 0 or self.probes < 1 or not 0 <= self.csgm_refit <= 1
                or not self.z >= 0 or not (self.box_z is None or self.box_z >= 0) or self.sparse_units < 0
                or not 0 <= self.gaussian_max_observed <= 1
                or (self.csgm_restarts is not None and self.csgm_restarts < 1)
                or not (self.csgm_z is None or self.csgm_z >= 0) or self.csgm_min_units < 1 or self.method_challenger_units < 0
                or not self.method_challenger_ratio >= 1 or not self.method_challenger_z >= 0
                or not 0 < self.csgm_share <= 1 or not 0 < self.csgm_probe <= 1 or not 0 <= self.csgm_continue <= 1):
            raise ValueError(f"invalid selection config: holdout={self.holdout}, patch={self.patch}, ring={self.ring}, "
                             f"probes={self.probes}, csgm_refit={self.csgm_refit}, z={self.z}, box_z={self.box_z}, "
                             f"sparse_units={self.sparse_units}, gaussian_max_observed={self.gaussian_max_observed}, "
                             f"csgm_restarts={self.csgm_restarts}, csgm_z={self.csgm_z}, csgm_min_units={self.csgm_min_units}, "
                             f"csgm_share={self.csgm_share}, csgm_probe={self.csgm_probe}, "
                             f"csgm_continue={self.csgm_continue}, method_challenger_units={self.method_challenger_units}, "
                             f"method_challenger_ratio={self.method_challenger_ratio}")
        if self.stage not in STAGE_RULES:
            raise ValueError(f"stage must be one of {', '.join(STAGE_RULES)}, got {self.stage!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if any(not 0 < a < 1 for a in (*self.blend, *(self.box_blend or ()))) or not self.blend_pairs:
            raise ValueError(f"blend weights must lie in (0, 1) and blend_pairs be nonempty, got {self.blend}, "
                             f"box_blend {self.box_blend}")
        if self.box_csgm is not None and self.box_csgm not in CSGM_STAGES[1:]:
            raise ValueError(f"box_csgm must be one of {', '.join(CSGM_STAGES[1:])} or None, got {self.box_csgm!r}")
        if not (self.box_csgm_z is None or self.box_csgm_z >= 0) or not (self.box_csgm_min_units is None or self.box_csgm_min_units >= 1):
            raise ValueError(f"box_csgm_z must be >= 0 and box_csgm_min_units >= 1, got {self.box_csgm_z}, {self.box_csgm_min_units}")
        if self.box_classical is not None and not self.box_classical:
            raise ValueError("box_classical must name at least one classical method, or be None")
        if any(p not in BLEND_PAIRS for p in self.blend_pairs):
            raise ValueError(f"blend_pairs must be of {', '.join(BLEND_PAIRS)}, got {self.blend_pairs}")
        if self.blend_against not in BLEND_AGAINST:
            raise ValueError(f"blend_against must be one of {', '.join(BLEND_AGAINST)}, got {self.blend_against!r}")
        if self.csgm not in CSGM_STAGES:
            raise ValueError(f"csgm must be one of {', '.join(CSGM_STAGES)}, got {self.csgm!r}")
        if self.csgm_basin not in CSGM_BASINS:
            raise ValueError(f"csgm_basin must be one of {', '.join(CSGM_BASINS)}, got {self.csgm_basin!r}")


@dataclass(frozen=True)
class ILOConfig:
    """Intermediate Layer Optimization (Algorithm 1 of Daras et al. 2021, in rounds over layers).

    Args:
        csgm: the first stage (line 1 of Algorithm 1); under self-tuning by default replaced
            by the CSGM method's preset (:attr:`SelectionConfig.csgm`).
        rounds: one :class:`RoundConfig` per intermediate layer, shallow to deep.
        back_to_range: after each round, find the previous layer's point whose image under
            ``G1`` is closest to the round's solution (line 5), and start the next round from it.
        back_to_range_steps, back_to_range_lr: the Adam budget of that step.
        select: ``"measurement"`` returns, per image, the iterate with the lowest measurement
            loss over all rounds (including CSGM); ``"last"`` the final iterate.
        loss: loss weights for the ILO rounds.
        schedule: learning-rate schedule, restarted every round.
        deviation: the final range-extension stage (None: the image stays in the generator's
            range, the paper's ILO).
        selection: self-tuning per image (None: the iterate ``select`` says, then the
            deviation at its first weight).
    """

    csgm: CSGMConfig = field(default_factory=CSGMConfig)
    rounds: tuple[RoundConfig, ...] = ()
    back_to_range: bool = False
    back_to_range_steps: int = 50
    back_to_range_lr: float = 0.05
    select: str = "measurement"
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: Schedule = field(default_factory=Schedule)
    deviation: DeviationConfig | None = None
    selection: SelectionConfig | None = None

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


def self_tuned(cfg: ILOConfig, weights: tuple[float, ...] = SELF_TUNING_WEIGHTS,
               steps: int = SELF_TUNING_STEPS) -> ILOConfig:
    """``cfg`` with the deviation stage over ``weights`` and per-image self-tuning switched on."""
    return replace(cfg, deviation=DeviationConfig(weights=tuple(weights), steps=steps), selection=SelectionConfig())


def with_budget(cfg: ILOConfig, total_steps: int) -> ILOConfig:
    """Rescale every stage's steps proportionally so that ``cfg.total_steps == total_steps``."""
    scale = total_steps / max(cfg.total_steps, 1)
    rounds = tuple(replace(r, steps=max(1, round(r.steps * scale))) for r in cfg.rounds)
    csgm = replace(cfg.csgm, steps=max(1, total_steps - sum(r.steps for r in rounds)))
    return replace(cfg, csgm=csgm, rounds=rounds)
