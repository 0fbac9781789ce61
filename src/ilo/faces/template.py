"""A generator's face template: estimated from its own samples, shipped, or cached by its weights' hash.

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

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .align import TEMPLATE_KINDS, Template
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


# ---------------------------------------------------------------------------------------------
# lookup by generator fingerprint: shipped, cached, or estimated now


def generator_fingerprint(G: torch.nn.Module) -> str:
    """SHA-256 of a generator's weights (names, dtypes, shapes and bytes of its state dict, on CPU)."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def shipped_templates() -> list[Path]:
    return sorted((Path(__file__).resolve().parent.parent / "data").glob("faces-template-*.json"))


def template_cache_dir() -> Path:
    from ..generators.hub import cache_dir

    return cache_dir() / "faces"


def ffhq_template(size: int, name: str = "ffhq") -> Template:
    return Template(name, "ffhq", int(size), {}, {"recipe": "NVIDIA FFHQ preparation (eyes and mouth -> oriented square)"})


def find_template(G: torch.nn.Module, fingerprint: str | None = None) -> Template | None:
    """The shipped or cached landmark template made from these exact weights, or None."""
    fp = fingerprint or generator_fingerprint(G)
    for path in [*shipped_templates(), template_cache_dir() / f"{fp}.json"]:
        if path.is_file():
            obj = json.loads(path.read_text())
            if obj.get("source", {}).get("fingerprint") == fp:
                return Template.from_json(obj)
    return None


def template_for(G: torch.nn.Module, kind: str = "auto", *, estimate: bool = True, progress: bool = False) -> Template:
    """The template to align faces to for generator ``G``.

    ``kind="auto"``: the FFHQ recipe when the generator's name says FFHQ, else the landmark template
    of these weights (shipped, cached, or estimated now from ``G``'s samples and cached under
    ``$ILO_CACHE/faces/<fingerprint>.json``).
    """
    if kind not in TEMPLATE_KINDS:
        raise ValueError(f"unknown template kind {kind!r}; choose from {', '.join(TEMPLATE_KINDS)}")
    size = int(G.image_shape[-1])
    if kind == "ffhq" or (kind == "auto" and "ffhq" in getattr(G, "name", "").lower()):
        return ffhq_template(size, f"ffhq-{size}")
    fp = generator_fingerprint(G)
    found = find_template(G, fp)
    if found is not None or not estimate:
        if found is None:
            raise ValueError(f"no landmark template for generator {getattr(G, 'name', '?')!r}")
        return found
    tpl = estimate_template(G, progress=progress)
    path = template_cache_dir() / f"{fp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tpl.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return tpl


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
