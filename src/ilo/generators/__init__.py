"""Layered generators with exact head/tail splits, checkpoint loaders and a registry.

Modules, each importing only those above it in this list:

    errors          GeneratorUnavailable, CheckpointError, UnsafeCheckpointError, CheckpointTooLarge, CacheError
    budget          memory available (/proc/meminfo), sizing networks on the meta device
    base            LayeredGenerator: the head/tail interface every solver uses
    dcgan           DCGANGenerator
    stylegan2_ops   StyleGAN-2 kernels (FIR filters, modulated convolution, autograd functions)
    stylegan2_net   StyleGAN-2 networks with NVIDIA's parameter names
    stylegan2       StyleGAN2Generator: the layered adapter
    gaussianised    the paper's Gaussianised latent (GaussianisedGenerator)
    records         inert records of what NVIDIA pickles hold
    pickling        a pure-Python unpickler whose every opcode is checked
    torchfile       torch files: format by content, declared sizes checked, safe torch.load
    unpickler       the restricted unpickler of NVIDIA network pickles
    convert         checkpoint contents -> generators (NVIDIA, TensorFlow, rosinality, ours, DCGAN)
    files           load_checkpoint (format by content), save_checkpoint
    hub             download cache: cache_dir, fetch, checksums
    registry        named generators, load_generator
"""

from .base import LayeredGenerator, State, per_sample_generators, randn_per_sample
from .dcgan import DCGANGenerator
from .errors import CacheError, CheckpointError, CheckpointTooLarge, GeneratorUnavailable, UnsafeCheckpointError
from .files import load_checkpoint, save_checkpoint
from .gaussianised import GaussianisedGenerator
from .hub import cache_dir, fetch
from .registry import available, load_generator
from .stylegan2 import StyleGAN2Generator

__all__ = [
    "LayeredGenerator",
    "State",
    "DCGANGenerator",
    "StyleGAN2Generator",
    "GaussianisedGenerator",
    "GeneratorUnavailable",
    "CheckpointError",
    "UnsafeCheckpointError",
    "CheckpointTooLarge",
    "CacheError",
    "available",
    "load_generator",
    "load_checkpoint",
    "save_checkpoint",
    "cache_dir",
    "fetch",
    "per_sample_generators",
    "randn_per_sample",
]
