"""Colour science for colorization (Zhang et al., ECCV 2016): sRGB <-> CIE L*a*b*, ab bins, soft
encoding, class rebalancing and annealed-mean decoding. Everything is plain torch, differentiable
where it makes sense, on any device.

sRGB -> Lab (IEC 61966-2-1 sRGB, D65 white, CIE 1976 L*a*b*)::

    companding:  c_lin = c / 12.92                    if c <= 0.04045
                         ((c + 0.055) / 1.055)^2.4    otherwise
    XYZ = M c_lin,  M = [[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]]
    f(t) = t^(1/3)                    if t > (6/29)^3
           t / (3 (6/29)^2) + 4/29    otherwise
    L = 116 f(Y/Yn) - 16,   a = 500 (f(X/Xn) - f(Y/Yn)),   b = 200 (f(Y/Yn) - f(Z/Zn))

The white point ``(Xn, Yn, Zn)`` is ``M (1, 1, 1)``, i.e. D65 = (0.95047, 1.00000, 1.08883) to 1e-7,
so that sRGB white maps exactly to ``L = 100, a = b = 0``. Lab -> sRGB inverts each step
(``f^-1(t) = t^3`` above ``6/29``, else ``3 (6/29)^2 (t - 4/29)``; ``M^-1`` computed in float64).

Colorization pieces (Zhang et al. sec. 2):

- ab gamut bins: the ab plane is quantised on a grid of step 10 (bin centres at multiples of
  10); a bin is in gamut when some sRGB colour falls in its cell. :func:`ab_gamut_bins` computes
  this from the sRGB gamut itself: the ab projection of the sRGB solid in Lab is covered by the
  image of the RGB cube's surface, which is sampled densely (257 x 257 points per face; the count
  is stable from there on). With grid 10 this gives **262** bins; Zhang et al. report 313 bins,
  computed from their own gamut estimate (their file of points "in hull"), so the exact count
  depends on that choice, not on the method.
- soft encoding: the target distribution ``Z`` of a pixel puts weight on its 5 nearest bins,
  ``Z_q ∝ exp(-||ab - c_q||^2 / (2 sigma^2))``, sigma = 5, summing to 1.
- class rebalancing: ``w ∝ ((1 - lambda) p~ + lambda / Q)^-1``, lambda = 1/2, normalised so that
  ``E_{p~}[w] = sum_q p~_q w_q = 1``; ``p~`` is the empirical bin distribution smoothed with a
  Gaussian kernel (sigma = 5) in ab space.
- annealed mean: ``H(Z) = E[f_T(Z)]`` with ``f_T(z) = exp(log z / T) / sum_q exp(log z_q / T)``,
  T = 0.38: between the mean (T = 1, desaturated) and the mode (T -> 0, patchy).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD

SRGB_TO_XYZ: tuple[tuple[float, float, float], ...] = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_DELTA = 6.0 / 29.0
# Zhang et al.'s defaults.
AB_GRID = 10.0
SOFT_SIGMA = 5.0
SOFT_NEIGHBOURS = 5
REBALANCE_LAMBDA = 0.5
ANNEAL_TEMPERATURE = 0.38


def to_unit_rgb(
    images: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """Undo the data pipeline's normalisation: ``x std + mean`` per channel, clamped to [0, 1].

    ``images``: ``[..., 3, H, W]`` normalised with ``mean``/``std`` (ImageNet statistics by default).
    """
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(3, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(3, 1, 1)
    return (images * s + m).clamp(0.0, 1.0)


def _matrices(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(M, M^-1, white) for the sRGB primaries, on ``device`` in ``dtype`` (inverse taken in float64)."""
    m64 = torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)
    return (
        m64.to(device, dtype),
        torch.linalg.inv(m64).to(device, dtype),
        m64.sum(dim=1).to(device, dtype),
    )


