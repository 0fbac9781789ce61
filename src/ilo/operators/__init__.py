"""Forward operators ``y = noise(A(x))`` for the inverse problems of the ILO paper.

Every operator is a small ``nn.Module`` (see :mod:`ilo.operators.base`): its masks, filters
and sign patterns are registered buffers drawn from an explicit ``torch.Generator``, and the
same object simulates the observation and defines the solvers' measurement loss. Each class
also carries its task's semantics (``task``, ``level``, ``perceptual_pair``, ``describe``,
``read_observation``, ``from_options``); :data:`TASKS` lists them by task key.

=========================  ==========  ====================  ======================================
class                      ``task``    ``level``             measurement
=========================  ==========  ====================  ======================================
:class:`Inpainting`        inpaint     observed fraction     ``x * mask`` (same pixels in every channel)
:class:`SuperResolution`   superres    downsampling factor   antialiased bicubic (Keys, a = -0.5)
:class:`Denoising`         denoise     sigma (0-255 scale)   identity, clipped Gaussian noise
:class:`CompressedSensing` cs          m / n                 partial circulant matrix, random signs
:class:`Identity`          identity    none                  ``x`` itself (e.g. classifier guidance)
=========================  ==========  ====================  ======================================
"""

from __future__ import annotations

from .base import GaussianNoise, Identity, NoiseModel, NoNoise, Operator, randn_like
from .compressed_sensing import CompressedSensing
from .denoising import Denoising
from .inpainting import Inpainting
from .superres import SuperResolution

#: the inverse problems, by task key (the order of tables and demos)
TASKS: dict[str, type[Operator]] = {cls.task: cls for cls in (Inpainting, SuperResolution, Denoising, CompressedSensing)}


def operator_class(task: str) -> type[Operator]:
    """The operator class of a task key; ValueError naming the known ones otherwise.

    >>> operator_class("superres").level_name
    'downsampling factor'
    """
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}") from None


__all__ = [
    "Operator",
    "NoiseModel",
    "NoNoise",
    "GaussianNoise",
    "randn_like",
    "Identity",
    "Inpainting",
    "SuperResolution",
    "Denoising",
    "CompressedSensing",
    "TASKS",
    "operator_class",
]
