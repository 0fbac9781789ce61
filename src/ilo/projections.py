"""Exact Euclidean projections and the constraint sets of the solvers.

Constraints (each with an in-place ``project_(v)``, applied after every optimiser step):

- :class:`L1Ball`: ``v in center + B1(r)``, the feasible set of an ILO round (line 3 of Algorithm 1
  of Daras et al. 2021);
- :class:`L2Ball`: ``||v||_2 <= r`` per sample (CSGM's ``z in B2(r1)``);
- :class:`Sphere`: every vector along the last dimension on the sphere of radius ``sqrt(d)`` (PULSE).

ILO optimises an intermediate representation ``z_p`` only within an l1 ball around its
starting point, ``z_p ∈ ẑ_p ⊕ B1(r)``; after each gradient step the deviation ``z_p - ẑ_p``
is projected back onto ``B1(r) = {d : ||d||_1 <= r}`` with the sort-based algorithm of
Duchi, Shalev-Shwartz, Singer & Chandra (2008), "Efficient projections onto the l1-ball for
learning in high dimensions", Figure 1.
"""

from __future__ import annotations

import torch

__all__ = ["project_l1_ball", "project_l1_deviation", "Constraint", "L1Ball", "L2Ball", "Sphere"]


def _radii(radius: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Per-sample radii as a float64 tensor ``[B]``; raises on negative or NaN radii."""
    r = torch.as_tensor(radius, dtype=torch.float64, device=device)
    if r.ndim == 0:
        r = r.expand(batch)
    elif r.shape != (batch,):
        raise ValueError(f"radius must be a float or a tensor [B={batch}], got shape {list(r.shape)}")
    if not bool((r >= 0).all()):  # also rejects NaN
        raise ValueError(f"radius must be >= 0, got {radius}")
    return r


def _theta_sort(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Duchi et al.'s sort-based threshold for rows ``a [b, d] >= 0`` with ``||a_i||_1 > r_i``.

    With ``μ`` the row sorted in decreasing order,
    ``ρ = max{j : μ_j > (Σ_{i<=j} μ_i - r) / j}`` and ``θ = (Σ_{i<=ρ} μ_i - r) / ρ``.
    Returns ``θ [b]`` in float64 (``r = 0`` gives ``max a``, i.e. the zero vector).
    """
    mu = a.sort(dim=1, descending=True).values  # [b, d]
    cums = mu.cumsum(1, dtype=torch.float64)  # [b, d]
    k = torch.arange(1, mu.shape[1] + 1, device=a.device, dtype=torch.float64)  # [d]
    active = mu.to(torch.float64) * k > cums - r[:, None]  # [b, d]; true exactly for j <= ρ
    rho = (active * k).amax(1).clamp_min(1).long()  # [b]
    return (cums.gather(1, (rho - 1)[:, None]).squeeze(1) - r) / rho


def _theta_active_set(a: torch.Tensor, r: torch.Tensor, max_iter: int = 64) -> torch.Tensor:
    """The same threshold by active-set fixed-point iterations (Michelot 1986), no sort.

    Start from ``θ_0 = (||a||_1 - r) / d`` and iterate ``θ_{t+1} = (Σ_{a_j > θ_t} a_j - r) /
    |{j : a_j > θ_t}|``. Every ``θ_t`` is a lower bound of the exact ``θ`` and the sequence
    increases, so the active set only shrinks; once it stops changing,
    ``Σ_j max(a_j - θ, 0) = r`` holds exactly, i.e. ``θ`` is Duchi's threshold. The first
    iterations run on the dense ``[b, d]`` rows; once every row has at most ``d / 8`` active
    entries, only those are kept (a ragged list of values with their row ids), so later
    iterations cost little. A few iterations suffice in practice; after ``max_iter`` it falls
    back to the sort. Comparisons use ``θ`` rounded to ``a``'s dtype, exactly as the final
    shrinkage does, so the active set found is the one the output uses.
    """
    b, d = a.shape
    theta = (a.sum(1, dtype=torch.float64) - r) / d  # [b], > 0 for rows outside the ball
    counts = torch.full((b,), d, dtype=torch.long, device=a.device)
    ragged: tuple[torch.Tensor, torch.Tensor] | None = None  # (values [nnz], their row ids [nnz])
    for _ in range(max_iter):
        if ragged is None:  # dense phase
            keep = a > theta.to(a.dtype)[:, None]  # [b, d]
            new_counts = keep.sum(1)
        else:  # ragged phase
            vals, row = ragged
            keep = vals > theta.to(a.dtype)[row]  # [nnz]
            new_counts = torch.zeros_like(counts).index_add_(0, row, keep.long())
        if torch.equal(new_counts, counts):
            return theta
        counts = new_counts
        if ragged is None and int(counts.max()) * 8 > d:
            sums = torch.where(keep, a, 0).sum(1, dtype=torch.float64)  # [b]
        else:
            if ragged is None:
                vals = a[keep]  # [nnz], row-major so rows stay in order
                row = torch.repeat_interleave(torch.arange(b, device=a.device), counts)  # [nnz]
            else:
                vals, row = vals[keep], row[keep]
            ragged = (vals, row)
            sums = torch.zeros(b, dtype=torch.float64, device=a.device).index_add_(0, row, vals.double())
        # An emptied row keeps the θ that emptied it (>= max a: the zero vector, only for r ~ 0).
        theta = torch.where(counts > 0, (sums - r) / counts.clamp_min(1), theta)
    return _theta_sort(a, r)  # pragma: no cover - not reached on any input we know of


METHODS = {"active-set": _theta_active_set, "sort": _theta_sort}


def _project_rows(v: torch.Tensor, r: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Project the rows of ``v [B, d]`` onto l1 balls of radii ``r [B]`` (float64).

    Returns ``(p, outside)``: the projections ``[B, d]`` (rows already inside are ``v``'s own
    rows, untouched) and the boolean mask ``[B]`` of the rows that had to move.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    a = v.abs()
    outside = a.sum(1, dtype=torch.float64) > r  # [B]
    if not bool(outside.any()):
        return v.clone(), outside
    rows = outside.nonzero().squeeze(1)  # [b]
    a_out = a.index_select(0, rows)  # [b, d]
    theta = METHODS[method](a_out, r.index_select(0, rows)).to(v.dtype)  # [b]
    # sign(v) * max(|v| - θ, 0); "+ 0.0" turns the -0.0 of negative entries into 0.0.
    shrunk = (a_out - theta[:, None]).clamp_min(0) * v.index_select(0, rows).sign() + 0.0
    p = v.clone()
    p.index_copy_(0, rows, shrunk)
    return p, outside


def project_l1_ball(v: torch.Tensor, radius: float | torch.Tensor, *, method: str = "active-set") -> torch.Tensor:
    """Euclidean projection of each sample of ``v`` onto the l1 ball of radius ``r``.

    For one sample (flattened to ``v ∈ R^d``)

    .. math::
        P(v) = \\arg\\min_{\\|x\\|_1 \\le r} \\|x - v\\|_2
             = \\operatorname{sign}(v) \\odot \\max(|v| - \\theta, 0),

    where ``θ = 0`` if ``||v||_1 <= r`` and otherwise ``θ > 0`` solves
    ``Σ_i max(|v_i| - θ, 0) = r``. With ``μ`` the entries of ``|v|`` sorted in decreasing
    order, ``ρ = max{j : μ_j > (Σ_{i<=j} μ_i - r) / j}`` and ``θ = (Σ_{i<=ρ} μ_i - r) / ρ``
    (Duchi et al. 2008, Figure 1): ``O(d log d)`` per sample, ``method="sort"``.

    The default ``method="active-set"`` finds the same ``θ`` without sorting, by Michelot's
    (1986) finite fixed-point iteration on the active set (see :func:`_theta_active_set`);
    it is several times faster on feature maps of ``10^5`` entries and is tested equal to
    the sort. Samples already inside their ball (including on its surface) are returned
    exactly unchanged, and when every sample is inside nothing else is computed. The batch
    is handled without Python loops over samples; sums and ``θ`` are computed in float64.
    Not meant to be differentiated (use it under ``torch.no_grad()``).

    Args:
        v: ``[B, ...]`` tensor; each sample ``v[b]`` is projected separately.
        radius: a float for all samples or a tensor ``[B]`` of per-sample radii, all ``>= 0``
            (radius ``0`` projects to zero).
        method: ``"active-set"`` (default) or ``"sort"`` (the reference); same result.

    Returns:
        A new tensor shaped like ``v``.

    Example:
        >>> v = torch.tensor([[3.0, -1.0, 0.5], [0.2, 0.1, 0.0]])
        >>> project_l1_ball(v, 2.0).tolist()
        [[2.0, 0.0, 0.0], [0.20000000298023224, 0.10000000149011612, 0.0]]
        >>> project_l1_ball(v, torch.tensor([3.0, 0.0])).tolist()
        [[2.5, -0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    if v.ndim < 1:
        raise ValueError("v must have a batch dimension: [B, ...]")
    if not v.is_floating_point():
        raise TypeError(f"v must be a floating-point tensor, got {v.dtype}")
    r = _radii(radius, v.shape[0], v.device)
    p, _ = _project_rows(v.reshape(v.shape[0], -1), r, method)
    return p.view(v.shape)


def project_l1_deviation(
    x: torch.Tensor, center: torch.Tensor, radius: float | torch.Tensor, *, method: str = "active-set"
) -> torch.Tensor:
    """Project ``x`` onto the l1 ball of radius ``r`` around ``center``, per sample.

    .. math::
        P(x) = c + P_{B_1(r)}(x - c),

    the feasible set ``ẑ_p ⊕ B1(r)`` of ILO's intermediate-layer step. Samples whose deviation
    is already within the radius are returned as ``x`` itself, bit for bit.

    Args:
        x: ``[B, ...]`` tensor.
        center: tensor of ``x``'s shape (or broadcastable to it, e.g. ``[1, ...]``).
        radius: a float or a tensor ``[B]`` of radii ``>= 0``.
        method: as in :func:`project_l1_ball`.

    Example:
        >>> c = torch.tensor([[1.0, 1.0]])
        >>> project_l1_deviation(torch.tensor([[4.0, 1.0]]), c, 1.0)
        tensor([[2., 1.]])
    """
    center = center.expand_as(x)
    d = (x - center).reshape(x.shape[0], -1)  # [B, d]
    r = _radii(radius, x.shape[0], x.device)
    p, outside = _project_rows(d, r, method)
    if not bool(outside.any()):
        return x.clone()
    moved = (center.reshape(x.shape[0], -1) + p).view(x.shape)
    keep = outside.view(-1, *([1] * (x.ndim - 1)))
    return torch.where(keep, moved, x)


class Constraint:
    """A feasible set with an in-place Euclidean projection ``project_(v)`` of ``v [B, ...]``."""

    def project_(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class L1Ball(Constraint):
    """``center + B1(radius)`` per sample: the feasible set of an ILO round.

    Args:
        center: ``[B, ...]`` (or broadcastable) centre of the ball.
        radius: a float or a tensor ``[B]`` of per-sample radii ``>= 0``.

    >>> v = torch.tensor([[4.0, 1.0]])
    >>> L1Ball(torch.tensor([[1.0, 1.0]]), 1.0).project_(v)
    tensor([[2., 1.]])
    """

    def __init__(self, center: torch.Tensor, radius: float | torch.Tensor):
        self.center, self.radius = center, radius

    def project_(self, v: torch.Tensor) -> torch.Tensor:
        return v.copy_(project_l1_deviation(v, self.center, self.radius))


class L2Ball(Constraint):
    """``||v_b||_2 <= radius`` for every sample ``b`` (samples inside are left unchanged).

    >>> L2Ball(1.0).project_(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """

    def __init__(self, radius: float):
        if not radius >= 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.radius = float(radius)

    def project_(self, v: torch.Tensor) -> torch.Tensor:
        norm = v.flatten(1).norm(dim=1).clamp_min(1e-12)
        return v.mul_((self.radius / norm).clamp(max=1.0).view(-1, *[1] * (v.ndim - 1)))


class Sphere(Constraint):
    """Every vector along the last dimension ``d`` rescaled to norm ``sqrt(d)`` (PULSE's sphere).

    >>> Sphere().project_(torch.tensor([[3.0, 4.0]]))
    tensor([[0.8485, 1.1314]])
    """

    def project_(self, v: torch.Tensor) -> torch.Tensor:
        d = v.shape[-1]
        return v.mul_(d**0.5 / v.norm(dim=-1, keepdim=True).clamp_min(1e-12))
