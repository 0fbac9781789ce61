"""A cheap deterministic job function: fit the latent of a tiny random generator to an inpainting
observation of an image it drew. For tests, demos and the throughput harness; it knows nothing of
ilo's solvers, and every image's result is independent of the batch it runs in.

Job: ``problem {"observed": fraction of pixels seen}``, ``method "toy"``, ``config`` over
:data:`DEFAULTS` (``delay`` seconds of sleep per batch and ``trace_dir``, where each batch writes
a file ``<pid>.<first item>`` before it starts, make runs observable in tests); item data
``{"seed": int}``.

>>> from ilo.runs.jobs import Item, Job
>>> job = Job({"observed": 0.5}, "toy", {"steps": 5}, [Item("s0", {"seed": 0}), Item("s1", {"seed": 1})])
>>> res = solve_batch(job, list(job.items))
>>> [r["item"] for r in res], sorted(res[0]["metrics"]), sorted(res[0]["files"])
(['s0', 's1'], ['measurement_mse', 'mse', 'psnr'], ['observed.png', 'recon.png', 'truth.png'])
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from functools import lru_cache

import torch

from .jobs import Item, Job, png_bytes

DEFAULTS = {"steps": 50, "size": 16, "hidden": 64, "latent": 8, "lr": 0.05, "model_seed": 0, "delay": 0.0,
            "trace_dir": None}


def stream(seed: int, purpose: str) -> torch.Generator:
    """A random stream named by ``(seed, purpose)``: adding a purpose never shifts another."""
    h = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little"))


@lru_cache(maxsize=4)
def tiny_generator(size: int, hidden: int, latent: int, model_seed: int) -> torch.nn.Module:
    """An MLP ``[B, latent] -> [B, 3, size, size]`` in ``[-1, 1]`` with random weights (float64, frozen)."""
    g = stream(model_seed, "weights")
    net = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 3 * size * size),
                              torch.nn.Tanh(), torch.nn.Unflatten(1, (3, size, size))).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(p.shape[-1]))
    return net.requires_grad_(False)


def solve_batch(job: Job, items: list[Item], device: str = "cpu") -> list[dict]:
    """Adam on the latents of a batch (sum of per-image losses: per-image gradients) -> one result per item."""
    cfg = {**DEFAULTS, **job.config}
    if cfg["trace_dir"]:
        with open(os.path.join(cfg["trace_dir"], f"{os.getpid()}.{items[0].id}"), "w") as f:
            f.write(str(os.getpid()))
    time.sleep(cfg["delay"])
    G = tiny_generator(cfg["size"], cfg["hidden"], cfg["latent"], cfg["model_seed"]).to(device)
    seeds = [it.data["seed"] for it in items]
    draw = lambda purpose, shape: torch.stack(
        [torch.rand(shape, generator=stream(s, purpose), dtype=torch.float64) for s in seeds]).to(device)
    truth = G(draw("truth", (cfg["latent"],)) * 2 - 1)  # [B, 3, S, S]
    mask = (draw("mask", (1, cfg["size"], cfg["size"])) < job.problem["observed"]).double()  # [B, 1, S, S]
    z = (draw("init", (cfg["latent"],)) * 2 - 1).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg["lr"])
    for _ in range(cfg["steps"]):
        opt.zero_grad()
        ((G(z) - truth) * mask).square().sum().backward()
        opt.step()
    with torch.no_grad():
        x = G(z)
        mse = (x - truth).square().mean((1, 2, 3))
        meas = ((x - truth) * mask).square().sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * 3).clamp(min=1)
    return [{"item": it.id,
             "metrics": {"mse": mse[i].item(), "psnr": 10 * math.log10(4 / max(mse[i].item(), 1e-30)),
                         "measurement_mse": meas[i].item()},
             "files": {"truth.png": png_bytes(truth[i]), "observed.png": png_bytes(truth[i] * mask[i]),
                       "recon.png": png_bytes(x[i])}}
            for i, it in enumerate(items)]
