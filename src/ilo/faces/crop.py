"""One face of a photograph, aligned to a generator's template: what ``ilo solve --image --align`` solves on.

Usage (``photo``: ``[1, 3, H, W]`` in ``[-1, 1]``)::

    crop, face, alignment = aligned_face(photo, G)   # crop: [1, 3, S, S], the generator's frame

The face is the largest one the detector finds, or the one nearest to a given box (a face's box in
a photo of several people); the crop is :func:`ilo.faces.align.aligned_crop` through the
similarity taking its landmarks to the template of :func:`ilo.faces.template.template_for`.
"""

from __future__ import annotations

import numpy as np
import torch

from .align import Alignment, align_face, aligned_crop
from .detect import Face, NoFaceFound, detect_faces
from .template import template_for


def nearest_face(faces: list[Face], box: tuple[float, float, float, float]) -> Face:
    """The face whose landmarks' centre lies inside ``box = (x0, y0, x1, y1)`` and nearest to its
    centre; NoFaceFound when none lies inside.

    >>> f = Face((0, 0, 10, 10), np.array([[4.0, 5.0], [6.0, 5.0]]), "5", 1.0)
    >>> nearest_face([f], (0, 0, 20, 20)) is f
    True
    """
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    inside = [f for f in faces if x0 <= f.landmarks[:, 0].mean() <= x1 and y0 <= f.landmarks[:, 1].mean() <= y1]
    if not inside:
        raise NoFaceFound(f"no face found inside the box {tuple(int(v) for v in box)}")
    return min(inside, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - centre)))


def aligned_face(photo: torch.Tensor, G, *, near: tuple[float, float, float, float] | None = None,
                 landmarks: str = "5", detector: str = "hog", template: str = "auto", upsample: int = 1
                 ) -> tuple[torch.Tensor, Face, Alignment]:
    """The largest face of ``photo [1, C, H, W]`` (or the one nearest to the box ``near``) aligned to
    ``G``'s template: the crop ``[1, C, S, S]`` (``S`` the generator's side), the face and its alignment.

    Raises:
        NoFaceFound: no face (inside ``near``). ilo.faces.detect.DetectorUnavailable: no dlib or models.
    """
    if photo.ndim != 4 or photo.shape[0] != 1:
        raise ValueError(f"expected one photo [1, C, H, W], got {list(photo.shape)}")
    faces = detect_faces(photo, landmarks=landmarks, detector=detector, upsample=upsample)
    if not faces:
        raise NoFaceFound("no face found in the photo")
    face = faces[0] if near is None else nearest_face(faces, near)
    al = align_face(face, template_for(G, template))
    return aligned_crop(photo, al.transform, int(G.image_shape[-1])).clamp(-1, 1), face, al


__all__ = ["aligned_face", "nearest_face"]
