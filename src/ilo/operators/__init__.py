"""Forward operators ``y = noise(A(x))`` for the inverse problems of the ILO paper.

Every operator is a small ``nn.Module`` (see :mod:`ilo.operators.base`): its masks, filters
and sign patterns are registered buffers drawn from an explicit ``torch.Generator``, and the
same object simulates the observation and defines the solvers' loss.

========================  ==========  ========================================================
class                     ``task``    measurement
========================  ==========  ========================================================
:class:`Inpainting`       inpaint     ``x * mask`` (same pixels in every channel)
:class:`SuperResolution`  superres    antialiased bicubic (Keys, a = -0.5) downsampling by f
:class:`Denoising`        denoise     identity, Gaussian noise of sigma255 on the 0-255 scale
:class:`CompressedSensing` cs         partial circulant matrix with random signs, via FFTs
========================  ==========  ========================================================
"""

from .base import GaussianNoise, NoiseModel, NoNoise, Operator, randn_like
from .classifier import ClassifierGuidance
from .compressed_sensing import CompressedSensing
from .denoising import Denoising
from .inpainting import Inpainting
from .superres import SuperResolution

__all__ = [
    "Operator",
    "NoiseModel",
    "NoNoise",
    "GaussianNoise",
    "randn_like",
    "Inpainting",
    "SuperResolution",
    "Denoising",
    "CompressedSensing",
    "ClassifierGuidance",
]
