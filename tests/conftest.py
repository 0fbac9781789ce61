"""Shared fixtures: tiny random generators and the embedded DCGAN, loaded once per session."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
# small Gaussian priors (ilo.solvers.gaussian) in this process and in the ones the tests start:
# a fit of the embedded DCGAN's takes ~5 s, not ~60 s
os.environ["ILO_GAUSSIAN_SAMPLES"] = "1024"
os.environ["ILO_GAUSSIAN_COMPONENTS"] = "128"
os.environ["ILO_GAUSSIAN_CACHE"] = tempfile.mkdtemp(prefix="ilo-test-gaussian-")  # never the user's cache


@pytest.fixture(scope="session")
def tiny_dcgan():
    """A 16x16 DCGAN with random weights (seeded), eval mode, frozen."""
    from ilo.generators import DCGANGenerator

    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=8, size=16, name="tiny")
    # non-trivial BatchNorm statistics so eval mode is not an identity
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return g.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def digiface():
    from ilo.generators import load_generator

    return load_generator("digiface-dcgan")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks: one thread avoids OpenMP synchronisation costs that dominate at this size."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _gaussian_prior_cache():
    """Gaussian priors fitted by the tests (ilo.solvers.gaussian), in this process and in those it
    starts, are small and kept in a temporary folder (the environment set above), never in the
    user's cache; removed at the end."""
    import shutil

    from ilo.solvers import gaussian

    folder = gaussian.cache_folder()
    assert str(folder) == os.environ["ILO_GAUSSIAN_CACHE"]
    assert (gaussian.SAMPLES, gaussian.COMPONENTS) == (1024, 128)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
