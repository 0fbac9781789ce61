"""The objective a solver minimises: a weighted sum of loss terms chosen in a typed config.

Terms (weights in :class:`LossConfig`; a zero weight switches a term off), each ``[B]``:

- ``mse``: the data-fidelity term (:mod:`ilo.losses.fidelity`), by default the operator's
  measurement loss ``mean |A(x) - y|^2``.
- ``perceptual``: the offline MobileNetV2 perceptual distance
  (:class:`~ilo.losses.perceptual.MobileNetPerceptualDistance`) between the generated image and
  the operator's image-space target (below), at most ``perceptual_size`` px (the paper: 256),
  on the first ``perceptual_stages`` of MobileNetV2's five stages (fewer: cheaper), and
  during optimisation only at every ``perceptual_every``-th step (steps ``0, k, 2k, ...``;
  the others skip the term; 1: every step).
- ``lpips``: real LPIPS (VGG16 or AlexNet), when the backbone file is available.
- ``geocross``: PULSE's geodesic regulariser on latents made of several vectors (StyleGAN w+).

Image-space targets for the perceptual terms come from the operator
(:meth:`ilo.operators.Operator.perceptual_pair`): for inpainting the "superimposed" image
(section 4.2 of the paper), for denoising the noisy observation, for super-resolution ``A(x)``
and ``y`` upsampled; an operator without one (compressed sensing) makes a perceptual weight an error.

Stochastic Noise Addition (``sna=True``, section 4.2): before every evaluation, fresh noise
from the operator's own noise model (same sigma, same clipping) is added to the generated
image, so that the generated image is compared with the observation as a noisy image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Sequence

import torch

from ..operators.base import Operator
from .fidelity import DataFidelity, MeasurementMSE


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (no string parsing: one typed field per term)."""

    mse: float = 1.0
    perceptual: float = 0.0
    lpips: float = 0.0
    geocross: float = 0.0
    sna: bool = False
    perceptual_size: int = 256
    perceptual_stages: int = 5
    lpips_net: str = "vgg"
    lpips_backbone: str | None = None
    perceptual_every: int = 1

    def __post_init__(self) -> None:
        for k in ("mse", "perceptual", "lpips", "geocross"):
            if getattr(self, k) < 0:
                raise ValueError(f"loss weight {k} must be >= 0, got {getattr(self, k)}")
        if isinstance(self.perceptual_every, bool) or not isinstance(self.perceptual_every, int) or self.perceptual_every < 1:
            raise ValueError(f"perceptual_every must be an integer >= 1, got {self.perceptual_every!r}")
        if self.perceptual_every > 1 and not self.mse:
            raise ValueError("perceptual_every > 1 needs a positive mse weight (the steps without the perceptual term)")
        if not 1 <= self.perceptual_stages <= 5:
            raise ValueError(f"perceptual_stages must be 1-5 (MobileNetV2 stages), got {self.perceptual_stages}")
        if self.mse == self.perceptual == self.lpips == 0:
            raise ValueError("at least one data term (mse, perceptual, lpips) needs a positive weight")

    def to_dict(self) -> dict:
        return asdict(self)


_NETS: dict[tuple, torch.nn.Module] = {}


def perceptual_net(kind: str = "mobilenet", device: torch.device | str = "cpu", net: str = "vgg",
                   backbone: str | None = None, stages: int = 5) -> torch.nn.Module:
    """The perceptual distance network, loaded once per process and device (``stages``: how
    many MobileNetV2 stages, from the first, the offline distance uses)."""
    key = (kind, str(device), net, backbone, stages)
    if key not in _NETS:
        if kind == "mobilenet":
            from ..nets.mobilenet_v2 import STAGE_ENDS
            from .perceptual import MobileNetPerceptualDistance

            _NETS[key] = MobileNetPerceptualDistance(taps=STAGE_ENDS[:stages]).to(device)
        else:
            from .lpips import LPIPS

            _NETS[key] = LPIPS(net=net, backbone_path=backbone).to(device)
    return _NETS[key]


