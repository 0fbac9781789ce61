"""Alignment of a detected face to a generator's template by a similarity transform.

A :class:`Similarity` maps photo coordinates to the generator's *aligned frame*: the ``S x S``
image the generator draws, in continuous coordinates ``[0, S]^2`` (see :mod:`ilo.faces.detect`).
Two kinds of :class:`Template`:

* ``"ffhq"`` -- NVIDIA's FFHQ preparation recipe, for StyleGAN-2 FFHQ checkpoints. With
  ``e0, e1`` the eye centres (image-left, image-right), ``m`` the mouth centre,
  ``e = (e0 + e1) / 2``, ``a = e1 - e0``, ``b = m - e``: the half-side vector is
  ``x = (a - rot90(b)) / |a - rot90(b)| * max(2 |a|, 1.8 |b|)`` with ``rot90(v) = (-v_y, v_x)``,
  ``y = rot90(x)``, the centre ``c = e + 0.1 b``; the square with corners ``c -+ x -+ y`` becomes
  the whole aligned frame (``c -> (S/2, S/2)``, ``x -> (S/2, 0)``, ``y -> (0, S/2)``).
  The 68-point model gives the eye centres (mean of each eye's six points) and the mouth corners
  (points 48 and 54), as in the recipe. The 5-point model has eye corners and the bottom of the
  nose but no mouth: the eye centre is taken as the mean of its two corners, and the mouth centre
  as ``e + MOUTH_FROM_NOSE * (n - e)`` with ``n`` the nose point, a ratio measured with the
  68-point model (``python -m ilo.faces.template`` prints it). An approximation: it assumes the
  mouth lies on the eye-nose line at the average proportion.
* ``"landmarks"`` -- for any other generator: the mean landmark positions over a few hundred of
  its own samples (normalised to ``[0, 1]``), see :mod:`ilo.faces.template`. A face's transform is
  the least-squares similarity (Umeyama 1991) taking its landmarks onto the template's; the RMS
  residual in aligned-frame pixels is reported as the landmark-fit error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .detect import Face

#: mouth centre = eye centre + MOUTH_FROM_NOSE * (nose bottom - eye centre), 5-point FFHQ approximation;
#: 1.382 measured with both models on 213 digiface-dcgan samples (python -m ilo.faces.template)
MOUTH_FROM_NOSE = 1.38
TEMPLATE_KINDS = ("auto", "ffhq", "landmarks")


@dataclass(frozen=True)
class Similarity:
    """``p -> matrix[:, :2] @ p + matrix[:, 2]`` with ``matrix[:, :2] = scale * rotation``.

    >>> T = Similarity.from_params(scale=2.0, angle=90.0, shift=(1.0, 0.0))
    >>> T.apply(np.array([[1.0, 0.0]])).round(6).tolist()
    [[1.0, 2.0]]
    >>> np.allclose(T.inverse().apply(T.apply(np.eye(2))), np.eye(2))
    True
    """

    matrix: np.ndarray  # [2, 3] float64

    @classmethod
    def from_params(cls, scale: float, angle: float, shift: tuple[float, float]) -> Similarity:
        """Scale, then rotate by ``angle`` degrees (counter-clockwise in ``(x, y)`` axes), then shift."""
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        return cls(np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]], dtype=np.float64))

    @property
    def scale(self) -> float:
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def angle(self) -> float:
        """Rotation in degrees."""
        return float(math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0])))

    def apply(self, pts: np.ndarray) -> np.ndarray:
        """``[N, 2] -> [N, 2]``."""
        return np.asarray(pts, dtype=np.float64) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> Similarity:
        lin = np.linalg.inv(self.matrix[:, :2])
        return Similarity(np.concatenate([lin, -lin @ self.matrix[:, 2:]], axis=1))

    def to_dict(self) -> dict:
        return {"matrix": np.round(self.matrix, 6).tolist(), "scale": self.scale, "angle_deg": self.angle,
                "shift": self.matrix[:, 2].tolist()}


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity (no reflection) taking points ``src [N, 2]`` onto ``dst [N, 2]`` (Umeyama 1991).

    >>> T = Similarity.from_params(0.5, -30.0, (3.0, 4.0))
    >>> p = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> np.allclose(estimate_similarity(p, T.apply(p)).matrix, T.matrix)
    True
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching [N >= 2, 2] point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum(1).mean()
    if var_s == 0:
        raise ValueError("the source points coincide")
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    return Similarity(np.concatenate([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], axis=1))


@dataclass(frozen=True)
class Template:
    """Where a generator draws the face.

    Attributes:
        name: generator name; kind: ``"ffhq"`` or ``"landmarks"``; size: the generator's side ``S``.
        landmarks: ``{"5": [5, 2], "68": [68, 2]}`` mean landmark positions in ``[0, 1]`` (kind ``landmarks``).
        source: how it was made (fingerprint, sample counts, spread).
    """

    name: str
    kind: str
    size: int
    landmarks: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "size": self.size,
                "landmarks": {k: np.round(v, 6).tolist() for k, v in self.landmarks.items()}, "source": self.source}

    @classmethod
    def from_json(cls, obj: dict) -> Template:
        return cls(obj["name"], obj["kind"], int(obj["size"]),
                   {k: np.asarray(v, np.float64) for k, v in obj.get("landmarks", {}).items()}, obj.get("source", {}))


@dataclass(frozen=True)
class Alignment:
    """A face's transform to the aligned frame and how well its landmarks fit the template
    (RMS distance in aligned-frame pixels; None for the FFHQ recipe, which is exact by construction)."""

    transform: Similarity
    fit_rms: float | None
    template: str

    def to_dict(self) -> dict:
        return {"transform": self.transform.to_dict(), "landmark_fit_rms_px": self.fit_rms, "template": self.template}


def ffhq_points(landmarks: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eye centres (image-left, image-right) and mouth centre from 5 or 68 landmarks (see the module docstring)."""
    lm = np.asarray(landmarks, np.float64)
    if model == "68":
        return lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2
    if model == "5":
        e0, e1 = lm[2:4].mean(0), lm[0:2].mean(0)
        e = (e0 + e1) / 2
        return e0, e1, e + MOUTH_FROM_NOSE * (lm[4] - e)
    raise ValueError(f"unknown landmark model {model!r}")


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def ffhq_transform(landmarks: np.ndarray, model: str, size: int) -> Similarity:
    """The FFHQ recipe's square as a photo -> aligned-frame similarity for a generator of side ``size``."""
    e0, e1, m = ffhq_points(landmarks, model)
    e = (e0 + e1) / 2
    a, b = e1 - e0, m - e
    x = a - _rot90(b)
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*a), 1.8 * np.hypot(*b))
    y = _rot90(x)
    c = e + 0.1 * b
    half = size / 2
    to_photo = np.concatenate([np.stack([x, y], axis=1) / half, (c - (x + y))[:, None]], axis=1)  # aligned -> photo
    return Similarity(to_photo).inverse()


