"""Harmonic (membrane) inpainting: the observed pixels kept, every missing pixel the mean of
its four neighbours, linear images reproduced inside a hole, per-image masks."""

import torch

from ilo.operators import Inpainting
from ilo.solvers.classical import classical, on_residual


def _neighbour_mean(img: torch.Tensor) -> torch.Tensor:
    """Mean of the four neighbours with reflecting (clipped) borders, ``[B, C, H, W]``."""
    p = torch.nn.functional.pad(img, (1, 1, 1, 1), mode="replicate")
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4


def test_harmonic_solves_laplace_in_the_hole_and_keeps_observed_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 12, 10, generator=g) * 2 - 1
    op = Inpainting.random((3, 12, 10), observed=0.4, generator=g)
    out = classical(op(x), op, "harmonic").image
    seen = op.mask.expand_as(x).bool()
    assert torch.equal(out[seen], x[seen])
    hole = ~seen
    assert (out - _neighbour_mean(out))[hole].abs().max() < 1e-5  # discrete Laplace equation
    assert not torch.allclose(out[hole], torch.zeros_like(out[hole]))


def test_harmonic_reproduces_a_linear_image_inside_a_box():
    i, j = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x = ((0.05 * i - 0.03 * j) - 0.2).expand(1, 3, 16, 16)
    op = Inpainting.box((3, 16, 16), 5, 4, 11, 12)  # interior: linear is harmonic there
    assert torch.allclose(classical(op(x), op, "harmonic").image, x, atol=1e-5)
    biharmonic = classical(op(x), op, "biharmonic").image  # also exact on linear images
    assert torch.allclose(biharmonic, x, atol=1e-4)


def test_harmonic_per_image_masks_and_on_residual():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    mask = torch.ones(2, 1, 8, 8)
    mask[0, :, 2:5, 2:5] = 0
    mask[1, :, 4:7, 1:3] = 0
    op = Inpainting((1, 8, 8), mask)
    both = classical(op(x), op, "harmonic").image
    for b in range(2):
        one = Inpainting((1, 8, 8), mask[b:b + 1])
        assert torch.allclose(both[b:b + 1], classical(one(x[b:b + 1]), one, "harmonic").image, atol=1e-6)
    base = torch.zeros_like(x) + 0.1
    res = on_residual(op(x), op, "harmonic", base)  # base + harmonic(y - A(base)) = harmonic(y) (linear)
    assert torch.allclose(res, both.clamp(-1, 1), atol=1e-5)


def test_harmonic_on_the_residual_of_another_operator_is_refused():
    import pytest

    from ilo.operators import SuperResolution

    op = SuperResolution((1, 8, 8), 2)
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="harmonic solves Inpainting"):
        on_residual(op(x), op, "harmonic", x)
