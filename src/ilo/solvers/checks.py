"""Checks :func:`ilo.solvers.solve` makes before any work: observations it can use, an operator
for the generator's images, and memory for the batch it will run.

The memory bound is coarse on purpose: a solver holds, per image and restart, the generator's
activations for the backward pass, their gradients, Adam's moments and the perceptual network's
features, all proportional to the image size. ``BYTES_PER_PIXEL`` (float32 values per output
value, times 4 bytes) was chosen above what a 64-px DCGAN solve measures, so a run this check
lets through still fits, while absurd requests (say ``restarts=100000``) are refused at once,
with how much they would need, instead of growing until the kernel kills them.
"""

from __future__ import annotations

import torch

from ..generators import budget
from ..generators.base import LayeredGenerator
from ..operators.base import Operator

#: bytes a solve holds per output value of one image and restart (see the module docstring)
BYTES_PER_PIXEL = 4 * 48


def check_observations(y: torch.Tensor, operator: Operator) -> None:
    """ValueError with one line unless ``y`` is ``[B, *operator.output_shape]`` with ``B >= 1``,
    all finite.

    >>> from ilo.operators import Denoising
    >>> check_observations(torch.zeros(3, 8, 8), Denoising((3, 8, 8), 10))
    Traceback (most recent call last):
    ...
    ValueError: observations must be [B, 3, 8, 8] with B >= 1, got [3, 8, 8] (one image: y[None])
    """
    want = tuple(getattr(operator, "output_shape", ()) or ())
    shape = list(y.shape)
    if want and (y.ndim != len(want) + 1 or tuple(shape[1:]) != want or shape[0] < 1):
        hint = " (one image: y[None])" if tuple(shape) == want else ""
        raise ValueError(f"observations must be [B, {', '.join(map(str, want))}] with B >= 1, got {shape}{hint}")
    if y.numel() == 0:
        raise ValueError(f"observations are empty: {shape}")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError("observations hold NaN or infinite values")


def check_frame(operator: Operator, generator: LayeredGenerator) -> None:
    """ValueError with one line unless ``operator`` takes images of the generator's
    ``image_shape`` (a generative method feeds it the generator's images).

    >>> from ilo.generators import DCGANGenerator
    >>> from ilo.operators import Denoising
    >>> check_frame(Denoising((3, 32, 32), 10), DCGANGenerator(nz=8, ngf=4, size=16))
    Traceback (most recent call last):
    ...
    ValueError: the operator takes 3x32x32 images but the generator draws 3x16x16: build the operator for the generator's size
    """
    got, want = tuple(operator.input_shape), tuple(generator.image_shape)
    if got != want:
        raise ValueError(f"the operator takes {'x'.join(map(str, got))} images but the generator draws "
                         f"{'x'.join(map(str, want))}: build the operator for the generator's size")


def check_memory(batch: int, restarts: int, image_shape, device: torch.device | str) -> int:
    """The bytes a solve of ``batch`` images with ``restarts`` each will roughly need; ValueError
    with one line when that is more than the device has available (CPU: MemAvailable; CUDA:
    free memory). Returns the estimate."""
    pixels = 1
    for s in image_shape:
        pixels *= int(s)
    need = batch * restarts * pixels * BYTES_PER_PIXEL
    dev = torch.device(device)
    if dev.type == "cuda":
        have: int | None = torch.cuda.mem_get_info(dev)[0]
    else:
        have = budget.available_bytes()
    if have is not None and need > have:
        raise ValueError(f"this solve ({batch} image(s) x {restarts} restart(s) of {'x'.join(map(str, image_shape))}) "
                         f"would need about {need / 2**30:.1f} GiB; {have / 2**30:.1f} GiB is available "
                         "(fewer restarts or a smaller batch)")
    return need
