"""LPIPS (Zhang et al. 2018, v0.1) with our own VGG16/AlexNet backbones and the published heads.

Recipe (as in the reference implementation): images in ``[-1, 1]`` are shifted and scaled per
channel by the LPIPS scaling layer, ``(x - shift) / scale`` with
``shift = (-0.030, -0.088, -0.188)`` and ``scale = (0.458, 0.448, 0.450)`` (ImageNet mean/std
re-expressed for ``[-1, 1]`` inputs); backbone ReLU activations at five depths
(VGG16 ``relu1_2 .. relu5_3``, AlexNet ``relu1 .. relu5``) are unit-normalised along channels;
squared differences go through the learned non-negative 1x1 "linear" heads, are averaged over
space and summed over depths (see :mod:`ilo.losses.perceptual`).

Where the weights come from (none are downloaded unless asked):

- the **heads**: ``lpips/weights/v0.1/{vgg,alex}.pth`` inside the installed ``lpips`` package
  (``pip install --no-deps lpips==0.1.4``), read as files; ``lpips`` itself is never imported
  (it imports torchvision);
- the **backbone**: torchvision's ImageNet file, which the user supplies: ``backbone_path=``
  (CLI ``--lpips-backbone PATH``), else the torch hub cache
  ``$TORCH_HOME/hub/checkpoints/{vgg16-397923af.pth, alexnet-owt-7be5be79.pth}``
  (``TORCH_HOME`` defaults to ``~/.cache/torch``). Without it: :class:`BackboneMissing`, whose
  message names the file and where to put it. ``download=True`` fetches it into the hub cache
  (with internet), checking the hash prefix in its name as torchvision does.

A backbone file may hold the full torchvision classifier (``features.*`` and ``classifier.*``,
both checked against the layout) or only ``features.*``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..nets.alexnet import LPIPS_TAPS as ALEX_TAPS
from ..nets.alexnet import AlexNet
from ..nets.vgg import LPIPS_TAPS as VGG_TAPS
from ..nets.vgg import VGG16
from ..nets.weights import LPIPS_HEADS, WeightsUnavailable, check_state_dict, read_state_dict
from .perceptual import FeatureDistance

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
TORCHVISION_URL = "https://download.pytorch.org/models/"


class BackboneMissing(WeightsUnavailable):
    """The LPIPS backbone file is not available; the message names the file and where to put it."""


@dataclass(frozen=True)
class Backbone:
    """A torchvision backbone usable by LPIPS."""

    arch: str  # human-readable name
    filename: str  # torchvision's file name, ``<arch>-<sha256 prefix>.pth``
    build: Callable[..., VGG16 | AlexNet]  # constructor taking ``classifier: bool``
    taps: tuple[int, ...]  # ``features`` indices of the five ReLU outputs
    channels: tuple[int, ...]

    @property
    def hash_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[1].split(".")[0]


BACKBONES: dict[str, Backbone] = {
    "vgg": Backbone("VGG16", "vgg16-397923af.pth", VGG16, VGG_TAPS, (64, 128, 256, 512, 512)),
    "alex": Backbone("AlexNet", "alexnet-owt-7be5be79.pth", AlexNet, ALEX_TAPS, (64, 192, 384, 256, 256)),
}


def _backbone(net: str) -> Backbone:
    if net not in BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(BACKBONES)}, got {net!r}")
    return BACKBONES[net]


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where torchvision caches (and we look for) backbone files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_backbone(net: str, backbone_path: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The backbone file for ``net``: ``backbone_path`` if given, else the torch hub cache.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        backbone_path: a user-supplied torchvision weight file.
        download: fetch the file into the hub cache if it is not there (needs internet).

    Raises:
        BackboneMissing: the file is not there (the message says which file and where).
    """
    spec = _backbone(net)
    if backbone_path is not None:
        path = Path(backbone_path).expanduser()
        if not path.is_file():
            raise BackboneMissing(f"LPIPS backbone file {path} does not exist (expected torchvision's "
                                  f"{spec.arch} ImageNet weights, {spec.filename})")
        return path
    path = hub_checkpoint_dir() / spec.filename
    if not path.is_file() and download:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(TORCHVISION_URL + spec.filename, str(path), hash_prefix=spec.hash_prefix)
    if not path.is_file():
        raise BackboneMissing(
            f"LPIPS(net={net!r}) needs torchvision's {spec.arch} ImageNet weights, the file {spec.filename} "
            f"({TORCHVISION_URL}{spec.filename}). Put it at {path} (the torch hub cache; set TORCH_HOME to "
            f"move it), or pass backbone_path=PATH (CLI: --lpips-backbone PATH), or use download=True with "
            f"internet access."
        )
    return path


