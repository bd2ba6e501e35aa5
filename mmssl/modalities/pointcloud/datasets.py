"""In-memory point-cloud datasets that the builders of :mod:`mmssl.modalities.pointcloud.data` return.

Items (all points centred and scaled into the unit sphere, per shape):

- pretraining (ACD pretext, Gadelha et al., ECCV 2020): ``{"points": float32 [N, 3], "normals": float32
  [N, 3], "acd": int64 [N] (convex component of each point, -1 when unknown), "index": int}`` (held in
  memory, or decoded as a shard set streams: :class:`ShapeItems`);
- part segmentation: ``{"points", "normals", "parts": int64 [N] (GLOBAL ShapeNetPart part ids),
  "category": int, "index": int}`` plus ``"input"`` (= points) and ``"label"`` (= category), so the
  generic kNN / linear / few-shot evaluators can also classify shapes. ``category`` indexes
  :attr:`~mmssl.modalities.pointcloud.taxonomy.PartTaxonomy.categories`; the datasets' ``targets`` list
  it per item without loading;
- two-view pretraining (``data.views: two_view``): the pretraining item plus ``"views": [v1, v2]``, two
  random views of the shape (:mod:`mmssl.modalities.pointcloud.views`) for SimCLR / MoCo / BYOL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.data.keys import INDEX, INPUT, LABEL, VIEWS
from mmssl.modalities.pointcloud.keys import ACD_LABELS, CATEGORY, NORMALS, PARTS, POINTS
from mmssl.modalities.pointcloud.shapenetpart import ShapeNetPart


def stack(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    """One tensor ``[S, ...]`` of ``dtype`` from per-shape arrays."""
    return torch.from_numpy(np.stack(arrays)).to(dtype)


class PointCloudPretrainDataset(Dataset):
    """In-memory pretraining items ``{"points", "normals", "acd", "index"}`` (see module docstring)."""

    def __init__(self, points: torch.Tensor, normals: torch.Tensor, acd: torch.Tensor) -> None:
        if not (len(points) == len(normals) == len(acd)):
            raise ValueError("points, normals and acd must have the same number of shapes")
        self.points, self.normals, self.acd = points, normals, acd

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            POINTS: self.points[index],
            NORMALS: self.normals[index],
            ACD_LABELS: self.acd[index],
            INDEX: index,
        }


class ShapeItems(Dataset):
    """Pretraining items of shapes decoded one at a time (``shapes[i] = {"points", "normals", "acd"}``: a
    mesh shard set's :class:`~mmssl.data.shards.ShardSamples`), with their ``index``: the items of
    :class:`PointCloudPretrainDataset`, for sets that are streamed rather than held in memory."""

    def __init__(self, shapes: Dataset) -> None:
        self.shapes = shapes

    def __len__(self) -> int:
        return len(self.shapes)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.shapes[index], INDEX: index}


class PointCloudViewsDataset(Dataset):
    """A pretraining set whose items also carry ``"views"``: ``views(cloud)`` of the shape's ``[N, 6]``
    points and normals (e.g. two :class:`~mmssl.modalities.pointcloud.views.PointCloudView` draws)."""

    def __init__(
        self, base: PointCloudPretrainDataset | ShapeItems, views: Callable[[torch.Tensor], list[Any]]
    ) -> None:
        self.base, self.views = base, views

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        return {**item, VIEWS: self.views(torch.cat([item[POINTS], item[NORMALS]], dim=-1))}


class PartSegDataset(Dataset):
    """In-memory part-segmentation items (see module docstring); ``targets``: category per item."""

    def __init__(
        self, points: torch.Tensor, normals: torch.Tensor, parts: torch.Tensor, categories: list[int]
    ) -> None:
        self.points, self.normals, self.parts = points, normals, parts
        self.targets: list[int] = list(categories)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        points, category = self.points[index], self.targets[index]
        return {
            POINTS: points,
            NORMALS: self.normals[index],
            PARTS: self.parts[index],
            CATEGORY: category,
            INDEX: index,
            INPUT: points,
            LABEL: category,
        }


class ShapeNetPartItems(Dataset):
    """A :class:`~mmssl.modalities.pointcloud.shapenetpart.ShapeNetPart` with the generic ``input`` /
    ``label`` keys added to its items."""

    def __init__(self, base: ShapeNetPart) -> None:
        self.base = base
        self.targets: list[int] = base.targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        return {**item, INPUT: item[POINTS], LABEL: item[CATEGORY]}