def align_face(face: Face, template: Template) -> Alignment:
    """The transform taking ``face`` to ``template``'s aligned frame."""
    if template.kind == "ffhq":
        return Alignment(ffhq_transform(face.landmarks, face.landmark_model, template.size), None, template.name)
    ref = template.landmarks.get(face.landmark_model)
    if ref is None:
        raise ValueError(f"template {template.name!r} has no {face.landmark_model}-point landmarks; "
                         f"it has {', '.join(template.landmarks) or 'none'}")
    dst = ref * template.size
    T = estimate_similarity(face.landmarks, dst)
    rms = float(np.sqrt(((T.apply(face.landmarks) - dst) ** 2).sum(1).mean()))
    return Alignment(T, rms, template.name)


# ---------------------------------------------------------------------------------------------
# sampling between the photo and the aligned frame


def sampling_grid(T: Similarity, src_hw: tuple[int, int], box: tuple[int, int, int, int], scale: int = 1,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``grid_sample`` grid reading a source image at the pixels of a target region.

    ``T`` maps target coordinates to source coordinates (both continuous, see
    :mod:`ilo.faces.detect`); ``src_hw`` is the source's ``(H, W)``. ``box = (x0, y0, x1, y1)`` is
    the target region in target pixels, sampled ``scale`` times more finely per side
    (super-resolution: the photo is the low-resolution observation): output pixel ``(i, j)`` sits at
    ``((x0 * scale + j + 0.5) / scale, (y0 * scale + i + 0.5) / scale)``.
    Returns ``[1, (y1 - y0) * scale, (x1 - x0) * scale, 2]``, normalised for ``align_corners=False``.
    """
    x0, y0, x1, y1 = box
    xs = (x0 * scale + np.arange((x1 - x0) * scale) + 0.5) / scale
    ys = (y0 * scale + np.arange((y1 - y0) * scale) + 0.5) / scale
    gx, gy = np.meshgrid(xs, ys)  # [h, w]
    uv = T.apply(np.stack([gx.ravel(), gy.ravel()], axis=1)) * (2.0 / np.array([src_hw[1], src_hw[0]])) - 1.0
    return torch.from_numpy(uv.reshape(1, len(ys), len(xs), 2)).to(dtype)


def aligned_crop(photo: torch.Tensor, T: Similarity, size: int) -> torch.Tensor:
    """The photo resampled into the aligned frame (bilinear, zeros outside): ``[B, C, H, W] -> [B, C, size, size]``.

    ``T`` maps photo to aligned coordinates. When the face shrinks by more than 2, the photo is
    first box-filtered by the even factor ``k`` below the shrink (antialiasing).
    """
    shrink = 1.0 / T.scale  # photo pixels per aligned pixel
    k = int(shrink // 2) * 2 if shrink > 2 else 1
    src = photo
    if k > 1:
        src = F.avg_pool2d(photo, k, stride=k, ceil_mode=True)
        T = Similarity(T.matrix @ np.diag([float(k), float(k), 1.0]))  # pooled-photo -> aligned
    grid = sampling_grid(T.inverse(), tuple(src.shape[-2:]), (0, 0, size, size), dtype=photo.dtype)
    return F.grid_sample(src, grid.expand(photo.shape[0], -1, -1, -1), mode="bilinear", padding_mode="zeros",
                         align_corners=False)
