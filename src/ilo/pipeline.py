"""One path from a problem to a stored result: spec -> problem -> method run -> scores -> record.

Shared by the CLI, the demo and every benchmark, so that all of them build operators, draw
noise and score results the same way::

    spec = ProblemSpec("inpaint", observed=0.1); spec.validate()
    problem = build_problem(spec, G, seed=0, truth_seed=7)     # operator, observation, truth
    result, scores = run_method(problem, G, "ilo")             # Result, score(result, problem)
    rec = record(problem, result, scores)                      # JSON-serialisable

Random streams (:mod:`ilo.rng`): image ``i`` of a problem has the seed ``seed + start + i``;
its observation noise comes from the stream ``(that seed, "noise")``; an operator with
per-image parts (an inpainting mask) is drawn per image from ``(that seed, "operator")``,
one without from ``(seed, "operator")``, shared by every image; a generated truth from
``(truth seed, "truth")``; the solver's starts from ``(solver seed, "restart", r)``. Purposes
never share a stream, so a solver seed may equal a truth seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Sequence

import torch

from . import metrics as M
from .generators.base import LayeredGenerator
from .images import load_image
from .operators import Operator, operator_class
from .rng import stream, streams
from .losses.composite import LossConfig
from .solvers import CLASSICAL_METHODS, GENERATIVE, METHODS, CSGMConfig, ILOConfig, Result, preset_for, solve
from .solvers.gaussian import GaussianConfig
from .solvers.presets import METHOD_LOSS

#: how a problem's images are framed (:attr:`Problem.framing`, :func:`for_framing`)
FRAMINGS = ("generator", "free")

#: fields of :class:`ProblemSpec` that are operator options (each task reads some of them)
OPTION_FIELDS = ("observed", "box", "mask", "factor", "sigma", "measurements")


@dataclass
class ProblemSpec:
    """What the user asked for: a task key and its options (see the operator classes'
    ``options``; the first is the task's level). :meth:`validate` checks everything that needs
    no generator and fills in defaults, raising ValueError with a one-line message."""

    task: str
    observed: float | None = None
    box: list[int] | None = None
    mask: str | None = None
    factor: int | None = None
    sigma: float | None = None
    measurements: float | None = None

    @classmethod
    def at_level(cls, task: str, level: float) -> ProblemSpec:
        """The problem of ``task`` at a level (in the unit of the operator's ``level_name``), validated.

        >>> ProblemSpec.at_level("superres", 8.0).factor
        8
        """
        spec = cls(task, **operator_class(task).level_options(level))
        spec.validate()
        return spec

    @property
    def operator_class(self) -> type[Operator]:
        return operator_class(self.task)

    def options(self) -> dict:
        """The task's options as given (None = not given)."""
        return {k: getattr(self, k) for k in self.operator_class.options}

    def validate(self) -> None:
        cls = self.operator_class
        for name in OPTION_FIELDS:
            if name not in cls.options and getattr(self, name) is not None:
                raise ValueError(f"option {name!r} does not apply to task {self.task!r}")
        for k, v in cls.check_options(self.options()).items():
            setattr(self, k, v)

    @property
    def level(self) -> float | None:
        """The task's level as asked for (None when given otherwise, e.g. an inpainting box)."""
        return getattr(self, self.operator_class.options[0])


def make_operator(spec: ProblemSpec, shape: tuple[int, int, int], seed: int,
                  image_seeds: Sequence[int] | None = None) -> Operator:
    """The operator of ``spec`` for images of ``shape``: per image (from ``(image seed, "operator")``)
    when the operator has per-image parts and ``image_seeds`` are given, else one from ``(seed, "operator")``."""
    cls, opts = spec.operator_class, spec.options()
    if cls.per_sample_buffers and image_seeds:
        return cls.stack([cls.from_options(shape, stream(s, "operator"), **opts) for s in image_seeds])
    return cls.from_options(shape, stream(seed, "operator"), **opts)


@dataclass
class Problem:
    """An inverse problem: the operator, the observation ``y [B, ...]``, the truth ``[B, C, H, W]``
    (None when only the observation is known) and where they came from."""

    spec: ProblemSpec
    operator: Operator
    y: torch.Tensor
    truth: torch.Tensor | None
    source: dict = field(default_factory=dict)
    #: solver seed of image 0 (image ``i``: ``seed + i``)
    seed: int = 0
    #: how the images are framed (:data:`FRAMINGS`): ``"generator"`` as the generator frames its
    #: own (its samples, a face aligned to its template), ``"free"`` any other crop
    framing: str = "free"

    @property
    def task(self) -> str:
        return self.operator.task

    @property
    def level(self) -> float | None:
        """The operator's level (its ``level_name`` says what it measures)."""
        return self.operator.level

    def describe(self) -> dict:
        return {"task": self.task, "description": self.operator.describe(), "operator": self.operator.config(),
                "source": self.source, "framing": self.framing, "observation_shape": list(self.y.shape)}


def truth_from_seeds(G: LayeredGenerator, seeds: Sequence[int]) -> torch.Tensor:
    """Faces drawn from the generator, one per seed from the stream ``(seed, "truth")``: ``[len(seeds), C, H, W]``."""
    with torch.no_grad():
        return torch.cat([G(G.sample_latent(1, stream(int(s), "truth"))) for s in seeds])


def simulate(operator: Operator, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``y = operator(x)``, image ``i``'s noise from the stream ``(seeds[i], "noise")``."""
    if len(seeds) != x.shape[0]:
        raise ValueError(f"got {len(seeds)} seeds for {x.shape[0]} images")
    with torch.no_grad():
        return operator(x, streams(seeds, "noise"))


def build_problem(spec: ProblemSpec, G: LayeredGenerator, *, seed: int = 0, start: int = 0, truth_seed: int | None = None,
                  image: str | None = None, observation: str | None = None, truth: torch.Tensor | None = None,
                  framing: str | None = None) -> Problem:
    """The operator and the observation for one of: a generated face (``truth_seed``), a photo
    (``image``), given images (``truth [B, C, H, W]``), or an observation file (``observation``).

    Image ``i`` has the seed ``seed + start + i`` (``start``: its index in a larger set, so an
    image's problem does not depend on the batch it is in); see the module docstring.
    ``framing`` (:data:`FRAMINGS`): ``"generator"`` for a generated face, else ``"free"`` unless given
    (``ilo solve --align`` gives ``"generator"``: the face aligned to the generator's template).
    """
    spec.validate()
    if framing is not None and framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; choose from {', '.join(FRAMINGS)}")
    framing = framing or ("generator" if truth is None and truth_seed is not None else "free")
    shape = tuple(G.image_shape)
    source: dict = {}
    if truth is None and truth_seed is not None:
        truth, source = truth_from_seeds(G, [truth_seed]), {"truth_seed": truth_seed}
    elif truth is None and image is not None:
        truth, source = load_image(image, size=shape[-1]), {"image": str(image)}
    if truth is not None:
        truth = truth.to(G.device)
        if tuple(truth.shape[1:]) != shape:
            raise ValueError(f"truth must be [B, {', '.join(map(str, shape))}], got {list(truth.shape)}")
        seeds = [seed + start + i for i in range(truth.shape[0])]
        op = make_operator(spec, shape, seed, seeds).to(G.device)
        y = simulate(op, truth, seeds)
        return Problem(spec, op, y, truth, source or {"tensor": list(truth.shape), "start": start}, seed + start, framing)
    if observation is None:
        raise ValueError("need a truth (seed, image or tensor) or an observation")
    op = make_operator(spec, shape, seed, [seed + start]).to(G.device)
    y = op.read_observation(observation).to(G.device)
    return Problem(spec, op, y, None, {"observation": str(observation)}, seed + start, framing)


def perceptual_scores(x: torch.Tensor, truth: torch.Tensor, lpips_backbone: str | None = None) -> dict[str, torch.Tensor]:
    """The offline MobileNet perceptual distance (``perceptual``) and, when its backbone file is
    available, LPIPS-VGG (``lpips``) between images and their truth, at most 256 px: ``[B]`` each."""
    from .losses.composite import perceptual_net
    from .losses.perceptual import resize_for_perceptual

    out = {}
    a, b = resize_for_perceptual(x), resize_for_perceptual(truth)
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    with torch.no_grad():
        try:
            out["perceptual"] = perceptual_net("mobilenet", x.device)(a, b)
        except Exception:  # weights package missing: report the other metrics
            pass
        try:
            out["lpips"] = perceptual_net("lpips", x.device, "vgg", lpips_backbone)(a, b)
        except Exception:  # no backbone file (offline): LPIPS is simply not reported
            pass
    return out


def image_scores(image: torch.Tensor, problem: Problem, lpips_backbone: str | None = None) -> dict[str, list[float]]:
    """Per-image metrics of reconstructions ``image [B, C, H, W]``: ``measurement_mse`` (against
    ``y``) and, with a truth, ``true_mse``, ``psnr``, ``ssim`` (on the [0, 1] scale,
    :mod:`ilo.metrics`), ``perceptual`` (the offline MobileNetV2 distance, not LPIPS) and ``lpips``
    (only when their weights are available)."""
    image = image.detach()
    with torch.no_grad():
        out = {"measurement_mse": problem.operator.measurement_loss(image, problem.y).tolist()}
    if problem.truth is not None:
        truth = problem.truth
        out.update(true_mse=M.mse(image, truth).tolist(), psnr=M.psnr(image, truth).tolist(), ssim=M.ssim(image, truth).tolist())
        out.update({k: v.tolist() for k, v in perceptual_scores(image, truth, lpips_backbone).items()})
    return out


def score(result: Result, problem: Problem, method: str, lpips_backbone: str | None = None) -> dict:
    """Metrics of a result: the means over the batch of :func:`image_scores`, the per-image
    lists under ``per_image``, and a self-tuned ILO's candidates, estimated errors and choice
    under ``selection`` (:attr:`Result.selection`)."""
    per = image_scores(result.image, problem, lpips_backbone)
    out: dict = {"task": problem.task, "method": method, "steps": result.steps, "seconds": round(result.seconds, 3)}
    out.update({k: sum(v) / len(v) for k, v in per.items()})
    out["per_image"] = per
    if result.selection is not None:
        out["selection"] = result.selection
    return out


def record(problem: Problem, result: Result, scores: dict, **extra) -> dict:
    """The JSON record of a solved problem: the problem, the method, its resolved config, the scores."""
    return {"problem": problem.describe(), "method": result.method, "solver": result.config, "metrics": scores, **extra}


#: the loss terms a user may weigh (:class:`ilo.losses.composite.LossConfig` fields)
LOSS_TERMS = ("mse", "perceptual", "lpips")


def custom_loss(task: str, method: str, weights: dict[str, float] | None = None, *, sna: bool | None = None,
                lpips_backbone: str | None = None) -> LossConfig | None:
    """The loss asked for by the user in place of the preset's, or None to keep the preset
    (no ``weights`` given). ``weights``: term -> weight (:data:`LOSS_TERMS`; absent terms 0);
    ``sna``: Stochastic Noise Addition (default: on for ILO when the task's observations are
    noisy). ValueError with a one-line message on anything the task or method cannot use.

    >>> custom_loss("superres", "pulse", {"mse": 1.0, "perceptual": 0.1}).geocross
    0.05
    """
    op = operator_class(task)
    if sna and not op.noisy:
        raise ValueError(f"Stochastic Noise Addition needs noisy observations; task {task!r} has none")
    if weights is None:
        return None
    if method not in GENERATIVE:
        kind = "the classical method" if method in CLASSICAL_METHODS else "method"
        raise ValueError(f"loss terms and SNA do not apply to {kind} {method!r} (no optimisation)")
    unknown = [k for k in weights if k not in LOSS_TERMS]
    if unknown:
        raise ValueError(f"unknown loss term {unknown[0]!r}; choose from {', '.join(LOSS_TERMS)}")
    if op.perceptual_target is None and (weights.get("perceptual") or weights.get("lpips")):
        raise ValueError(f"perceptual losses need an image-space observation; task {task!r} has none")
    loss = LossConfig(**{"mse": 0.0, **weights}, sna=bool(sna if sna is not None else (op.noisy and method == "ilo")),
                      lpips_backbone=lpips_backbone)
    return replace(loss, geocross=METHOD_LOSS["pulse"].geocross) if method == "pulse" else loss


def with_loss(config, loss):
    """``config`` with its loss (every stage's) replaced by ``loss``."""
    if isinstance(config, CSGMConfig):
        return replace(config, loss=loss)
    if isinstance(config, ILOConfig):
        return replace(config, loss=loss, csgm=replace(config.csgm, loss=loss))
    raise ValueError(f"{type(config).__name__} has no loss to set")


def for_framing(config, framing: str):
    """``config`` with the generator's Gaussian prior (:mod:`ilo.solvers.gaussian`) fitted for images
    framed as ``framing``: the generator's images as they are for ``"generator"``, augmented ones
    (shifted, zoomed, flipped: a free crop is not framed like them) for ``"free"``. The plain fit
    describes such images better: +0.5 to +1.0 dB for the self-tuned ILO on real faces aligned to
    the template at 5 % / 10 % inpainting, a box and x4 super-resolution (docs/BENCHMARKS.md,
    "Real faces aligned to the generator's template (session 15)"); 0.35-1.6 dB for the prior alone
    on generated faces (session 13). Other configs are returned as they are."""
    augment = framing != "generator"
    if isinstance(config, GaussianConfig):
        return replace(config, augment=augment)
    if isinstance(config, ILOConfig) and config.selection is not None:
        return replace(config, selection=replace(config.selection, gaussian_augment=augment))
    return config


def method_config(problem: Problem, G: LayeredGenerator, method: str, *, total_steps: int = 600, restarts: int = 4,
                  loss=None, sna: bool | None = None, extend: bool = True, screen: int | None = None):
    """The preset of ``method`` for the problem's operator (task and level) and the budget, with
    ``loss`` replacing the preset's loss and ``sna`` switching Stochastic Noise Addition when given;
    ``extend=False``: ILO without its range extension and self-tuning (:func:`~ilo.solvers.preset_for`);
    ``screen``: the CSGM start screening (:attr:`~ilo.solvers.config.CSGMConfig.screen`) of a
    CSGM-family method, or of ILO's CSGM stages (its own and the self-tuning's CSGM method run)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    config = for_framing(preset_for(method, G, problem.operator, total_steps=total_steps, restarts=restarts, extend=extend),
                         problem.framing)
    if loss is not None:
        config = with_loss(config, loss)
    if sna is not None and isinstance(config, (CSGMConfig, ILOConfig)):
        config = with_loss(config, replace(config.loss, sna=sna))
    if screen is not None:
        if isinstance(config, CSGMConfig):
            config = replace(config, screen=screen)
        elif isinstance(config, ILOConfig):
            config = replace(config, csgm=replace(config.csgm, screen=screen))
        else:
            raise ValueError(f"start screening applies to the generative methods ({', '.join(GENERATIVE)}), not {method!r}")
    return config


def run_method(problem: Problem, G: LayeredGenerator, method: str, *, total_steps: int = 600, restarts: int = 4,
               seed: int | None = None, config=None, progress: bool = False, loss=None, sna: bool | None = None,
               lpips_backbone: str | None = None, callback=None, extend: bool = True, screen: int | None = None
               ) -> tuple[Result, dict]:
    """Solve ``problem`` with ``method`` (:func:`method_config` unless ``config``) and score it.

    ``seed``: the solver seed of image 0 (image ``i``: ``seed + i``); None = the problem's own
    image seeds. ``extend``, ``screen``: see :func:`method_config`. Returns the result and :func:`score`.
    """
    if config is None:
        config = method_config(problem, G, method, total_steps=total_steps, restarts=restarts, loss=loss, sna=sna,
                               extend=extend, screen=screen)
    seeds = problem.seed if seed is None else seed
    result = solve(problem.y, problem.operator, G, method, config, seeds=seeds, progress=progress, callback=callback)
    return result, score(result, problem, method, lpips_backbone)
