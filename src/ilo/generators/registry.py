"""Model registry: named pretrained generators, verified weights, an in-process cache.

``load_generator(name)`` returns an eval-mode :class:`~ilo.generators.base.LayeredGenerator`
with frozen parameters, for a registered name or a checkpoint path. Weights are read by
:mod:`ilo.generators.files` (``torch.load(weights_only=True)`` or a restricted unpickler, sizes
checked first): no code from a file is ever executed. Files are cached per process by path,
size and modification time, so a file replaced at the same path is read again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .base import LayeredGenerator
from .errors import GeneratorUnavailable
from .files import checkpoint_file, load_checkpoint, load_dcgan_file
from .hub import fetch


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    build: Callable[[], LayeredGenerator]


_REGISTRY: dict[str, Entry] = {}
_CACHE: dict[tuple[Hashable, str], LayeredGenerator] = {}


def register(name: str, description: str) -> Callable[[Callable[[], LayeredGenerator]], Callable[[], LayeredGenerator]]:
    """Decorator adding a builder to the registry under ``name``."""

    def deco(fn: Callable[[], LayeredGenerator]) -> Callable[[], LayeredGenerator]:
        _REGISTRY[name] = Entry(name, description, fn)
        return fn

    return deco


def available() -> dict[str, str]:
    """Registered generator names and their descriptions."""
    return {k: e.description for k, e in sorted(_REGISTRY.items())}


def _looks_like_path(name: str) -> bool:
    seps = [s for s in (os.sep, os.altsep) if s]
    return Path(name).suffix != "" or any(s in name for s in seps) or os.path.lexists(name)


def load_generator(name: str, device: str | torch.device = "cpu") -> LayeredGenerator:
    """A registered generator by name, or a checkpoint file by path; eval mode, frozen weights.

    Results are cached in this process: registered names by name, files by their resolved
    path, size, modification and change times and inode (a file replaced at the same path is
    read again).

    Raises:
        GeneratorUnavailable: unknown name, or weights missing/corrupt (message says what to do);
            for files, its subclass :class:`~ilo.generators.errors.CheckpointError`.
    """
    if name in _REGISTRY:
        key: Hashable = ("registry", name)
        build: Callable[[], LayeredGenerator] = _REGISTRY[name].build
    elif _looks_like_path(name):
        path = checkpoint_file(name)
        st = path.stat()
        key = ("file", str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        build = partial(load_checkpoint, path)
    else:
        raise GeneratorUnavailable(f"unknown generator {name!r}; known: {', '.join(sorted(_REGISTRY))} or a checkpoint path")
    if (key, str(device)) not in _CACHE:
        _CACHE[(key, str(device))] = build().to(device).eval().requires_grad_(False)
    return _CACHE[(key, str(device))]


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


@register("digiface-dcgan", "64x64 DCGAN on DigiFace-1M synthetic faces (PyPI gan-face-generate 1.1.1, MIT)")
def _digiface() -> LayeredGenerator:
    g = load_dcgan_file(digiface_weights_path(), sha256=DIGIFACE_SHA256)
    g.name = "digiface-dcgan"
    return g


# ---------------------------------------------------------------------------------------------
# StyleGAN-2 networks published by NVIDIA: downloaded on first use into hub.cache_dir(), read by
# the safe loaders of ``files.py`` (no code from the pickle runs). NVIDIA publishes no checksums for
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
        g = load_checkpoint(fetch(url, filename, sha256))
        g.name = name
        return g

    return build


for _name, (_url, _file, _sha, _desc) in STYLEGAN2_FILES.items():
    register(_name, _desc)(_stylegan2_builder(_name))
