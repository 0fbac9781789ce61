"""BM3D (Dabov et al. 2007) denoising baseline through the optional ``bm3d`` package.

The ``bm3d`` package is free for non-commercial use only, so it is an optional extra
(``pip install 'ilo-inverse[bm3d]'``), imported lazily, never vendored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..operators.base import Operator
from ..operators.denoising import Denoising
from .optim import Timer
from .result import Result


class BM3DUnavailable(RuntimeError):
    """The optional ``bm3d`` package is not installed."""


@dataclass(frozen=True)
class BM3DConfig:
    """``sigma255``: the noise level on the 0-255 scale; None = the operator's own."""

    sigma255: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def total_steps(self) -> int:
        return 1


def _import_bm3d():
    try:
        import bm3d
    except ImportError:
        raise BM3DUnavailable("the bm3d baseline needs the optional package: pip install 'ilo-inverse[bm3d]' (bm3d, non-commercial licence)") from None
    return bm3d


def bm3d_denoise(y: torch.Tensor, operator: Operator, config: BM3DConfig = BM3DConfig()) -> Result:
    """BM3D on noisy images ``y [B, C, H, W]`` in ``[-1, 1]`` from a :class:`~ilo.operators.Denoising` operator."""
    if not isinstance(operator, Denoising):
        raise ValueError(f"bm3d only solves denoising, not {operator.describe()}")
    bm3d = _import_bm3d()
    sigma255 = config.sigma255 if config.sigma255 is not None else float(operator.sigma255)
    timer = Timer()
    out = []
    for img in y.detach().cpu().float():
        a = ((img + 1) / 2).permute(1, 2, 0).numpy().astype(np.float64)  # [H, W, C] in [0, 1]
        if sigma255 == 0:
            d = a
        elif a.shape[2] == 3:
            d = bm3d.bm3d_rgb(a, sigma255 / 255.0)
        else:
            d = bm3d.bm3d(a[..., 0], sigma255 / 255.0)[..., None]
        out.append(torch.from_numpy(np.asarray(d, dtype=np.float32)).permute(2, 0, 1) * 2 - 1)
    image = torch.stack(out).clamp(-1, 1).to(y.device)
    meas = operator.measurement_loss(image, y)
    secs = timer()
    history = [{"step": 0, "round": 0, "layer": -1, "loss": meas.tolist(), "measurement_loss": meas.tolist(), "time": secs}]
    return Result(image=image, latents={}, layer=-1, measurement_loss=meas, history=history, method="bm3d",
                  config={**config.to_dict(), "sigma255": sigma255}, seconds=secs)
