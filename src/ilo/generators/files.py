"""Checkpoint files: the format is told by content, read without running code, converted, saved.

``load_checkpoint(path)`` looks at the file's first bytes, never its name:

* a zip archive or torch's legacy magic number: a ``torch.save`` file, read by
  :func:`~ilo.generators.torchfile.torch_load` (declared storage sizes checked against the file
  and the memory available, then ``torch.load(weights_only=True)``) and recognised by its
  contents: our :func:`save_checkpoint` format, rosinality's ``stylegan2-pytorch`` (``g_ema`` /
  ``g``, or a bare generator state dict), an NVIDIA-layout state dict, a DCGAN checkpoint;
* any other pickle (protocol 2+): an NVIDIA network pickle of ``stylegan2-ada-pytorch`` /
  ``stylegan3`` or of the TensorFlow release, read by
  :class:`~ilo.generators.unpickler.RestrictedUnpickler` (inert records instead of NVIDIA's
  classes; their embedded source is never run);
* anything else is refused, naming what it is not.

Every problem is one line: :class:`~ilo.generators.errors.CheckpointError` (a ``ValueError``)
or one of its subclasses, :class:`~ilo.generators.errors.UnsafeCheckpointError` and
:class:`~ilo.generators.errors.CheckpointTooLarge`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..nets.weights import sha256_file
from . import budget
from .base import LayeredGenerator
from .convert import dcgan_from_state_dict, from_ilo, from_nvidia_pickle, from_rosinality, generator_from_state_dict
from .dcgan import DCGANGenerator
from .errors import CheckpointError
from .stylegan2 import StyleGAN2Generator
from .torchfile import torch_format, torch_load
from .unpickler import restricted_load

__all__ = ["checkpoint_file", "load_checkpoint", "load_nvidia_pkl", "load_rosinality", "load_dcgan_file", "save_checkpoint"]


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` if it is a readable regular file; a one-line :class:`CheckpointError` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint file {path} is not readable")
    return path


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(32)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None


def load_nvidia_pkl(path: str | os.PathLike, network: str = "G_ema") -> StyleGAN2Generator:
    """Our generator from an NVIDIA network pickle (stylegan2-ada-pytorch, stylegan3 or the TensorFlow release).

    ``network``: ``"G_ema"`` (default, the averaged generator used for sampling) or ``"G"``.
    The unpickled data are at most about the file's size, twice (the pickle's bytes and the
    tensors made of them): that much memory must be available.
    """
    path = checkpoint_file(path)
    budget.require(2 * path.stat().st_size, f"reading {path}")
    try:
        with open(path, "rb") as f:
            data = restricted_load(f)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    except CheckpointError as e:
        raise type(e)(f"{path}: {e}") from None
    return from_nvidia_pickle(data, path.stem, network)


def load_rosinality(path: str | os.PathLike, network: str = "g_ema", lr_multiplier: float = 0.01) -> StyleGAN2Generator:
    """Our generator from a rosinality ``.pt`` (see :func:`~ilo.generators.convert.from_rosinality`)."""
    path = checkpoint_file(path)
    return from_rosinality(torch_load(path), path.stem, network, lr_multiplier)


def load_dcgan_file(path: str | os.PathLike, sha256: str | None = None) -> DCGANGenerator:
    """A DCGAN checkpoint (``{"netG_state_dict": ...}`` or a bare state dict), checksum verified when given."""
    path = checkpoint_file(path)
    if sha256 is not None and (got := sha256_file(path)) != sha256:
        raise CheckpointError(f"checksum mismatch for {path}: expected {sha256[:12]}…, got {got[:12]}…")
    obj = torch_load(path)
    sd = obj.get("netG_state_dict", obj) if isinstance(obj, dict) else None
    return dcgan_from_state_dict(sd, path.stem)


def save_checkpoint(g: StyleGAN2Generator, path: str | os.PathLike) -> None:
    """Write ``g`` as a plain ``.pt`` (config + NVIDIA-layout state dict) that :func:`load_checkpoint` reads back."""
    torch.save({"format": "ilo-stylegan2", "config": dict(g.config), "name": g.name,
                "state_dict": {k: v.detach().cpu() for k, v in g.state_dict().items()}}, Path(path))


def _from_torch_obj(obj: Any, path: Path, network: str | None) -> LayeredGenerator:
    if isinstance(obj, dict):
        if obj.get("format") == "ilo-stylegan2":
            return from_ilo(obj, path.stem)
        if "g_ema" in obj or "style.1.weight" in obj or "g" in obj:
            return from_rosinality(obj, path.stem, network or "g_ema")
        if "mapping.fc0.weight" in obj:
            return generator_from_state_dict(obj, name=path.stem)
        if "netG_state_dict" in obj or "main.0.weight" in obj:
            return dcgan_from_state_dict(obj.get("netG_state_dict", obj), path.stem)
    raise CheckpointError(f"{path}: unrecognised checkpoint contents (expected StyleGAN-2 or DCGAN weights)")


def load_checkpoint(path: str | os.PathLike, network: str | None = None) -> LayeredGenerator:
    """A layered generator from a checkpoint file, by content; never executes code from the file.

    ``network``: which network of a file holding several (``"G_ema"``/``"G"`` in NVIDIA pickles,
    ``"g_ema"``/``"g"`` in rosinality checkpoints; the averaged one by default).

    Raises:
        CheckpointError: missing, unreadable, unsupported, unsafe or too large (the message says which).
    """
    path = checkpoint_file(path)
    kind = torch_format(_head(path))
    if kind == "pickle":
        return load_nvidia_pkl(path, network or "G_ema")
    if kind in ("zip", "legacy"):
        return _from_torch_obj(torch_load(path), path, network)
    raise CheckpointError(f"{path} is not a checkpoint this loader reads (neither a torch file nor a network pickle)")
