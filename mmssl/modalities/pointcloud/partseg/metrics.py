"""Part-segmentation scores (the ShapeNetPart protocol; Qi et al., PointNet++, 2017, followed by Gadelha
et al., ECCV 2020): category-restricted argmax, per-shape IoU with the absent-part rule, class and
instance mIoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def category_part_mask(parts_per_category: Mapping[int, Sequence[int]], num_parts: int) -> Tensor:
    """``[num_categories, num_parts]`` bool: which global part ids belong to each category."""
    num_categories = max(int(c) for c in parts_per_category) + 1
    mask = torch.zeros(num_categories, num_parts, dtype=torch.bool)
    for cat, parts in parts_per_category.items():
        mask[int(cat), list(parts)] = True
    return mask


def restricted_argmax(logits: Tensor, categories: Tensor, mask: Tensor) -> Tensor:
    """Per-point argmax of ``logits [B, N, P]`` over the parts of each shape's category only."""
    allowed = mask.to(logits.device)[categories.long()].unsqueeze(1)  # [B, 1, P]
    return logits.float().masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def shape_iou(pred: Tensor, target: Tensor, parts: Sequence[int]) -> float:
    """Mean IoU of one shape over ``parts`` (its category's part ids); absent-in-both parts count 1."""
    ious = []
    for part in parts:
        p, t = pred == part, target == part
        union = (p | t).sum().item()
        ious.append(1.0 if union == 0 else (p & t).sum().item() / union)
    return sum(ious) / len(ious)


def miou_summary(ious: Tensor, categories: Tensor) -> dict[str, float]:
    """``instance_miou`` (mean over shapes) and ``class_miou`` (mean over categories present of
    their shapes' mean) from per-shape IoUs."""
    ious, categories = ious.double(), categories.long()
    per_class = [ious[categories == c].mean() for c in torch.unique(categories)]
    return {"class_miou": torch.stack(per_class).mean().item(), "instance_miou": ious.mean().item()}


def segmentation_scores(
    pred: Tensor, split: Mapping[str, Tensor], parts_per_category: Mapping[int, Sequence[int]]
) -> tuple[Tensor, dict[str, float]]:
    """Per-shape IoUs ``[S]`` and their class / instance averages."""
    cats = split["category"]
    ious = torch.tensor(
        [shape_iou(pred[i], split["parts"][i], parts_per_category[int(cats[i])]) for i in range(len(cats))]
    )
    return ious, miou_summary(ious, cats)
