"""Loss terms: perceptual distances (offline MobileNetV2 distance, real LPIPS) and resizing.

Every distance maps images ``x, y`` ``[B, 3, H, W]`` in ``[-1, 1]`` to ``[B]``.
"""

from .lpips import LPIPS, BackboneMissing
from .perceptual import FeatureDistance, MobileNetPerceptualDistance, resize_for_perceptual

__all__ = [
    "LPIPS",
    "BackboneMissing",
    "FeatureDistance",
    "MobileNetPerceptualDistance",
    "resize_for_perceptual",
]
