"""PNG renders of labelled point clouds (matplotlib 3-D scatter, one colour per label).

Used for part-segmentation predictions next to the ground truth and for ACD components. The up
axis of the data (y for ShapeNet) is drawn vertically.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data.shards import ShardStream
from mmssl.figures import save_figure


def figure_items(dataset: Dataset | None, count: int = 4) -> list[dict[str, Any]]:
    """Up to ``count`` pretraining items to draw: spread over a map-style set (shapes are often stored
    category by category), the first ones of a streamed shard set (which cannot be read by index; the
    block read for them is let go)."""
    if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
        return []
    if isinstance(dataset, ShardStream):
        items = list(itertools.islice(iter(dataset), count))
        dataset.samples.hold({})
        return items
    n = len(dataset)  # type: ignore[arg-type]
    picks = torch.linspace(0, n - 1, min(count, n)).round().long().unique()
    return [dataset[int(i)] for i in picks]


def _colours(labels: Tensor):
    """RGBA per point from integer labels (tab10 cycled: consecutive part ids differ; < 0 in black)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    lab = labels.long().cpu()
    rgba = torch.tensor([cmap(i) for i in range(10)], dtype=torch.float32)[lab.clamp(min=0) % 10]
    rgba[lab < 0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return rgba.numpy()


def render_point_clouds(
    clouds: Sequence[Tensor],
    labels: Sequence[Tensor],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    up_axis: int = 1,
    point_size: float = 4.0,
) -> Path:
    """Save one 3-D scatter per ``(cloud [N, 3], labels [N])`` in a grid of ``ncols`` columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(clouds) != len(labels) or not clouds:
        raise ValueError(f"need as many label sets as clouds (>= 1), got {len(clouds)} and {len(labels)}")
    ncols = max(1, min(ncols, len(clouds)))
    nrows = -(-len(clouds) // ncols)
    fig = plt.figure(figsize=(3.2 * ncols, 3.2 * nrows))
    # Matplotlib's vertical axis is z: show (horizontal, depth, up) = the two other axes, then up.
    h, d = [axis for axis in range(3) if axis != up_axis]
    for i, (pts, lab) in enumerate(zip(clouds, labels)):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection="3d")
        p = pts.detach().float().cpu()
        ax.scatter(p[:, h], p[:, d], p[:, up_axis], c=_colours(lab), s=point_size, depthshade=False)
        lim = float(p[:, :3].abs().max()) or 1.0
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return save_figure(fig, path, dpi=90)


def render_part_predictions(
    points: Sequence[Tensor],
    predicted: Sequence[Tensor],
    true: Sequence[Tensor],
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    up_axis: int = 1,
) -> Path:
    """Each shape twice, side by side: ground-truth parts, then predicted parts (same colours)."""
    clouds, labels, titles = [], [], []
    for i, (pts, pred, gt) in enumerate(zip(points, predicted, true)):
        name = names[i] if names is not None else f"shape {i}"
        clouds += [pts, pts]
        labels += [gt, pred]
        titles += [f"{name}: true", f"{name}: predicted"]
    return render_point_clouds(clouds, labels, path, titles=titles, ncols=4, up_axis=up_axis)
