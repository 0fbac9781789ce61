"""Benchmarks, runnable as ``python -m ilo.bench.<name>``."""
