"""Find faces and their landmarks with dlib (offline, CPU).

Two optional packages, the ``faces`` extra: ``dlib-bin`` (a prebuilt dlib wheel) and
``face-recognition-models`` (dlib's model files; installed with ``--no-deps``). Both are imported
lazily; without them :func:`detect_faces` raises :class:`DetectorUnavailable` naming the extra.

==============  ===================================  =================================================
name            model                                licence of model and training data
==============  ===================================  =================================================
``hog``         dlib's built-in HOG frontal detector  dlib (Boost Software Licence); trained on faces
                                                     of Labeled Faces in the Wild. Default.
``cnn``         ``mmod_human_face_detector.dat``     public domain (Davis King); dlib's own face
                                                     detection data set, annotated by him.
``5``           ``shape_predictor_5_face_landmarks``  public domain; dlib's 5-point data set (7198
                                                     internet faces annotated by Davis King). Default.
``68``          ``shape_predictor_68_face_landmarks`` iBUG 300-W data: **non-commercial use only**
                                                     (the data's creators asked that the model not be
                                                     used in commercial products). Opt-in.
==============  ===================================  =================================================

Coordinates: continuous image coordinates ``(x, y)``, pixel ``(row i, col j)`` covering
``[j, j + 1) x [i, i + 1)`` (so its centre is ``(j + 0.5, i + 0.5)``); dlib's integer landmark
positions are pixel centres and get ``+ 0.5``.

5-point order (dlib): 0, 1 = outer and inner corner of the eye on the image's right; 2, 3 = outer
and inner corner of the eye on the image's left; 4 = bottom of the nose.
68-point order: iBUG 300-W (36-41 the image-left eye, 42-47 the image-right eye, 48 and 54 the
mouth corners).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

EXTRA_HINT = ("pip install 'ilo-inverse[faces]' && pip install --no-deps face-recognition-models==0.3.0 "
              "(the 'faces' extra)")
LANDMARK_MODELS = {"5": "shape_predictor_5_face_landmarks.dat", "68": "shape_predictor_68_face_landmarks.dat"}
DETECTORS = ("hog", "cnn")


class NoFaceFound(ValueError):
    """The detector found no face (where one was looked for)."""


class DetectorUnavailable(RuntimeError):
    """dlib or its model files are not installed; the message says what to install."""


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: detector box ``(x0, y0, x1, y1)`` in pixels of the image it was found in.
        landmarks: ``[K, 2]`` float64 ``(x, y)`` in continuous image coordinates (K = 5 or 68).
        landmark_model: ``"5"`` or ``"68"``.
        score: the detector's confidence (HOG: SVM margin; CNN: its score).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    landmark_model: str = "5"
    score: float = 0.0

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": self.score, "landmark_model": self.landmark_model,
                "landmarks": np.round(self.landmarks, 3).tolist()}


def _dlib():
    try:
        import dlib
    except ImportError:
        raise DetectorUnavailable(f"face detection needs dlib: {EXTRA_HINT}") from None
    return dlib


def models_dir() -> Path:
    """The folder of dlib's model files inside the installed ``face_recognition_models`` package
    (found without importing it: its ``__init__`` imports the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(f"face landmarks need the model files: {EXTRA_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _model_file(name: str) -> str:
    path = models_dir() / name
    if not path.is_file():
        raise DetectorUnavailable(f"{path} is missing: reinstall with {EXTRA_HINT}")
    return str(path)


@cache
def _detector(kind: str):
    dlib = _dlib()
    if kind == "hog":
        return dlib.get_frontal_face_detector()
    return dlib.cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))


@cache
def _predictor(model: str):
    return _dlib().shape_predictor(_model_file(LANDMARK_MODELS[model]))


def check_available(landmarks: str = "5", detector: str = "hog") -> None:
    """Raise :class:`DetectorUnavailable` (or ValueError for unknown names) unless detection can run."""
    if landmarks not in LANDMARK_MODELS:
        raise ValueError(f"unknown landmark model {landmarks!r}; choose from {', '.join(LANDMARK_MODELS)}")
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; choose from {', '.join(DETECTORS)}")
    _detector(detector)
    _predictor(landmarks)


def as_uint8(image) -> np.ndarray:
    """An ``H x W x 3`` uint8 array from a PIL image, a uint8 array, or a ``[1, 3, H, W]`` tensor in ``[-1, 1]``."""
    if hasattr(image, "detach"):  # torch tensor
        x = image.detach().float().cpu()
        x = x[0] if x.ndim == 4 else x
        return np.ascontiguousarray(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    a = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {a.dtype} of shape {a.shape}")
    return np.ascontiguousarray(a)


def detect_faces(image, *, landmarks: str = "5", detector: str = "hog", upsample: int = 1) -> list[Face]:
    """Faces in ``image`` with their landmarks, largest first.

    Args:
        image: ``H x W x 3`` uint8 array, PIL image, or ``[1, 3, H, W]`` tensor in ``[-1, 1]``.
        landmarks: ``"5"`` (default, free to use) or ``"68"`` (non-commercial, see the module docstring).
        detector: ``"hog"`` (default) or ``"cnn"`` (slower, finds more profiles).
        upsample: how many times dlib doubles the image before detecting (faces smaller than about
            80 px need >= 1).
    """
    check_available(landmarks, detector)
    img = as_uint8(image)
    if detector == "hog":
        rects, scores, _ = _detector("hog").run(img, int(upsample), 0.0)
        found = list(zip(rects, scores))
    else:
        found = [(d.rect, d.confidence) for d in _detector("cnn")(img, int(upsample))]
    faces = []
    for rect, score in found:
        shape = _predictor(landmarks)(img, rect)
        pts = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64)  # [K, 2]
        faces.append(Face((rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), pts, landmarks, float(score)))
    return sorted(faces, key=lambda f: -f.area)
