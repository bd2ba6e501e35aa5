"""Classical dense optical flow in torch (no OpenCV): pyramidal, iterative Lucas-Kanade.

It estimates, for a pair of grayscale images ``I1``, ``I2`` ``[B, 1, H, W]``, the forward flow
``w = (u, v)`` in pixels (channel 0 = x / columns, channel 1 = y / rows) such that
``I1(x) ~ I2(x + w(x))`` (brightness constancy). Lucas & Kanade (1981) solve, in a Gaussian
window around every pixel, the 2x2 normal equations of the linearised ``Ix du + Iy dv + It = 0``::

    [sum Ix Ix + eps, sum Ix Iy      ] [du]     [sum Ix It]
    [sum Ix Iy,       sum Iy Iy + eps] [dv] = - [sum Iy It]

``eps`` (Tikhonov) makes textureless windows (det ~ 0) return ~0 instead of noise. As in Bouguet's
pyramidal implementation (2001), the estimate runs coarse to fine on an image pyramid, and at each
level a few Gauss-Newton iterations re-linearise around the current flow by warping ``I2`` back
with it (``I2(x + w)``), so displacements of several pixels are recovered; at the coarse levels
the window spans whole objects, which also fills the interior of flat regions (aperture problem).
Everything is batched tensor arithmetic (all frame pairs of a batch at once).

(A Horn-Schunck variant was tried on translated textures and squares: it was less accurate for
multi-pixel shifts and ~5x slower on CPU, so it is not offered.)

:func:`chain_flows` turns consecutive frame-to-frame flows into dense point trajectories (each start
pixel followed through the flows, bilinearly sampled where it lands), as used by dense-trajectory
features (Wang et al. 2011) and by Walker et al.'s future forecasting targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mmssl.modalities.image.color import to_unit_rgb

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def to_gray(frames: Tensor, normalized: bool = True) -> Tensor:
    """RGB ``[..., 3, H, W]`` -> luma ``[..., 1, H, W]`` in [0, 1].

    ``normalized``: the input was normalised with ImageNet mean / std (the toolkit's clip format);
    it is mapped back to [0, 1] first.
    """
    x = to_unit_rgb(frames.float()) if normalized else frames.float()
    luma = torch.tensor(_LUMA, device=x.device).view(3, 1, 1)
    return (x * luma).sum(dim=-3, keepdim=True).clamp(0.0, 1.0)


def _gaussian_kernel1d(sigma: float, device: torch.device) -> Tensor:
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian filter of ``[B, C, H, W]`` with replicate padding (per channel)."""
    if sigma <= 0:
        return img
    k = _gaussian_kernel1d(sigma, img.device)
    r = k.numel() // 2
    c = img.shape[1]
    x = F.pad(img, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def image_gradients(img: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences ``(dI/dx, dI/dy)`` of ``[B, 1, H, W]`` (replicate border: one-sided there)."""
    x = F.pad(img, (1, 1, 1, 1), mode="replicate")
    ix = 0.5 * (x[..., 1:-1, 2:] - x[..., 1:-1, :-2])
    iy = 0.5 * (x[..., 2:, 1:-1] - x[..., :-2, 1:-1])
    return ix, iy


def pixel_grid(b: int, h: int, w: int, device: torch.device) -> Tensor:
    """``[B, 2, H, W]`` pixel coordinates (x, y) of every pixel centre."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys]).unsqueeze(0).expand(b, 2, h, w)


def sample_at(img: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample ``img`` ``[B, C, H, W]`` at pixel coordinates ``coords`` ``[B, 2, h, w]``
    (x, y); outside the image the border value is used."""
    h, w = img.shape[-2:]
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp(img: Tensor, flow: Tensor) -> Tensor:
    """Backward warp ``out(x) = img(x + flow(x))``; ``img`` ``[B, C, H, W]``, ``flow`` ``[B, 2, H, W]``."""
    b, _, h, w = flow.shape
    return sample_at(img, pixel_grid(b, h, w, flow.device) + flow)


def _pyramid(img: Tensor, levels: int, min_size: int) -> list[Tensor]:
    """Finest first; each level is blurred (sigma 1) and halved, while the short side stays >= min_size."""
    pyr = [img]
    for _ in range(levels - 1):
        h, w = pyr[-1].shape[-2:]
        if min(h, w) // 2 < min_size:
            break
        pyr.append(F.avg_pool2d(gaussian_blur(pyr[-1], 1.0), 2))
    return pyr


def _upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a flow field to the next finer level and rescale its vectors by the same factors.

    A coarse pixel is the average of a 2x2 block (``avg_pool2d``), so pixel centres map as
    ``x_fine = 2 x_coarse + 0.5``: the ``align_corners=False`` convention.
    """
    h, w = flow.shape[-2:]
    up = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return up * torch.tensor([size[1] / w, size[0] / h], device=flow.device).view(1, 2, 1, 1)


def _lk_level(
    i1: Tensor, i2: Tensor, flow: Tensor, sigma: float, iterations: int, eps: float, max_step: float
) -> Tensor:
    for _ in range(iterations):
        i2w = warp(i2, flow)
        # Gradients of the average of both images: symmetric, less biased than either one alone.
        ix, iy = image_gradients(0.5 * (i1 + i2w))
        it = i2w - i1
        prods = torch.cat([ix * ix, ix * iy, iy * iy, ix * it, iy * it], dim=1)
        sxx, sxy, syy, sxt, syt = gaussian_blur(prods, sigma).unbind(dim=1)
        sxx, syy = sxx + eps, syy + eps
        det = sxx * syy - sxy * sxy
        du = -(syy * sxt - sxy * syt) / det
        dv = -(sxx * syt - sxy * sxt) / det
        # The linearisation only holds near the current estimate: bound each Gauss-Newton step.
        step = torch.stack([du, dv], dim=1).clamp(-max_step, max_step)
        flow = flow + step
    return flow


def optical_flow(
    img1: Tensor,
    img2: Tensor,
    *,
    levels: int = 3,
    min_size: int = 8,
    window_sigma: float = 2.0,
    iterations: int = 5,
    eps: float = 1e-3,
    max_step: float = 1.0,
    presmooth: float = 0.8,
) -> Tensor:
    """Dense forward flow ``[B, 2, H, W]`` (pixels; x then y) from ``img1`` to ``img2``.

    Args:
        img1, img2: grayscale ``[B, 1, H, W]`` (or ``[B, H, W]``), intensities in [0, 1].
        levels: pyramid levels (coarsest side kept >= ``min_size``); each level doubles the
            displacement that can be recovered.
        window_sigma: standard deviation (pixels) of the Gaussian window of the normal equations.
        iterations: Gauss-Newton iterations (warp, solve, update) per level.
        eps: Tikhonov term added to the diagonal (intensity^2 units, images in [0, 1]).
        max_step: largest update per iteration (pixels) while the linearisation is trusted.
        presmooth: Gaussian sigma applied to both images first (derivatives of noise-free signals).
    """
    if img1.dim() == 3:
        img1, img2 = img1.unsqueeze(1), img2.unsqueeze(1)
    if img1.shape != img2.shape or img1.dim() != 4 or img1.shape[1] != 1:
        raise ValueError(
            f"optical_flow needs two [B, 1, H, W] images, got {tuple(img1.shape)}, {tuple(img2.shape)}"
        )
    with torch.autocast(device_type=img1.device.type, enabled=False):
        i1 = gaussian_blur(img1.float(), presmooth)
        i2 = gaussian_blur(img2.float(), presmooth)
        p1, p2 = _pyramid(i1, levels, min_size), _pyramid(i2, levels, min_size)
        b, _, h, w = p1[-1].shape
        flow = torch.zeros(b, 2, h, w, device=i1.device)
        for a, c in zip(reversed(p1), reversed(p2)):
            if flow.shape[-2:] != a.shape[-2:]:
                flow = _upsample_flow(flow, tuple(a.shape[-2:]))
            flow = _lk_level(a, c, flow, window_sigma, iterations, eps, max_step)
        return flow


def clip_flows(gray: Tensor, **flow_kwargs) -> Tensor:
    """Flows between consecutive frames of ``gray`` ``[B, T, 1, H, W]`` -> ``[B, T - 1, 2, H, W]``
    (all T - 1 pairs of the batch in one batched call)."""
    b, t = gray.shape[:2]
    if t < 2:
        raise ValueError(f"clip_flows needs at least 2 frames, got {t}")
    first = gray[:, :-1].reshape(b * (t - 1), *gray.shape[2:])
    second = gray[:, 1:].reshape(b * (t - 1), *gray.shape[2:])
    return optical_flow(first, second, **flow_kwargs).view(b, t - 1, 2, *gray.shape[-2:])


def chain_flows(flows: Tensor) -> Tensor:
    """Dense trajectories from consecutive flows ``[B, K, 2, H, W]``: ``[B, K, 2, H, W]`` where
    entry ``k`` is the displacement ``p_{k+1} - p_0`` of the point that started at each pixel ``p_0``.

    ``p_{k+1} = p_k + flow_k(p_k)`` with ``flow_k`` sampled bilinearly at the (sub-pixel) ``p_k``:
    points are followed, not the pixel grid (a moving object carries its points along).
    """
    b, k, _, h, w = flows.shape
    start = pixel_grid(b, h, w, flows.device)
    pos = start
    out = []
    for i in range(k):
        pos = pos + sample_at(flows[:, i], pos)
        out.append(pos - start)
    return torch.stack(out, dim=1)