def load_backbone(net: str, path: str | os.PathLike, check_hash: bool = True) -> VGG16 | AlexNet:
    """Read a torchvision backbone file strictly into our features-only module, frozen.

    The file's keys and shapes must be exactly torchvision's: ``features.*`` alone or with
    ``classifier.*``. If the file has torchvision's name (``vgg16-397923af.pth``), its SHA-256
    must start with the hash in the name (unless ``check_hash=False``).
    """
    spec = _backbone(net)
    path = Path(path)
    sha = spec.hash_prefix if check_hash and path.name == spec.filename else None
    state = read_state_dict(path, sha256=sha, fix=f"expected torchvision's {spec.arch} ImageNet file {spec.filename}")
    backbone = spec.build(classifier=False)
    expected = {k: v.shape for k, v in backbone.state_dict().items()}
    if any(k.startswith("classifier.") for k in state):
        with torch.device("meta"):  # the full layout's shapes, without allocating 500 MB
            expected = {k: v.shape for k, v in spec.build(classifier=True).state_dict().items()}
    check_state_dict(state, expected, source=f"{path} (torchvision {spec.arch} layout)")
    backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
    return backbone.eval().requires_grad_(False)


def load_heads(net: str) -> list[torch.Tensor]:
    """The published LPIPS v0.1 channel weights ``[C_l]`` for ``net``, from the installed ``lpips`` package."""
    spec, files = _backbone(net), LPIPS_HEADS[net]
    state = files.load()
    expected = {f"lin{k}.model.1.weight": torch.Size((1, c, 1, 1)) for k, c in enumerate(spec.channels)}
    check_state_dict(state, expected, source=f"lpips heads {files.relpath}")
    return [state[f"lin{k}.model.1.weight"].view(-1) for k in range(len(spec.channels))]


class LPIPS(FeatureDistance):
    """Learned Perceptual Image Patch Similarity (Zhang et al. 2018), v0.1, VGG16 or AlexNet.

    Args:
        net: ``"vgg"`` (default; the variant used as a loss by ILO) or ``"alex"``.
        backbone_path: torchvision's ImageNet weight file for ``net``; default: the torch hub
            cache ``$TORCH_HOME/hub/checkpoints/<file>``.
        check_hash: verify the hash prefix of files that carry torchvision's name.
        download: fetch a missing backbone into the hub cache (needs internet).

    Shapes: ``x, y`` ``[B, 3, H, W]`` in ``[-1, 1]`` (``H, W >= 32``) -> ``[B]``.

    Raises:
        BackboneMissing: no backbone file (the message names the file and where to put it).
        WeightsUnavailable: the ``lpips`` package (for the heads) is not installed, or a file is
            corrupt or of the wrong layout.
    """

    backbone: VGG16 | AlexNet  # submodule, frozen
    shift: torch.Tensor  # buffer [1, 3, 1, 1]
    scale: torch.Tensor  # buffer [1, 3, 1, 1]

    def __init__(
        self,
        net: str = "vgg",
        backbone_path: str | os.PathLike | None = None,
        check_hash: bool = True,
        download: bool = False,
    ):
        super().__init__()
        spec = _backbone(net)
        path = find_backbone(net, backbone_path, download)
        heads = load_heads(net)  # before the (large) backbone file is read
        self.net, self.taps = net, spec.taps
        self.backbone = load_backbone(net, path, check_hash)
        for k, w in enumerate(heads):
            self.register_buffer(f"head{k}", w)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def channel_weights(self) -> list[torch.Tensor | None]:
        return [getattr(self, f"head{k}") for k in range(self.num_layers)]

    def raw_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone.forward_features((x - self.shift) / self.scale, self.taps)
