"""Label propagation by feature affinity: the DAVIS protocol of Jabri et al. (2020, Sec. 4.1), also used
by Wang et al. (2019) and Lai et al. (2020) to test correspondence features without any fine-tuning.

Given L2-normalised feature maps ``f_t [C, h, w]`` of every frame and the first frame's labels
``y_0 [K+1, h, w]`` (one-hot, area-downsampled to the feature grid), each later frame ``t`` gets

    context  c(t) = {0} ∪ {max(1, t - n_context), ..., t - 1}      (first frame + recent frames)
    A[q, k]  = <f_t[q], f_s[k]>  for every cell q of frame t and every cell k of every s in c(t),
               with A = -inf where s is a recent frame and cell k lies farther than ``radius``
               feature cells from q (Euclidean; the first frame is not restricted)
    y_t[q]   = sum over the top-k keys k of softmax_k(A[q, k] / temperature) y_s[k]

and the soft prediction ``y_t`` joins the context of later frames (predictions feed back). The
predicted label maps are upsampled bilinearly to the frame size and arg-maxed.

Difference from the reference code (``ajabri/videowalk`` ``test.py``), deliberate: frames before
``n_context`` see only the frames that exist, where the reference pads the video with copies of the
first frame (which counts the first frame's nodes several times in the top-k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def labels_to_onehot(mask: Tensor, num_classes: int) -> Tensor:
    """Integer label map ``[H, W]`` (0..K; other values, e.g. 255 void, count as background)
    -> float one-hot ``[K+1, H, W]``."""
    m = mask.long().clone()
    m[(m < 0) | (m >= num_classes)] = 0
    return F.one_hot(m, num_classes).permute(2, 0, 1).float()


def downsample_labels(onehot: Tensor, size: tuple[int, int]) -> Tensor:
    """``[K+1, H, W]`` -> ``[K+1, h, w]`` label distributions (area averaging keeps small objects
    as fractional mass instead of dropping them as nearest-neighbour sampling would)."""
    return F.interpolate(onehot[None], size=size, mode="area")[0]


def radius_mask(h: int, w: int, radius: float, device: torch.device | None = None) -> Tensor:
    """``[h*w, h*w]`` boolean: True where two cells (row-major) lie within ``radius`` cells (Euclidean)."""
    rows = torch.arange(h, device=device).repeat_interleave(w).float()
    cols = torch.arange(w, device=device).repeat(h).float()
    d2 = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return d2 <= float(radius) ** 2


def context_frames(t: int, n_context: int) -> list[int]:
    """Indices of the frames frame ``t`` reads its labels from: 0, then the ``n_context`` previous."""
    recent = list(range(max(1, t - n_context), t))
    return [0] + recent


@torch.no_grad()
def propagate_labels(
    feats: Tensor,
    first_labels: Tensor,
    *,
    n_context: int = 20,
    topk: int = 10,
    radius: float | None = 12.0,
    temperature: float = 0.05,
    query_chunk: int = 512,
) -> Tensor:
    """Propagate ``first_labels [K+1, h, w]`` through a video's features ``feats [T, C, h, w]``.

    ``feats`` should already be L2-normalised over C (affinities are then cosine similarities).
    Returns soft label maps ``[T, K+1, h, w]``; frame 0 is ``first_labels``. ``radius`` None or
    <= 0 disables the spatial restriction. ``query_chunk`` bounds memory (query cells per block).
    """
    if feats.dim() != 4 or first_labels.dim() != 3 or feats.shape[-2:] != first_labels.shape[-2:]:
        raise ValueError(
            f"feats must be [T, C, h, w] and first_labels [K+1, h, w] on the same grid, got "
            f"{tuple(feats.shape)} and {tuple(first_labels.shape)}"
        )
    t_len, c, h, w = feats.shape
    n = h * w
    keys_all = feats.flatten(2).transpose(1, 2).float()  # [T, N, C]
    labels = torch.zeros(t_len, first_labels.shape[0], n, device=feats.device)
    labels[0] = first_labels.flatten(1).float()
    near = radius_mask(h, w, radius, feats.device) if radius is not None and radius > 0 else None
    for t in range(1, t_len):
        ctx = context_frames(t, n_context)
        keys = keys_all[ctx]  # [M, N, C]
        ctx_labels = labels[ctx].transpose(0, 1).flatten(1)  # [K+1, M*N]
        k = min(topk, len(ctx) * n)
        for q0 in range(0, n, query_chunk):
            q = keys_all[t, q0 : q0 + query_chunk]  # [Q, C]
            aff = torch.einsum("qc,mnc->qmn", q, keys)  # [Q, M, N]
            if near is not None and len(ctx) > 1:
                # Recent frames only: objects move little between neighbouring frames, while the
                # first frame may be far in time and keeps its full field of view.
                far = ~near[q0 : q0 + query_chunk]  # [Q, N]
                aff[:, 1:] = aff[:, 1:].masked_fill(far[:, None, :], float("-inf"))
            weights, idx = aff.flatten(1).topk(k, dim=1)  # [Q, k]
            weights = torch.softmax(weights / temperature, dim=1)
            # labels of the chosen keys: [K+1, Q, k] -> weighted sum over k
            picked = ctx_labels[:, idx]
            labels[t, :, q0 : q0 + query_chunk] = (picked * weights[None]).sum(dim=-1)
    return labels.reshape(t_len, -1, h, w)


def labels_to_masks(soft: Tensor, size: tuple[int, int]) -> Tensor:
    """Soft label maps ``[T, K+1, h, w]`` -> integer masks ``[T, H, W]`` (bilinear upsampling, argmax)."""
    up = F.interpolate(soft, size=size, mode="bilinear", align_corners=False)
    return up.argmax(dim=1)


__all__ = [
    "context_frames",
    "downsample_labels",
    "labels_to_masks",
    "labels_to_onehot",
    "propagate_labels",
    "radius_mask",
]