def geocross(latent: torch.Tensor) -> torch.Tensor:
    """PULSE's geodesic cross loss of latents ``[B, n, d]`` made of ``n`` vectors: ``[B]``.

    For every pair of vectors, ``2 atan2(|u - v|, |u + v|)``, which is the angle between them
    when they have equal norms (as on PULSE's sphere); the loss is ``d / 8`` times the mean
    squared value over all ordered pairs (0 when all vectors are equal; 0 for ``n = 1``).
    """
    if latent.ndim != 3 or latent.shape[1] < 2:
        return latent.new_zeros(latent.shape[0])
    u, v = latent[:, None, :, :], latent[:, :, None, :]
    a = ((u - v).pow(2).sum(-1) + 1e-9).sqrt()
    b = ((u + v).pow(2).sum(-1) + 1e-9).sqrt()
    ang = 2 * torch.atan2(a, b)  # [B, n, n]
    return ang.pow(2).mean((1, 2)) * latent.shape[-1] / 8


class Objective:
    """``objective(x, y, state, step) -> [B]`` for generated images ``x [B, C, H, W]`` and observations ``y``.

    ``step``: the optimisation step the value is for; the perceptual terms (``perceptual``,
    ``lpips``) are left out where ``step % config.perceptual_every != 0`` (None: an evaluation
    outside the optimisation, every term counts).

    Args:
        config: loss weights.
        operator: the forward operator (its noise model for SNA, its perceptual target).
        noise_streams: one ``torch.Generator`` per row of the batch for the SNA noise (each row
            its own stream, see :mod:`ilo.rng`); None = the global stream.
        fidelity: the data-fidelity term weighted by ``config.mse`` (default: the operator's
            measurement loss, :class:`~ilo.losses.fidelity.MeasurementMSE`).
    """

    def __init__(self, config: LossConfig, operator: Operator, noise_streams: Sequence[torch.Generator] | None = None,
                 fidelity: DataFidelity | None = None):
        self.config, self.operator = config, operator
        self.fidelity = fidelity if fidelity is not None else MeasurementMSE()
        self.generators = list(noise_streams) if noise_streams is not None else None
        if (config.perceptual or config.lpips) and operator.perceptual_target is None:
            raise ValueError(f"the perceptual losses need an image-space observation; {operator.describe()} has none")
        if config.sna and operator.noise.sigma == 0:
            raise ValueError("Stochastic Noise Addition needs an operator with a noise model (sigma > 0)")
        # features of a perceptual target that depends on y only, computed once per (net, y)
        self._target_features: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def add_noise(self, x: torch.Tensor) -> torch.Tensor:
        """SNA: ``x`` through the operator's own noise model, fresh noise at every call."""
        gens = self.generators if self.generators is not None and len(self.generators) == x.shape[0] else None
        return self.operator.noise(x, gens)

    def perceptual_pair(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two image-space tensors the perceptual terms compare (the operator's)."""
        pair = self.operator.perceptual_pair(x, y)
        if pair is None:
            raise ValueError(f"no perceptual target for {self.operator.describe()}")
        return pair

    def _distance(self, net, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``net(a, b)``; when the target ``b`` depends on ``y`` only (the operator's
        ``perceptual_target == "observation"``) its features are computed once and reused."""
        if self.operator.perceptual_target != "observation":
            return net(a, b)
        hit = self._target_features.get(id(net))
        if hit is None or hit[0] is not y:
            with torch.no_grad():
                hit = self._target_features[id(net)] = (y, [f.detach() for f in net.features(b)])
        return net.distance(net.features(a), hit[1]).sum(dim=1)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, state: dict | None = None, step: int | None = None
                 ) -> torch.Tensor:
        cfg = self.config
        if cfg.sna:
            x = self.add_noise(x)
        total = x.new_zeros(x.shape[0])
        if cfg.mse:
            total = total + cfg.mse * self.fidelity(x, y, self.operator)
        if (cfg.perceptual or cfg.lpips) and (step is None or step % cfg.perceptual_every == 0):
            a, b = self.perceptual_pair(x, y)
            from .perceptual import resize_for_perceptual

            a, b = resize_for_perceptual(a, cfg.perceptual_size), resize_for_perceptual(b, cfg.perceptual_size)
            if cfg.perceptual:
                total = total + cfg.perceptual * self._distance(perceptual_net("mobilenet", x.device, stages=cfg.perceptual_stages), a, b, y)
            if cfg.lpips:
                net = perceptual_net("lpips", x.device, cfg.lpips_net, cfg.lpips_backbone)
                total = total + cfg.lpips * self._distance(net, a, b, y)
        if cfg.geocross and state is not None:
            latent = state.get("v", state.get("ws"))  # Gaussianised v (as PULSE) or w+
            if latent is not None:
                total = total + cfg.geocross * geocross(latent)
        return total
