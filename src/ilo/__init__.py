"""ilo-inverse: Intermediate Layer Optimization for inverse problems with generative models."""
__version__ = "0.1.0"
