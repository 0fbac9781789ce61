"""From a problem description to observations, reconstructions and metrics.

Shared by the CLI, the demo and the benchmarks so that all three build operators, draw
noise and score results the same way. Random streams are derived from one seed:
the operator (mask, matrix) from ``seed``, the observation noise from ``seed + 1_000_003``,
the solver's latents from ``seed`` (per image ``seed + i``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from .generators.base import LayeredGenerator
from .images import ImageError, load_image, pil_to_tensor, read_image
from .operators import CompressedSensing, Denoising, Inpainting, Operator, SuperResolution
from .solvers import METHODS, Result, default_config, solve

TASKS = ("inpaint", "superres", "denoise", "cs")
NOISE_SEED_OFFSET = 1_000_003


@dataclass
class ProblemSpec:
    """What the user asked for; :meth:`validate` checks everything that needs no generator
    (raising ValueError with a one-line message, named after the CLI options)."""

    task: str
    observed: float | None = None
    box: list[int] | None = None
    mask: str | None = None
    factor: int | None = None
    sigma: float | None = None
    measurements: float | None = None

    def validate(self) -> None:
        if self.task not in TASKS:
            _invalid(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        given = {"inpaint": ("observed", "box", "mask"), "superres": ("factor",), "denoise": ("sigma",), "cs": ("measurements",)}
        for task, names in given.items():
            if task != self.task:
                for n in names:
                    if getattr(self, n) is not None:
                        _invalid(f"--{n} does not apply to task {self.task!r}")
        if self.task == "inpaint":
            n = sum(v is not None for v in (self.observed, self.box, self.mask))
            if n > 1:
                _invalid("give only one of --observed, --box, --mask")
            if n == 0:
                self.observed = 0.1
            if self.observed is not None and not 0 < self.observed <= 1:
                _invalid(f"--observed must be a fraction in (0, 1], got {self.observed}")
        elif self.task == "superres":
            self.factor = 4 if self.factor is None else self.factor
            if self.factor < 1:
                _invalid(f"--factor must be a positive integer, got {self.factor}")
        elif self.task == "denoise":
            self.sigma = 25.0 if self.sigma is None else self.sigma
            if not self.sigma >= 0:
                _invalid(f"--sigma must be >= 0 (0-255 scale), got {self.sigma}")
        elif self.task == "cs":
            self.measurements = 0.1 if self.measurements is None else self.measurements
            if not 0 < self.measurements <= 1:
                _invalid(f"--measurements must be a fraction in (0, 1], got {self.measurements}")


def _invalid(msg: str) -> None:
    raise ValueError(msg)


def make_operator(spec: ProblemSpec, shape: tuple[int, int, int], seed: int) -> Operator:
    """The forward operator of ``spec`` for images of ``shape`` (raises ValueError on bad input)."""
    g = torch.Generator().manual_seed(seed)
    C, H, W = shape
    if spec.task == "inpaint":
        if spec.box is not None:
            return Inpainting.box(shape, *spec.box)
        if spec.mask is not None:
            im = read_image(spec.mask)
            return Inpainting.from_image(shape, np.asarray(im))
        return Inpainting.random(shape, spec.observed, g)
    if spec.task == "superres":
        if H % spec.factor or W % spec.factor:
            raise ValueError(f"--factor {spec.factor} does not divide the generator's size {H}x{W}")
        return SuperResolution(shape, spec.factor)
    if spec.task == "denoise":
        return Denoising(shape, spec.sigma)
    if spec.task == "cs":
        return CompressedSensing(shape, spec.measurements, g)
    raise ValueError(f"unknown task {spec.task!r}")


@dataclass
class Problem:
    task: str
    spec: ProblemSpec
    operator: Operator
    y: torch.Tensor
    truth: torch.Tensor | None
    source: dict = field(default_factory=dict)

    @property
    def level(self) -> float:
        """The measurement level: observed fraction, m/n, 1/factor, or sigma on the 0-255 scale."""
        op = self.operator
        if self.task == "inpaint":
            return float(op.mask.mean())
        if self.task == "cs":
            return op.m / op.n
        if self.task == "superres":
            return 1.0 / op.factor
        return float(op.sigma255)

    def describe(self) -> dict:
        return {"task": self.task, "operator": self.operator.config(), "source": self.source,
                "observation_shape": list(self.y.shape)}


def truth_from_seeds(G: LayeredGenerator, seeds: list[int]) -> torch.Tensor:
    """Faces drawn from the generator, one per seed: ``[len(seeds), C, H, W]``."""
    with torch.no_grad():
        states = [G.sample_latent(1, torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.cat([G(s) for s in states])


def simulate(operator: Operator, x: torch.Tensor, seed: int) -> torch.Tensor:
    """``y = operator(x)`` with per-image noise streams (image ``i`` from ``seed + offset + i``)."""
    gens = [torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET + i) for i in range(x.shape[0])]
    with torch.no_grad():
        return operator(x, gens)


def build_problem(spec: ProblemSpec, G: LayeredGenerator, *, seed: int = 0, truth_seed: int | None = None,
                  image: str | None = None, observation: str | None = None, truth: torch.Tensor | None = None) -> Problem:
    """Make the operator and the observation for one of: a generated face, a photo, a given observation, a tensor."""
    shape = tuple(G.image_shape)
    C, H, W = shape
    op = make_operator(spec, shape, seed).to(G.device)
    source: dict = {}
    if truth is None and truth_seed is not None:
        truth, source = truth_from_seeds(G, [truth_seed]), {"truth_seed": truth_seed}
    elif truth is None and image is not None:
        truth, source = load_image(image, size=H), {"image": str(image)}
    if truth is not None:
        truth = truth.to(G.device)
        if tuple(truth.shape[1:]) != shape:
            raise ValueError(f"truth must be [B, {C}, {H}, {W}], got {list(truth.shape)}")
        y = simulate(op, truth, seed)
        return Problem(spec.task, spec, op, y, truth, source or {"tensor": list(truth.shape)})
    if observation is None:
        raise ValueError("need a truth (seed, image or tensor) or an observation")
    y = _read_observation(spec, op, observation, shape).to(G.device)
    return Problem(spec.task, spec, op, y, None, {"observation": str(observation)})


def _read_observation(spec: ProblemSpec, op: Operator, path: str, shape) -> torch.Tensor:
    C, H, W = shape
    p = Path(path)
    if spec.task == "cs":
        if p.suffix != ".npy":
            raise ValueError(f"for task cs the observation must be a .npy file of {op.m} measurements, got {p.name}")
        if not p.is_file():
            raise ImageError(f"observation not found: {p}")
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"cannot read {p}: {e}") from None
        a = a.reshape(1, -1) if a.ndim == 1 else a
        if a.shape[-1] != op.m:
            raise ValueError(f"{p.name} holds {a.shape[-1]} measurements; the operator (same --measurements and --seed) has {op.m}")
        return torch.from_numpy(a.astype(np.float32))
    im = read_image(p).convert("RGB")
    want = (W // spec.factor, H // spec.factor) if spec.task == "superres" else (W, H)
    if im.size != want:
        raise ValueError(f"observation {p.name} is {im.size[0]}x{im.size[1]}; task {spec.task} needs {want[0]}x{want[1]}")
    y = pil_to_tensor(im)
    return op.A(y) if spec.task == "inpaint" else y


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


def score(result: Result, problem: Problem, method: str, lpips_backbone: str | None = None) -> dict:
    """Metrics of a result: means over the batch plus per-image lists.

    ``true_mse``, ``psnr``, ``ssim`` on the [0, 1] scale; ``perceptual`` is the offline
    MobileNetV2 distance (not LPIPS); ``lpips`` only when the VGG backbone file is available."""
    out = {
        "task": problem.task,
        "method": method,
        "measurement_mse": float(result.measurement_loss.mean()),
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
    }
    per = {"measurement_mse": result.measurement_loss.tolist()}
    if problem.truth is not None:
        mse, psnr, ssim = (f(result.image, problem.truth) for f in (M.mse, M.psnr, M.ssim))
        out.update(true_mse=float(mse.mean()), psnr=float(psnr.mean()), ssim=float(ssim.mean()))
        per.update(true_mse=mse.tolist(), psnr=psnr.tolist(), ssim=ssim.tolist())
        for k, v in perceptual_scores(result.image, problem.truth, lpips_backbone).items():
            out[k], per[k] = float(v.mean()), v.tolist()
    if problem.y.shape[0] > 1:
        out["per_image"] = per
    return out


def with_loss(config, loss):
    """``config`` with its loss (every stage's) replaced by ``loss``."""
    from dataclasses import replace

    from .solvers import CSGMConfig, ILOConfig

    if isinstance(config, CSGMConfig):
        return replace(config, loss=loss)
    if isinstance(config, ILOConfig):
        return replace(config, loss=loss, csgm=replace(config.csgm, loss=loss))
    raise ValueError(f"{type(config).__name__} has no loss to set")


def run_method(problem: Problem, G: LayeredGenerator, method: str, *, total_steps: int = 600, restarts: int = 4,
               seed: int = 0, config=None, progress: bool = False, loss=None, sna: bool | None = None,
               lpips_backbone: str | None = None) -> tuple[Result, dict]:
    """Solve ``problem`` with ``method`` (preset config for the budget unless ``config``, with
    ``loss`` replacing the preset's loss and ``sna`` switching Stochastic Noise Addition when
    given); returns the result and its metrics."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    truth_seed = problem.source.get("truth_seed")
    if truth_seed is not None and method != "bm3d" and seed == truth_seed:
        # the solver draws image 0's random starts from the stream that drew its truth latent
        raise ValueError(f"solver seed {seed} equals the truth seed: the first random start would be the true latent")
    if config is None:
        config = default_config(method, G, problem.task, total_steps=total_steps, restarts=restarts, level=problem.level)
    if loss is not None:
        config = with_loss(config, loss)
    if sna is not None and method != "bm3d":
        from dataclasses import replace

        config = with_loss(config, replace(config.loss, sna=sna))
    result = solve(problem.y, problem.operator, G, method, config, seeds=seed, progress=progress)
    return result, score(result, problem, method, lpips_backbone)
