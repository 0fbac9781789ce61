"""Estimate a generator's face template from its own samples.

Draw ``samples`` faces (seed ``seed``), enlarge each to ``detect_size`` pixels (bicubic) so
that dlib's detector sees a face of the size it was trained on, keep the samples with exactly one
detection, run the landmark models, and average the landmark positions in normalised coordinates
``[0, 1]`` of the generator's frame. The spread (RMS distance of the samples' landmarks from the
mean, in generator pixels) and the detection rate are kept in the template's ``source``.

Made the shipped ``src/ilo/data/faces-template-digiface-dcgan.json``::

    python -m ilo.faces.template --generator digiface-dcgan --samples 300 \\
        --out src/ilo/data/faces-template-digiface-dcgan.json

The command also prints the 68-point measurement behind :data:`ilo.faces.align.MOUTH_FROM_NOSE`.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from PIL import Image

from .align import Template, generator_fingerprint
from .detect import LANDMARK_MODELS, DetectorUnavailable, as_uint8, detect_faces


def _available_models() -> list[str]:
    from .detect import check_available

    models = []
    for m in LANDMARK_MODELS:
        try:
            check_available(m)
            models.append(m)
        except DetectorUnavailable:
            pass
    return models


def estimate_template(G, samples: int = 300, seed: int = 0, detect_size: int = 256, batch: int = 50,
                      landmarks: tuple[str, ...] | None = None, progress: bool = False) -> Template:
    """Mean landmark positions over ``G``'s samples (see the module docstring).

    Raises:
        DetectorUnavailable: dlib or its models are missing.
        ValueError: fewer than 10 samples had exactly one detected face.
    """
    models = list(landmarks) if landmarks is not None else _available_models()
    if not models:
        from .detect import check_available

        check_available("5")  # raises with the install hint
    size = int(G.image_shape[-1])
    up = max(detect_size, size)
    found: dict[str, list[np.ndarray]] = {m: [] for m in models}
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        with torch.no_grad():
            imgs = G(G.sample_latent(n, gen)).float().cpu()  # [n, C, S, S]
        for x in imgs:
            a = as_uint8(x[None])
            if up != size:
                a = np.asarray(Image.fromarray(a).resize((up, up), Image.BICUBIC))
            per_model = {m: detect_faces(a, landmarks=m, upsample=0) for m in models}
            if all(len(f) == 1 for f in per_model.values()):
                for m, f in per_model.items():
                    found[m].append(f[0].landmarks / up)
        done += n
        if progress:
            print(f"template: {done}/{samples} samples, {len(found[models[0]])} with one face", file=sys.stderr)
    kept = len(found[models[0]])
    if kept < 10:
        raise ValueError(f"only {kept} of {samples} samples of {G.name!r} had exactly one detected face")
    means, source = {}, {"generator": getattr(G, "name", "generator"), "fingerprint": generator_fingerprint(G),
                         "samples": samples, "seed": seed, "detect_size": up, "detector": "hog", "with_one_face": kept}
    for m, pts in found.items():
        arr = np.stack(pts)  # [N, K, 2] in [0, 1]
        means[m] = arr.mean(0)
        source[f"spread_rms_px_{m}"] = float(np.sqrt(((arr - means[m]) ** 2).sum(-1).mean()) * size)
    if "68" in found and "5" in found:
        source["mouth_from_nose"] = mouth_from_nose(np.stack(found["5"]), np.stack(found["68"]))
    return Template(source["generator"], "landmarks", size, means, source)


def mouth_from_nose(lm5: np.ndarray, lm68: np.ndarray) -> float:
    """Mean of ``|mouth - eyes| / |nose - eyes|`` over faces seen by both models, ``[N, 5, 2]`` and
    ``[N, 68, 2]``. Eyes: the 5-point eye centres' midpoint (as :func:`ilo.faces.align.ffhq_points`
    computes it); nose: the 5-point nose bottom; mouth: the 68-point mouth corners' midpoint."""
    eyes = lm5[:, 0:4].mean(1)
    mouth = (lm68[:, 48] + lm68[:, 54]) / 2
    return float(np.mean(np.linalg.norm(mouth - eyes, axis=1) / np.linalg.norm(lm5[:, 4] - eyes, axis=1)))


def main(argv: list[str] | None = None) -> None:
    import argparse

    from ..generators import load_generator

    p = argparse.ArgumentParser(prog="python -m ilo.faces.template", description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    G = load_generator(a.generator)
    tpl = estimate_template(G, a.samples, a.seed, progress=True)
    with open(a.out, "w") as f:
        json.dump(tpl.to_json(), f, indent=1)
        f.write("\n")
    print(json.dumps(tpl.source, indent=1))


if __name__ == "__main__":
    main()
