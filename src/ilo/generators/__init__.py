"""Layered generators with exact head/tail splits, checkpoint loaders and a registry."""

from .base import LayeredGenerator, State, per_sample_generators, randn_per_sample
from .dcgan import DCGANGenerator
from .registry import GeneratorUnavailable, available, load_generator

__all__ = [
    "LayeredGenerator",
    "State",
    "DCGANGenerator",
    "GeneratorUnavailable",
    "available",
    "load_generator",
    "per_sample_generators",
    "randn_per_sample",
]