def _apply_matrix(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` over the last dimension, as a broadcast sum: elementwise ops keep full precision
    under autocast, where a matmul would run in bf16."""
    return (x.unsqueeze(-2) * matrix).sum(dim=-1)


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """sRGB companding inverse (gamma expansion); input in [0, 1]."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: Tensor) -> Tensor:
    """sRGB companding (gamma compression); input in [0, 1]."""
    return torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def _f(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA**3, t.clamp_min(_DELTA**3) ** (1.0 / 3.0), t / (3 * _DELTA**2) + 4.0 / 29.0)


def _f_inv(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4.0 / 29.0))


def rgb_to_lab(rgb: Tensor, dim: int = -3) -> Tensor:
    """sRGB in [0, 1] (clamped) -> CIE Lab (L in [0, 100], a and b roughly in [-110, 110]).

    ``dim``: the channel dimension (``-3`` for ``[..., 3, H, W]`` images, ``-1`` for ``[..., 3]``).
    """
    x = rgb.movedim(dim, -1).clamp(0.0, 1.0)
    m, _, white = _matrices(x.device, x.dtype)
    xyz = _apply_matrix(m, srgb_to_linear(x)) / white
    fx, fy, fz = _f(xyz).unbind(-1)
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)
    return lab.movedim(-1, dim)


def lab_to_linear_rgb(lab: Tensor, dim: int = -3) -> Tensor:
    """CIE Lab -> linear-light RGB, unclamped (values outside [0, 1] mean out of the sRGB gamut)."""
    x = lab.movedim(dim, -1)
    _, m_inv, white = _matrices(x.device, x.dtype)
    lum, a, b = x.unbind(-1)
    fy = (lum + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=-1)
    return _apply_matrix(m_inv, _f_inv(f) * white).movedim(-1, dim)


def lab_to_rgb(lab: Tensor, dim: int = -3) -> Tensor:
    """CIE Lab -> sRGB in [0, 1]; out-of-gamut colours are clipped in linear light."""
    return linear_to_srgb(lab_to_linear_rgb(lab, dim).clamp(0.0, 1.0))


# ------------------------------------------------------------------------------ ab bins


def _rgb_cube_surface(points_per_side: int) -> Tensor:
    """Points on the six faces of the RGB unit cube, ``[6 n^2, 3]`` (float64)."""
    v = torch.linspace(0.0, 1.0, points_per_side, dtype=torch.float64)
    uv = torch.cartesian_prod(v, v)
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            p = torch.empty(len(uv), 3, dtype=torch.float64)
            p[:, axis] = value
            p[:, others] = uv
            faces.append(p)
    return torch.cat(faces)


@functools.lru_cache(maxsize=4)
def _gamut_bins(grid: float, points_per_side: int) -> Tensor:
    ab = rgb_to_lab(_rgb_cube_surface(points_per_side), dim=-1)[:, 1:]
    cells = torch.unique(torch.round(ab / grid).long(), dim=0)  # sorted by a, then b
    return cells.to(torch.float32) * grid


def ab_gamut_bins(grid: float = AB_GRID, points_per_side: int = 257) -> Tensor:
    """Centres ``[Q, 2]`` (a, b) of the grid cells that hold at least one sRGB colour.

    A cell is the square of side ``grid`` around a centre at a multiple of ``grid`` (a colour
    belongs to its nearest centre). See the module docstring for how the gamut is sampled; with
    the default grid of 10, Q = 262. Cached; a fresh copy is returned.
    """
    return _gamut_bins(float(grid), int(points_per_side)).clone()


def soft_encode(
    ab: Tensor, centers: Tensor, sigma: float = SOFT_SIGMA, num_neighbours: int = SOFT_NEIGHBOURS
) -> Tensor:
    """Soft-encode ab values ``[B, 2, H, W]`` over bins ``[Q, 2]`` -> ``[B, Q, H, W]``.

    Each pixel's distribution is non-zero on its ``num_neighbours`` nearest bin centres, with
    weights ``exp(-d^2 / (2 sigma^2))`` normalised to sum to 1 (Zhang et al. sec. 2.1).
    """
    b, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(flat, centers.to(flat)) ** 2  # [N, Q]
    near_d2, near_idx = d2.topk(num_neighbours, dim=1, largest=False)
    weights = torch.softmax(-near_d2 / (2.0 * sigma**2), dim=1)  # exp(-d^2/2s^2), normalised
    out = torch.zeros_like(d2).scatter_(1, near_idx, weights)
    return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def nearest_bin(ab: Tensor, centers: Tensor) -> Tensor:
    """Index of the nearest bin centre for ab values ``[B, 2, H, W]`` -> ``[B, H, W]`` (long)."""
    b, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    return torch.cdist(flat, centers.to(flat)).argmin(dim=1).reshape(b, h, w)


def smooth_distribution(probs: Tensor, centers: Tensor, sigma: float = SOFT_SIGMA) -> Tensor:
    """Smooth a distribution over bins with a Gaussian kernel in ab space, renormalised to sum 1:
    ``p~_q ∝ sum_r p_r exp(-||c_q - c_r||^2 / (2 sigma^2))``."""
    kernel = torch.exp(-(torch.cdist(centers, centers) ** 2) / (2.0 * sigma**2)).to(probs)
    smoothed = kernel @ probs
    return smoothed / smoothed.sum()


def rebalance_weights(prior: Tensor, lam: float = REBALANCE_LAMBDA) -> Tensor:
    """Class-rebalancing weights ``w ∝ ((1 - lam) p~ + lam / Q)^-1`` with ``sum_q p~_q w_q = 1``.

    ``prior``: the smoothed empirical bin distribution ``p~`` ``[Q]`` (sums to 1). With ``lam = 1``
    the weights are uniform (no rebalancing); with ``lam = 0`` rare bins get ``1 / p~``.
    """
    q = prior.numel()
    w = 1.0 / ((1.0 - lam) * prior + lam / q)
    return w / (prior * w).sum()


def annealed_mean(
    logits: Tensor, centers: Tensor, temperature: float = ANNEAL_TEMPERATURE, dim: int = 1
) -> Tensor:
    """Annealed-mean ab from bin logits: ``sum_q f_T(z)_q c_q`` along ``dim``.

    With ``z = softmax(logits)``, ``f_T(z) = exp(log z / T) / sum exp(log z / T)`` equals
    ``softmax(logits / T)`` (the log-partition cancels), which is how it is computed. The bin axis
    ``dim`` of ``[B, Q, H, W]`` logits is replaced by the 2 ab channels.
    """
    probs = torch.softmax(logits / temperature, dim=dim)
    return torch.tensordot(probs.movedim(dim, -1), centers.to(probs), dims=1).movedim(-1, dim)


def luminance_input(images: Tensor) -> Tensor:
    """Normalised RGB ``[B, 3, H, W]`` -> the network input ``(L - 50) / 50`` ``[B, 1, H, W]``
    (Zhang et al. centre L by subtracting 50; the scale keeps it near unit range)."""
    lum = rgb_to_lab(to_unit_rgb(images))[:, :1]
    return (lum - 50.0) / 50.0


__all__ = [
    "SRGB_TO_XYZ",
    "to_unit_rgb",
    "srgb_to_linear",
    "linear_to_srgb",
    "rgb_to_lab",
    "lab_to_linear_rgb",
    "lab_to_rgb",
    "ab_gamut_bins",
    "soft_encode",
    "nearest_bin",
    "smooth_distribution",
    "rebalance_weights",
    "annealed_mean",
    "luminance_input",
]
