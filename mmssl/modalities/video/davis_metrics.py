"""DAVIS video-object-segmentation measures (Perazzi et al., CVPR 2016; Pont-Tuset et al., 2017).

- **J, region similarity**: the Jaccard index ``|P ∩ G| / |P ∪ G|`` of a predicted and a ground-truth
  object mask; ``1`` when both are empty (the official code's convention).
- **F, contour accuracy**: boundary maps of both masks (1-px boundaries, see :func:`boundary_map`);
  a predicted boundary pixel is a hit when a ground-truth boundary pixel lies within a disk of radius
  ``ceil(bound_th * ||(H, W)||)`` (``bound_th = 0.008``: 8 px at 480x854), and vice versa;
  ``precision = hits(P) / |∂P|``, ``recall = hits(G) / |∂G|``, ``F = 2 P R / (P + R)``. Degenerate
  cases follow the official code: both boundaries empty -> P = R = 1; only the prediction's empty ->
  P = 1, R = 0; only the ground truth's empty -> P = 0, R = 1.
- Pixels labelled 255 in the ground truth are void: ignored by both measures.
- Semi-supervised protocol: the first frame (given) and the last frame are not scored; each object's
  J and F are averaged over the scored frames (``mean``), ``recall`` is the fraction of frames above
  0.5; dataset figures average over all objects of all sequences and ``J&F = (J + F) / 2``.

Written in torch (batched over frames, any device); checked against hand-computed values in
``tests/video/test_davis_metrics.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

BOUND_TH = 0.008
VOID_LABEL = 255


def region_similarity(pred: Tensor, gt: Tensor, void: Tensor | None = None) -> Tensor:
    """J for binary masks ``[..., H, W]`` -> ``[...]`` (float64); 1 where both masks are empty."""
    pred, gt = pred.bool(), gt.bool()
    valid = ~void.bool() if void is not None else torch.ones_like(gt)
    inter = (pred & gt & valid).sum(dim=(-2, -1)).double()
    union = ((pred | gt) & valid).sum(dim=(-2, -1)).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def boundary_map(seg: Tensor) -> Tensor:
    """1-px boundary of binary masks ``[..., H, W]``, as DAVIS's ``_seg2bmap``.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour (so
    boundaries sit half a pixel towards the origin); in the last row only the east neighbour and in
    the last column only the south neighbour count, so the image border itself is no boundary.
    """
    seg = seg.bool()
    east = torch.zeros_like(seg)
    south = torch.zeros_like(seg)
    south_east = torch.zeros_like(seg)
    east[..., :, :-1] = seg[..., :, 1:]
    south[..., :-1, :] = seg[..., 1:, :]
    south_east[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[..., -1, :] = seg[..., -1, :] ^ east[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ south[..., :, -1]
    b[..., -1, -1] = False
    return b


def disk(radius: int) -> Tensor:
    """Boolean ``[2r+1, 2r+1]`` disk: offsets with ``dy² + dx² <= r²`` (skimage's ``disk``)."""
    r = int(radius)
    offsets = torch.arange(-r, r + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= r * r


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``[..., H, W]`` masks by :func:`disk` ``(radius)`` (zero outside the image)."""
    if radius <= 0:
        return mask.bool()
    shape = mask.shape
    x = mask.reshape(-1, 1, *shape[-2:]).float()
    kernel = disk(radius).float().to(x.device)[None, None]
    return (F.conv2d(x, kernel, padding=int(radius)) > 0.5).reshape(shape)


def bound_pixels(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Tolerance radius in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``."""
    return int(bound_th) if bound_th >= 1 else int(math.ceil(bound_th * math.hypot(height, width)))


def boundary_precision_recall(
    pred: Tensor, gt: Tensor, void: Tensor | None = None, bound_th: float = BOUND_TH
) -> tuple[Tensor, Tensor]:
    """Boundary precision and recall of binary masks ``[..., H, W]`` -> two ``[...]`` float64 tensors."""
    pred, gt = pred.bool(), gt.bool()
    if void is not None:
        pred, gt = pred & ~void.bool(), gt & ~void.bool()
    radius = bound_pixels(gt.shape[-2], gt.shape[-1], bound_th)
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    pred_hits = (pred_b & dilate(gt_b, radius)).sum(dim=(-2, -1)).double()
    gt_hits = (gt_b & dilate(pred_b, radius)).sum(dim=(-2, -1)).double()
    n_pred = pred_b.sum(dim=(-2, -1)).double()
    n_gt = gt_b.sum(dim=(-2, -1)).double()
    precision = torch.where(n_pred > 0, pred_hits / n_pred.clamp_min(1), torch.ones_like(n_pred))
    recall = torch.where(n_gt > 0, gt_hits / n_gt.clamp_min(1), torch.ones_like(n_gt))
    # Only the ground truth has no boundary: the official code gives P = 0, R = 1.
    precision = torch.where((n_pred > 0) & (n_gt == 0), torch.zeros_like(precision), precision)
    return precision, recall


def boundary_f_measure(
    pred: Tensor, gt: Tensor, void: Tensor | None = None, bound_th: float = BOUND_TH
) -> Tensor:
    """F for binary masks ``[..., H, W]`` -> ``[...]`` float64 (0 when P + R = 0)."""
    p, r = boundary_precision_recall(pred, gt, void, bound_th)
    denom = p + r
    return torch.where(denom > 0, 2 * p * r / denom.clamp_min(1e-12), torch.zeros_like(denom))


@dataclass
class SequenceScores:
    """Per-object, per-scored-frame J and F of one sequence (``[K, T']`` each, float64)."""

    name: str
    j: Tensor
    f: Tensor
    frames: list[int] = field(default_factory=list)

    def object_means(self) -> tuple[Tensor, Tensor]:
        return self.j.mean(dim=1), self.f.mean(dim=1)


def evaluate_sequence(
    pred: Tensor,
    gt: Tensor,
    num_objects: int | None = None,
    *,
    name: str = "",
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> SequenceScores:
    """Score predicted label maps ``[T, H, W]`` (0 = background, 1..K objects) against ground truth.

    Objects are ``1..num_objects`` (default: the largest id in ``gt`` other than void). Frames whose
    ground truth is all negative (not annotated) are left out, as are the first and the last frame
    with ``skip_first_last`` (the semi-supervised protocol). An object absent from both masks of a
    frame scores J = F = 1 there.
    """
    if pred.shape != gt.shape or pred.dim() != 3:
        raise ValueError(f"pred and gt must both be [T, H, W], got {tuple(pred.shape)} and {tuple(gt.shape)}")
    t = gt.shape[0]
    frames = list(range(1, t - 1)) if skip_first_last and t > 2 else list(range(t))
    frames = [i for i in frames if bool((gt[i] >= 0).any())]
    if num_objects is None:
        ids = gt[(gt > 0) & (gt != VOID_LABEL)]
        num_objects = int(ids.max()) if ids.numel() else 0
    if not frames or num_objects == 0:
        empty = torch.zeros(num_objects, 0, dtype=torch.float64)
        return SequenceScores(name, empty, empty.clone(), frames)
    g, p = gt[frames], pred[frames]
    void = g == VOID_LABEL
    objects = torch.arange(1, num_objects + 1, device=g.device).view(-1, 1, 1, 1)
    g_obj, p_obj = g.unsqueeze(0) == objects, p.unsqueeze(0) == objects  # [K, T', H, W]
    void_k = void.unsqueeze(0).expand_as(g_obj)
    j = region_similarity(p_obj, g_obj, void_k).cpu()
    f = boundary_f_measure(p_obj, g_obj, void_k, bound_th).cpu()
    return SequenceScores(name, j, f, frames)


def summarize(scores: list[SequenceScores]) -> dict[str, float]:
    """Dataset figures over all objects of all sequences: ``jf_mean``, ``j_mean``, ``f_mean`` (means of
    per-object means) and ``j_recall``, ``f_recall`` (per-object fraction of frames above 0.5, averaged)."""
    j_means, f_means, j_rec, f_rec = [], [], [], []
    for s in scores:
        if s.j.shape[1] == 0:
            continue
        j_means.append(s.j.mean(dim=1))
        f_means.append(s.f.mean(dim=1))
        j_rec.append((s.j > 0.5).double().mean(dim=1))
        f_rec.append((s.f > 0.5).double().mean(dim=1))
    if not j_means:
        raise ValueError("no scored frames: every sequence was too short or had no objects")
    j_mean = float(torch.cat(j_means).mean())
    f_mean = float(torch.cat(f_means).mean())
    return {
        "jf_mean": (j_mean + f_mean) / 2,
        "j_mean": j_mean,
        "f_mean": f_mean,
        "j_recall": float(torch.cat(j_rec).mean()),
        "f_recall": float(torch.cat(f_rec).mean()),
    }


__all__ = [
    "BOUND_TH",
    "VOID_LABEL",
    "SequenceScores",
    "bound_pixels",
    "boundary_f_measure",
    "boundary_map",
    "boundary_precision_recall",
    "dilate",
    "disk",
    "evaluate_sequence",
    "region_similarity",
    "summarize",
]
