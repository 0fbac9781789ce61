"""Restore the faces of a photograph: detect, align, solve in the photo's coordinates, paste back.

Usage (``observed``: a ``[1, 3, H, W]`` photo in ``[-1, 1]``)::

    from ilo.generators import load_generator
    rest = restore_photo(observed, load_generator("digiface-dcgan"), RestoreConfig("denoise", sigma255=25))
    rest.image  # [1, 3, H, W]: the photo's size (x factor for super-resolution)

Steps, per face (largest first): the face is detected on the classical restoration of the
photo (filled holes, smoothed noise, bicubic enlargement: what a detector sees best) and aligned
to the generator's template; the task's operator is built on the photo region under the face
(the mask's pixels there, the photo's noise level, the photo's own resolution) and composed with
the warp (:class:`~ilo.faces.warp.WarpedOperator`); the solver reconstructs the aligned face from
the region's pixels; the result is warped back and blended in with a feathered window over the
classical restoration, the face itself or the face plus the classical restoration of its residual,
at a weight chosen per face on held-out measurements (0: the classical restoration alone, 1: the
face's window whole; :mod:`ilo.faces.choice`; ``RestoreConfig.weight`` fixes the weight instead). Outside
the faces the output is the classical restoration (or the input as it is). For inpainting the
observed pixels are kept as observed everywhere.

The loss is the weighted MSE in photo coordinates only (the exact Gaussian log-likelihood of white
photo noise): the perceptual term and Stochastic Noise Addition of the presets act in the
generator's frame and are switched off.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from .. import workers
from ..metrics import psnr
from ..operators import TASKS, operator_class
from ..operators.base import Operator
from ..solvers.result import Result
from . import choice
from .align import Alignment, Template, aligned_crop, align_face
from .choice import WeightChoice
from .detect import Face, NoFaceFound, detect_faces
from .paste import classical_restore, paste, scaled
from .template import template_for
from .warp import WarpedOperator, face_region

#: the tasks whose operator can act on a region of a photo
RESTORE_TASKS = tuple(t for t, cls in TASKS.items() if cls.local)
BACKGROUNDS = ("classical", "input")


@dataclass(frozen=True)
class RestoreConfig:
    """What to restore and how.

    Args:
        task: a task whose operator is ``local`` (:data:`RESTORE_TASKS`); its options: ``sigma255``
            (the noise std of the photo on the 0-255 scale) and ``factor`` (super-resolution), required
            when the task reads them, set to None otherwise; a mask is given to :func:`restore_photo`.
        sigma255: the photo's noise std on the 0-255 scale (denoise).
        factor: super-resolution factor; the photo is the low-resolution observation.
        method: solver (``ilo`` or a CSGM variant); steps, restarts: its budget per face; seed: first face's seed.
        faces: ``all`` or ``largest``.
        min_score: detections scoring below it are dropped (the detector's own score, recorded per
            face: HOG's margin or the CNN's confidence); 0 keeps every face dlib reports.
        landmarks, detector: see :func:`ilo.faces.detect.detect_faces`; template: see :func:`ilo.faces.align.template_for`.
        background: ``classical`` or ``input`` (super-resolution: nearest-neighbour enlargement).
        margin: photo pixels added around each face's region.
        weight: how much of the generator's face is pasted over the background, in ``[0, 1]``
            (0: the classical restoration, 1: the face as the generator drew it); None: chosen per
            face on held-out measurements (:mod:`ilo.faces.choice`; it needs ``background ==
            "classical"``, and costs a second row in the face's solve).
        residual: whether that choice also tries the face plus the classical restoration of its
            residual (:func:`ilo.faces.choice.choose`; better on the tuning photos, docs/FACES.md).
    """

    task: str
    sigma255: float | None = None
    factor: int | None = None
    method: str = "ilo"
    steps: int = 300
    restarts: int = 2
    seed: int = 0
    faces: str = "all"
    min_score: float = 0.0
    landmarks: str = "5"
    detector: str = "hog"
    template: str = "auto"
    background: str = "classical"
    margin: int = 2
    weight: float | None = None
    residual: bool = True

    def __post_init__(self) -> None:
        cls = operator_class(self.task)
        if not cls.local:
            raise ValueError(f"restore handles {', '.join(RESTORE_TASKS)}, not {self.task!r} "
                             "(its operator measures the whole image at once)")
        for option, name in (("sigma", "sigma255"), ("factor", "factor")):
            if option not in cls.options:
                object.__setattr__(self, name, None)  # not the task's: not recorded either
            elif getattr(self, name) is None:
                raise ValueError(f"task {self.task!r} needs {name}")
        cls.check_options(self.options())
        if self.method == "bm3d":
            raise ValueError("restore needs a generator-based method (ilo or a csgm variant), not bm3d")
        if not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be a finite number, got {self.min_score}")
        if self.faces not in ("all", "largest"):
            raise ValueError(f"faces must be 'all' or 'largest', got {self.faces!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.weight is not None and not 0 <= self.weight <= 1:
            raise ValueError(f"the face weight must lie in [0, 1], got {self.weight}")
        if self.weight is None and self.background != "classical":
            raise ValueError("choosing the face weight compares the face with the classical background: "
                             "give a weight with background 'input'")
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {self.steps} and {self.restarts}")

    def options(self, mask: torch.Tensor | None = None) -> dict:
        """The options the task's operator reads (:meth:`ilo.operators.Operator.from_options`)."""
        given = {"sigma": self.sigma255, "factor": self.factor, "mask": mask}
        return {k: given.get(k) for k in operator_class(self.task).options}

    @property
    def scale(self) -> int:
        """Output pixels per photo pixel along each side (the super-resolution factor, else 1)."""
        return operator_class(self.task).observation_scale(self.options())


@dataclass
class FaceResult:
    """One restored face: what was found, how it was aligned, what the solver made of it.

    ``restored``: the generator's image ``[1, C, S, S]``; ``region``: photo pixels ``(x0, y0, x1, y1)``.
    """

    face: Face
    alignment: Alignment
    region: tuple[int, int, int, int]
    restored: torch.Tensor
    measurement_loss: float
    seconds: float
    solver: dict = field(default_factory=dict)
    alpha: torch.Tensor | None = None  # [1, 1, H', W'] the window on the output (where the face is)
    weight: float = 1.0  #: how much of the face was pasted (``alpha`` times this)
    choice: WeightChoice | None = None  #: how the weight was chosen (None: given)
    operator: WarpedOperator | None = None  #: the face's operator on its region (the solve's, one row)

    def to_dict(self) -> dict:
        return {**self.face.to_dict(), **self.alignment.to_dict(), "region": list(self.region),
                "measurement_mse": self.measurement_loss, "seconds": round(self.seconds, 2), "weight": self.weight,
                "weight_choice": self.choice.to_dict() if self.choice is not None else "given"}


@dataclass
class Restoration:
    """The restored photo ``image [1, C, H', W']`` (``H' = scale * H``), the background it was
    pasted on, the faces, the template, the output's scale and the resolved configuration."""

    image: torch.Tensor
    background: torch.Tensor
    faces: list[FaceResult]
    template: Template
    scale: int
    config: dict

    def face_mask(self, threshold: float = 0.5) -> torch.Tensor:
        """``[1, 1, H', W']`` bool: where any face's blending weight exceeds ``threshold``."""
        m = torch.zeros_like(self.image[:, :1], dtype=torch.bool)
        for f in self.faces:
            m |= f.alpha > threshold
        return m


def photo_operator(cfg: RestoreConfig, observed_shape: tuple[int, ...], mask: torch.Tensor | None = None) -> Operator:
    """The task's operator on a whole photo observed as ``[1, C, H, W]``: it takes images
    ``[1, C, scale * H, scale * W]``; ``mask [1, 1, H, W]`` (1 = observed) for the tasks that read one."""
    c, h, w = observed_shape[1:]
    opts = cfg.options(mask)
    if "mask" in opts and mask is None:
        raise ValueError(f"task {cfg.task!r} needs a mask of the photo (1 = observed)")
    if "mask" in opts and tuple(mask.shape[-2:]) != (h, w):
        raise ValueError(f"the mask must be {w}x{h} pixels (W x H, the photo's size), got {mask.shape[-1]}x{mask.shape[-2]}")
    s = cfg.scale
    return operator_class(cfg.task).from_options((c, h * s, w * s), torch.Generator(), **opts)


def degrade(photo: torch.Tensor, cfg: RestoreConfig, *, mask: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Simulate the observation of a clean ``photo [1, C, H, W]`` with the task's operator (noise from
    ``seed``); ``H, W`` are first cropped to multiples of the output's scale (super-resolution)."""
    s = cfg.scale
    h, w = photo.shape[-2] - photo.shape[-2] % s, photo.shape[-1] - photo.shape[-1] % s
    op = photo_operator(cfg, (1, photo.shape[1], h // s, w // s), mask)
    return op(photo[..., :h, :w], torch.Generator().manual_seed(seed))


def solver_config(cfg: RestoreConfig, G, task: str):
    """The method's preset for ``G`` with the loss reduced to the photo-space MSE (see the module docstring)."""
    from ..losses.composite import LossConfig
    from ..solvers import default_config

    sc = default_config(cfg.method, G, task, total_steps=cfg.steps, restarts=cfg.restarts)
    mse = LossConfig()
    if hasattr(sc, "csgm"):  # ILOConfig
        return replace(sc, loss=mse, csgm=replace(sc.csgm, loss=mse))
    return replace(sc, loss=replace(sc.loss, perceptual=0.0, lpips=0.0, sna=False, mse=sc.loss.mse or 1.0))


def find_faces(observed: torch.Tensor, cfg: RestoreConfig, op: Operator) -> tuple[list[Face], torch.Tensor]:
    """Detected faces (landmarks in the coordinates of ``observed``) and the classical restoration
    of the photo by ``op``'s task, which they were found on."""
    classical = classical_restore(observed, op)
    faces = detect_faces(classical, landmarks=cfg.landmarks, detector=cfg.detector, upsample=1)
    faces = [f for f in faces if f.score >= cfg.min_score]
    for f in faces:
        f.landmarks = f.landmarks / cfg.scale
        f.box = tuple(int(round(v / cfg.scale)) for v in f.box)
    if cfg.faces == "largest":
        faces = faces[:1]
    return faces, classical


def _solve_face(y: torch.Tensor, op: WarpedOperator, G, method: str, config, seed: int, progress: bool,
                held: torch.Tensor | None = None) -> tuple[Result, float]:
    """One face's solve (in this process or a worker, :mod:`ilo.workers`) and its seconds; with
    ``held``, a batch of two rows with the same seed, the first without those measurements
    (:func:`ilo.faces.choice.fit_and_all`)."""
    from ..solvers import solve

    t0 = time.time()
    if held is not None:
        y, op, seeds = y.expand(2, *y.shape[1:]).contiguous(), choice.fit_and_all(op, held), [seed, seed]
    res = solve(y, op, G, method, config, seeds=seed if held is None else seeds, progress=progress)
    return res, time.time() - t0


def restore_photo(observed: torch.Tensor, G, cfg: RestoreConfig, *, mask: torch.Tensor | None = None,
                  progress: bool = False, jobs: int | None = 1) -> Restoration:
    """Restore every face of ``observed [1, C, H, W]`` (in ``[-1, 1]``) with generator ``G``.

    ``mask [1, 1, H, W]`` (1 = observed) is required for inpainting. The output is
    ``[1, C, scale * H, scale * W]``. ``jobs``: the faces are solved in that many worker
    processes (:func:`ilo.workers.imap`; None: :func:`ilo.workers.default_jobs`), each face's
    result the one of a sequential solve at the workers' thread count; 1: one after another here.

    Raises:
        NoFaceFound: no face in the photo. ValueError: inconsistent inputs.
        ilo.faces.detect.DetectorUnavailable: dlib or its models are missing.
    """
    from ..solvers import prepare

    if observed.ndim != 4 or observed.shape[0] != 1:
        raise ValueError(f"expected one photo [1, C, H, W], got {list(observed.shape)}")
    c, h, w = observed.shape[1:]
    if c != G.image_shape[0]:
        raise ValueError(f"the photo has {c} channels, the generator draws {G.image_shape[0]}")
    op = photo_operator(cfg, tuple(observed.shape), None if mask is None else mask.to(observed.dtype))
    faces, classical = find_faces(observed, cfg, op)
    if not faces:
        raise NoFaceFound("no face found in the photo" + (f" scoring at least {cfg.min_score:g}" if cfg.min_score else ""))
    template = template_for(G, cfg.template, progress=progress)
    S, f = int(G.image_shape[-1]), cfg.scale
    background = classical if cfg.background == "classical" else \
        observed.repeat_interleave(f, -2).repeat_interleave(f, -1)
    canvas, results = background.clone(), []
    dev = next(G.parameters()).device
    framed = []
    for face in faces:
        al = align_face(face, template)
        box = face_region(al.transform, S, (h, w), cfg.margin)
        x0, y0, x1, y1 = box
        framed.append((al, box, observed[..., y0:y1, x0:x1], WarpedOperator(op.crop(box), al.transform, S, box, f)))
    jobs = workers.default_jobs(dev, len(faces)) if jobs is None else min(jobs, len(faces))
    configs = [solver_config(cfg, G, wop.task) for *_, wop in framed]
    if jobs > 1:  # what the solves would each fit (the Gaussian prior), fitted here once and handed over
        for (*_, wop), config in zip(framed, configs):
            prepare(wop, G, cfg.method, config, progress=progress)
    # choosing the weight: each face's solve has a second row first, without its held-out measurements
    held = [choice.held_out(wop, cfg.seed + i) if cfg.weight is None else None for i, (*_, wop) in enumerate(framed)]
    calls = [(y.to(dev), wop.to(dev), G, cfg.method, config, cfg.seed + i, progress and jobs == 1,
              None if h is None or not bool(h.any()) else h.to(dev))
             for i, ((_, _, y, wop), config, h) in enumerate(zip(framed, configs, held))]
    solved = dict(workers.imap(_solve_face, calls, jobs, progress=progress, desc="faces", unit="face"))
    for i, (face, (al, box, _, wop), h) in enumerate(zip(faces, framed, held)):
        res, seconds = solved[i]
        image = res.image.detach().cpu()
        restored = image[-1:]  # the face solved on all measurements
        chosen = None if h is None else choice.choose(observed, op, wop, image[:1], h, cfg.seed + i,
                                                        cfg.residual)
        weight = cfg.weight if chosen is None else chosen.weight
        if chosen is not None and chosen.kind == "residual":  # the face corrected by the classical method
            _, alpha = paste(canvas, restored, al.transform, scale=f, weight=0.0)
            canvas = choice.paste_region(canvas, choice.residual_image(observed, op, wop, restored), wop, weight)
        else:
            canvas, alpha = paste(canvas, restored, al.transform, scale=f, weight=weight)
        results.append(FaceResult(face, al, box, restored, float(res.measurement_loss[-1]), seconds, res.config, alpha,
                                  weight, chosen, wop))
    canvas = op.keep_observed(canvas, observed)
    config = {"restore": asdict(cfg), "operator": op.describe(), "classical": op.classical_method,
              "background": cfg.background,
              "template": {"name": template.name, "kind": template.kind, "size": template.size},
              "loss": "weighted MSE in photo coordinates (no perceptual term, no SNA)", "jobs": jobs,
              "face_weight": "given" if cfg.weight is not None else
              {"rule": "held-out measurements (ilo.faces.choice)", "weights": list(choice.WEIGHTS),
               "residual": cfg.residual, "fraction": choice.HOLDOUT, "z": choice.Z}}
    return Restoration(canvas.clamp(-1, 1), background, results, template, f, config)


def restoration_metrics(rest: Restoration, truth: torch.Tensor) -> dict:
    """PSNR (dB, peak 1 on [0, 1]) of the restored photo and of its background (the classical
    restoration or the input) against ``truth`` of the output's size: whole photo, inside the
    faces (blending weight > 0.5) and per face."""
    if truth.shape != rest.image.shape:
        raise ValueError(f"the truth must be {list(rest.image.shape[-2:])} pixels (H, W), got {list(truth.shape[-2:])}")

    def masked(x, m):
        sel = m.expand_as(x)
        return psnr(x[sel][None], truth[sel][None]).item() if bool(m.any()) else None

    out = {"psnr": psnr(rest.image, truth).item(), "psnr_background": psnr(rest.background, truth).item(),
           "faces_region": {"psnr": masked(rest.image, rest.face_mask()),
                            "psnr_background": masked(rest.background, rest.face_mask()),
                            "pixels": int(rest.face_mask().sum())},
           "faces": []}
    for fr in rest.faces:
        m = fr.alpha > 0.5
        out["faces"].append({"psnr": masked(rest.image, m), "psnr_background": masked(rest.background, m)})
    return out


def comparison_row(rest: Restoration, i: int, observed: torch.Tensor, truth: torch.Tensor | None = None
                   ) -> tuple[list[torch.Tensor], list[str]]:
    """Aligned views of face ``i`` (observation, background, generator, pasted, truth): images and labels."""
    fr, S = rest.faces[i], rest.template.size
    T, Tf = fr.alignment.transform, scaled(fr.alignment.transform, rest.scale)
    row = [aligned_crop(observed, T, S), aligned_crop(rest.background, Tf, S), fr.restored, aligned_crop(rest.image, Tf, S)]
    how = fr.choice.choice if fr.choice is not None else f"weight {fr.weight:g}"  # e.g. "residual@0.75"
    labels = ["observed", rest.config["background"], "generator", f"pasted ({how})"]
    if truth is not None:
        row.append(aligned_crop(truth, Tf, S))
        labels.append("truth")
    return [r[0].clamp(-1, 1) for r in row], labels


__all__ = ["RestoreConfig", "Restoration", "FaceResult", "NoFaceFound", "restore_photo", "degrade", "photo_operator",
           "restoration_metrics", "comparison_row", "find_faces", "RESTORE_TASKS"]
