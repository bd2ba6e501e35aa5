"""Point groups as tokens (Point-MAE, Pang et al., ECCV 2022, Sec. 3.1) and their way back to the points.

A cloud of ``N`` points becomes ``G`` tokens: farthest point sampling picks ``G`` centres spread over the
shape, each centre's ``K`` nearest points form its group, and a group's points are written relative to
its centre (the token embedding then sees local shape only; where the group is comes from the centre,
through the positional embedding). Groups may overlap and need not cover every point.

:func:`interpolate_to_points` goes the other way, from per-centre features to per-point ones, by inverse
squared distance over the nearest centres: PointNet++'s feature propagation (Qi et al., NeurIPS 2017,
Sec. 3.4, eq. 2 with p = 2, k = 3; :func:`~mmssl.modalities.pointcloud.encoders.interpolate_features`,
which PointNet++'s decoder here uses too), as Point-MAE's segmentation head does.

Everything is ``torch.cdist`` / ``topk`` / gathers (the sampling and neighbour searches of
:mod:`mmssl.modalities.pointcloud.encoders`), so it runs unchanged on CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mmssl.modalities.pointcloud.encoders import (
    farthest_point_sample,
    gather_points,
    interpolate_features,
    knn_indices,
)


@dataclass
class PointGroups:
    """``G`` groups of ``K`` points per cloud.

    Attributes:
        centres: ``[B, G, 3]`` the farthest-point-sampled centres (points of the cloud).
        neighbourhoods: ``[B, G, K, 3]`` each group's points minus its centre, nearest first (so
            ``neighbourhoods[:, :, 0]`` is the centre itself, all zeros).
        centre_index: ``[B, G]`` indices of the centres in the cloud.
        index: ``[B, G, K]`` indices of each group's points in the cloud.
    """

    centres: Tensor
    neighbourhoods: Tensor
    centre_index: Tensor
    index: Tensor

    @property
    def num_groups(self) -> int:
        return self.centres.shape[1]

    @property
    def group_size(self) -> int:
        return self.neighbourhoods.shape[2]


def group_points(xyz: Tensor, num_groups: int, group_size: int) -> PointGroups:
    """Farthest-point-sampled centres of ``xyz [B, N, 3]`` and the ``group_size`` nearest points of each.

    The first centre is the point farthest from the centroid, then each next one the point farthest
    from those picked (:func:`~mmssl.modalities.pointcloud.encoders.farthest_point_sample`), so the
    grouping does not depend on the order of the points.
    """
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"group_points needs [B, N, 3] coordinates, got {tuple(xyz.shape)}")
    n = xyz.shape[1]
    if not 1 <= num_groups <= n or not 1 <= group_size <= n:
        raise ValueError(f"cannot make {num_groups} groups of {group_size} points from a cloud of {n}")
    centre_index = farthest_point_sample(xyz, num_groups)  # [B, G]
    centres = gather_points(xyz, centre_index)  # [B, G, 3]
    index = knn_indices(xyz, group_size, query=centres)  # [B, G, K], nearest first
    neighbourhoods = gather_points(xyz, index) - centres.unsqueeze(2)
    return PointGroups(centres, neighbourhoods, centre_index, index)


#: per-centre features to per-point ones (inverse squared distance over the 3 nearest centres)
interpolate_to_points = interpolate_features
