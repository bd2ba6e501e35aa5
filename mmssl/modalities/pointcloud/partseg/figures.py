"""PNG renders of part-segmentation predictions next to the ground truth, for the evaluator's
``figures_dir``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from mmssl.modalities.pointcloud.partseg.model import PartSegmenter, predict_parts
from mmssl.modalities.pointcloud.partseg.splits import subset


def render_predictions(
    path: Path,
    model: PartSegmenter,
    test: Mapping[str, Tensor],
    mask: Tensor,
    names: list[str],
    num_renders: int,
    up_axis: int,
) -> None:
    """``num_renders`` test shapes (the first of each category first, then more in test order), true
    and predicted parts side by side, saved to ``path``."""
    from mmssl.modalities.pointcloud.render import render_part_predictions

    firsts = [int((test["category"] == c).nonzero()[0]) for c in torch.unique(test["category"])]
    rest = [i for i in range(len(test["category"])) if i not in firsts]
    idx = torch.tensor((firsts + rest)[:num_renders])
    shown = subset(test, idx)
    pred = predict_parts(model, shown, mask)
    labels = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in shown["category"]]
    render_part_predictions(
        list(shown["points"]), list(pred), list(shown["parts"]), path, names=labels, up_axis=up_axis
    )
