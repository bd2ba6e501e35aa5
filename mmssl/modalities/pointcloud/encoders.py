"""Point-cloud backbones with per-point embeddings, registered in ``ENCODERS`` (``modality="pointcloud"``).

Contract: ``forward(x)`` takes ``[B, N, C]`` with ``C = in_channels`` (3: xyz; 6: xyz + normals) and
returns ``{"tokens": [B, N, out_dim], "global": [B, out_dim]}``: one embedding per input point, in
input order, and their max-pool over the points. Permuting the input points permutes the tokens
the same way (up to exact distance ties in the neighbour searches).

- ``dgcnn``: Dynamic Graph CNN (Wang et al., TOG 2019), segmentation trunk as used by the ACD paper
  (Gadelha et al., ECCV 2020): EdgeConv layers on k-NN graphs recomputed in feature space, a global
  max-pool concatenated back to every point, then a per-point MLP.
- ``pointnet2``: PointNet++ (Qi et al., NeurIPS 2017), single-scale part-segmentation variant:
  set abstraction (farthest point sampling, ball query, shared MLP, max-pool) then feature
  propagation (inverse-distance interpolation + unit PointNet) back to every input point.

Everything is plain PyTorch (``torch.cdist`` / ``topk`` / gathers), so it runs on CPU and GPU alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------- neighbourhoods


def knn_indices(x: Tensor, k: int, query: Tensor | None = None) -> Tensor:
    """Indices ``[B, M, k]`` of the ``k`` nearest points of ``x [B, N, C]`` (Euclidean), nearest first.

    ``query [B, M, C]`` defaults to ``x`` itself, in which case every point is its own nearest
    neighbour (distance 0), as in DGCNN.
    """
    if k > x.shape[1]:
        raise ValueError(f"k={k} neighbours requested but the cloud has only {x.shape[1]} points")
    query = x if query is None else query
    dist = torch.cdist(query.float(), x.float())  # [B, M, N]
    return dist.topk(k, dim=-1, largest=False, sorted=True).indices


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, N, C]`` indexed per batch by ``idx [B, ...]`` -> ``[B, ..., C]``."""
    b, n, c = x.shape
    offset = torch.arange(b, device=x.device).view(b, *([1] * (idx.dim() - 1))) * n
    return x.reshape(b * n, c)[(idx + offset).reshape(-1)].reshape(*idx.shape, c)


def interpolate_features(points: Tensor, centres: Tensor, features: Tensor, k: int = 3) -> Tensor:
    """Features ``[B, N, C]`` at ``points [B, N, 3]`` from ``features [B, G, C]`` at ``centres [B, G, 3]``:
    ``f(x) = sum_i w_i f_i / sum_i w_i`` over the ``k`` nearest centres, ``w_i = 1 / (|x - c_i|^2 + 1e-8)``
    (PointNet++'s feature propagation, Qi et al. 2017, eq. 2 with p = 2). A point on a centre takes
    (almost exactly) that centre's feature."""
    k = min(k, centres.shape[1])
    dist = torch.cdist(points.float(), centres.float())  # [B, N, G]
    d, idx = dist.topk(k, dim=-1, largest=False)
    w = 1.0 / (d.square() + 1e-8)
    w = w / w.sum(dim=-1, keepdim=True)
    return (gather_points(features, idx) * w.unsqueeze(-1)).sum(dim=2)


class PointLayer(nn.Module):
    """Shared per-point ``Linear -> BatchNorm -> LeakyReLU(0.2)`` on ``[..., C]`` (a 1x1 convolution).

    BatchNorm statistics span every leading position (all points / edges of the batch).
    """

    def __init__(self, in_dim: int, out_dim: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)  # BN's shift makes a bias redundant
        self.bn = nn.BatchNorm1d(out_dim)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = self.bn(self.linear(x).reshape(-1, self.linear.out_features))
        return F.leaky_relu(y, self.negative_slope).reshape(*lead, -1)


# ------------------------------------------------------------------------------------- DGCNN


class EdgeConv(nn.Module):
    """EdgeConv (Wang et al. 2019, eq. 8) with a one-layer edge function::

        h_i = max_{j in kNN(i)} LeakyReLU(BN(Theta (x_j - x_i) + Phi x_i))

    i.e. a 1x1 convolution on the edge feature ``[x_j - x_i, x_i]`` followed by a max over the
    neighbours. The linear part is split as ``Theta x_j + (Phi - Theta) x_i`` so each point is
    projected once and only the projected ``out_dim`` features are gathered over the ``k``
    neighbours: O(N C_in C_out + N k C_out) work instead of O(N k C_in C_out), with the same result.
    """

    def __init__(self, in_dim: int, out_dim: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.theta = nn.Linear(in_dim, out_dim, bias=False)  # acts on x_j - x_i
        self.phi = nn.Linear(in_dim, out_dim, bias=False)  # acts on x_i
        self.bn = nn.BatchNorm1d(out_dim)
        self.out_dim = out_dim
        self.negative_slope = negative_slope

    def forward(self, x: Tensor, idx: Tensor) -> Tensor:
        """``x [B, N, C_in]``, neighbour indices ``idx [B, N, k]`` -> ``[B, N, C_out]``."""
        neighbour = self.theta(x)  # Theta x_j, computed once per point
        centre = self.phi(x) - neighbour  # (Phi - Theta) x_i
        edges = gather_points(neighbour, idx) + centre.unsqueeze(2)  # [B, N, k, C_out]
        b, n, k, c = edges.shape
        edges = F.leaky_relu(self.bn(edges.reshape(-1, c)), self.negative_slope)
        return edges.reshape(b, n, k, c).amax(dim=2)


class DGCNN(nn.Module):
    """DGCNN segmentation trunk (the ACD paper's ``dgcnn_seg``), widths configurable for CPU; registered
    as ``dgcnn`` (the class is its own builder). ``out_dim`` = ``point_dims[-1]``.

    ``x [B, N, in_channels]`` -> EdgeConv x ``len(edge_dims)``, each on the k-NN graph of its own
    input (xyz for the first layer, then the previous layer's features: the graph is dynamic);
    ``PointLayer(sum(edge_dims) -> global_dim)`` max-pooled over the points into a shape code that
    is concatenated back to every point's edge features; per-point MLP ``point_dims`` (dropout
    between layers) -> tokens ``[B, N, point_dims[-1]]``. The paper's sizes are ``k=20``,
    ``edge_dims=(64, 64, 64)``, ``global_dim=1024``, ``point_dims=(256, 256, 128)``, dropout 0.5;
    the ACD loss is applied to the 128-d tokens.

    Options: ``in_channels``: 3 (xyz) or 6 (xyz + normals). ``k``: neighbours per point in every
    EdgeConv. ``edge_dims``: widths of the EdgeConv layers. ``global_dim``: width of the max-pooled
    shape code. ``point_dims``: per-point MLP after the shape code is concatenated back. ``dropout``:
    between the per-point layers (the paper: 0.5). Defaults are the paper's; CPU recipes shrink them.
    """

    def __init__(
        self,
        in_channels: int = 3,
        k: int = 20,
        edge_dims: Sequence[int] = (64, 64, 64),
        global_dim: int = 1024,
        point_dims: Sequence[int] = (256, 256, 128),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        edge_dims, point_dims = tuple(edge_dims), tuple(point_dims)  # recipes give lists
        if in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (xyz first), got {in_channels}")
        if not edge_dims or not point_dims:
            raise ValueError("dgcnn needs at least one EdgeConv layer and one point layer")
        self.in_channels = in_channels
        self.k = k
        dims = [in_channels, *edge_dims]
        self.edge_convs = nn.ModuleList(EdgeConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.global_layer = PointLayer(sum(edge_dims), global_dim)
        layers: list[nn.Module] = []
        dim = global_dim + sum(edge_dims)
        for i, width in enumerate(point_dims):
            layers.append(PointLayer(dim, width))
            if i < len(point_dims) - 1 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = width
        self.point_mlp = nn.Sequential(*layers)
        self.out_dim: int = int(point_dims[-1])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"dgcnn expects [B, N, {self.in_channels}] points, got {tuple(x.shape)}")
        k = min(self.k, x.shape[1])
        feats, h = [], x
        for i, conv in enumerate(self.edge_convs):
            # The first graph joins spatial neighbours (xyz only, not normals); later graphs are
            # built in feature space, so they link semantically similar, possibly distant, points.
            idx = knn_indices(h[..., :3] if i == 0 else h, k)
            h = conv(h, idx)
            feats.append(h)
        local = torch.cat(feats, dim=-1)  # [B, N, sum(edge_dims)]
        shape_code = self.global_layer(local).amax(dim=1, keepdim=True)  # [B, 1, global_dim]
        tokens = self.point_mlp(torch.cat([shape_code.expand(-1, x.shape[1], -1), local], dim=-1))
        return {"global": tokens.amax(dim=1), "tokens": tokens}


#: the registered ``dgcnn`` builder: the class itself (its options are its constructor's)
dgcnn = DGCNN


# -------------------------------------------------------------------------------- PointNet++


def farthest_point_sample(xyz: Tensor, m: int) -> Tensor:
    """Indices ``[B, m]`` of ``m`` points chosen by farthest point sampling.

    The first point is the one farthest from the centroid (rather than a random or the first
    index), so the selection does not depend on the order of the input points.
    """
    b, n, _ = xyz.shape
    if m > n:
        raise ValueError(f"cannot sample {m} points from a cloud of {n}")
    xyz = xyz.float()
    picked = torch.empty(b, m, dtype=torch.long, device=xyz.device)
    nearest = torch.full((b, n), float("inf"), device=xyz.device)
    current = (xyz - xyz.mean(dim=1, keepdim=True)).square().sum(-1).argmax(dim=1)
    rows = torch.arange(b, device=xyz.device)
    for i in range(m):
        picked[:, i] = current
        d = (xyz - xyz[rows, current].unsqueeze(1)).square().sum(-1)
        nearest = torch.minimum(nearest, d)
        current = nearest.argmax(dim=1)
    return picked


def ball_query(xyz: Tensor, centres: Tensor, radius: float, num_samples: int) -> Tensor:
    """Indices ``[B, M, num_samples]`` of up to ``num_samples`` points within ``radius`` of each centre.

    The nearest ones are taken (not the first by index, as the CUDA reference does: this keeps the
    result independent of point order); when fewer lie in the ball, the nearest one is repeated.
    Centres are points of ``xyz``, so every ball holds at least its centre.
    """
    k = min(num_samples, xyz.shape[1])
    dist = torch.cdist(centres.float(), xyz.float())
    d, idx = dist.topk(k, dim=-1, largest=False, sorted=True)
    return torch.where(d <= radius, idx, idx[..., :1].expand_as(idx))


class SetAbstraction(nn.Module):
    """Sample ``num_centres`` centres (FPS), group ``num_samples`` neighbours within ``radius``,
    run a shared MLP on ``[x_j - c, f_j]`` and max-pool per group (PointNet++ Sec. 3.2).
    ``num_centres=None`` groups the whole cloud around the origin (the last, global level)."""

    def __init__(
        self, num_centres: int | None, radius: float, num_samples: int, in_dim: int, dims: Sequence[int]
    ) -> None:
        super().__init__()
        self.num_centres, self.radius, self.num_samples = num_centres, radius, num_samples
        layers, dim = [], in_dim + 3
        for width in dims:
            layers.append(PointLayer(dim, width, negative_slope=0.0))  # ReLU, as PointNet++
            dim = width
        self.mlp = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, xyz: Tensor, feats: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.num_centres is None:
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz.unsqueeze(1)  # [B, 1, N, 3]
            parts = [grouped] + ([feats.unsqueeze(1)] if feats is not None else [])
        else:
            centres = gather_points(xyz, farthest_point_sample(xyz, min(self.num_centres, xyz.shape[1])))
            idx = ball_query(xyz, centres, self.radius, self.num_samples)  # [B, M, S]
            grouped = gather_points(xyz, idx) - centres.unsqueeze(2)  # local coordinates
            parts = [grouped] + ([gather_points(feats, idx)] if feats is not None else [])
        return centres, self.mlp(torch.cat(parts, dim=-1)).amax(dim=2)


class FeaturePropagation(nn.Module):
    """Interpolate coarse features to fine points by inverse squared distance over the 3 nearest
    coarse points, concatenate the fine level's own features, shared MLP (PointNet++ Sec. 3.4)."""

    def __init__(self, in_dim: int, dims: Sequence[int]) -> None:
        super().__init__()
        layers, dim = [], in_dim
        for width in dims:
            layers.append(PointLayer(dim, width, negative_slope=0.0))
            dim = width
        self.mlp = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, fine_xyz: Tensor, coarse_xyz: Tensor, fine: Tensor | None, coarse: Tensor) -> Tensor:
        if coarse_xyz.shape[1] == 1:
            interpolated = coarse.expand(-1, fine_xyz.shape[1], -1)
        else:
            interpolated = interpolate_features(fine_xyz, coarse_xyz, coarse, k=3)
        parts = [interpolated] + ([fine] if fine is not None else [])
        return self.mlp(torch.cat(parts, dim=-1))


class PointNet2(nn.Module):
    """PointNet++ single-scale segmentation network (``pointnet2_part_seg_ssg`` layout, sizes configurable).

    ``levels`` lists ``(num_centres, radius, num_samples, mlp widths)`` for each set-abstraction
    level; a final global level (``global_dims``) pools everything. Feature propagation goes back
    level by level (``fp_dims`` from the coarsest), the last step reaching the input points whose
    own features (normals when ``in_channels == 6``, plus xyz) are concatenated.
    """

    def __init__(
        self,
        in_channels: int = 3,
        levels: Sequence[tuple[int, float, int, Sequence[int]]] = (
            (512, 0.2, 32, (64, 64, 128)),
            (128, 0.4, 64, (128, 128, 256)),
        ),
        global_dims: Sequence[int] = (256, 512, 1024),
        fp_dims: Sequence[Sequence[int]] = ((256, 256), (256, 128), (128, 128, 128)),
    ) -> None:
        super().__init__()
        if len(fp_dims) != len(levels) + 1:
            raise ValueError(f"pointnet2 needs len(fp_dims) == len(levels) + 1, got {len(fp_dims)}")
        self.in_channels = in_channels
        self.sa = nn.ModuleList()
        dim, dims_per_level = in_channels - 3, [in_channels]
        for num_centres, radius, num_samples, widths in levels:
            self.sa.append(SetAbstraction(int(num_centres), float(radius), int(num_samples), dim, widths))
            dim = self.sa[-1].out_dim
            dims_per_level.append(dim)
        self.sa.append(SetAbstraction(None, 0.0, 0, dim, global_dims))
        dim = self.sa[-1].out_dim
        self.fp = nn.ModuleList()
        for level, widths in zip(range(len(levels), -1, -1), fp_dims):
            self.fp.append(FeaturePropagation(dim + dims_per_level[level], widths))
            dim = self.fp[-1].out_dim
        self.out_dim: int = int(dim)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"pointnet2 expects [B, N, {self.in_channels}] points, got {tuple(x.shape)}")
        xyz = x[..., :3]
        # Level 0 features: xyz plus the extra channels (the reference concatenates xyz at the last FP).
        xyzs, feats = [xyz], [x]
        level_feats = x[..., 3:] if self.in_channels > 3 else None
        for sa in self.sa:
            centres, level_feats = sa(xyzs[-1], level_feats)
            xyzs.append(centres)
            feats.append(level_feats)
        h = feats[-1]
        for i, fp in enumerate(self.fp):
            fine = len(xyzs) - 2 - i
            h = fp(xyzs[fine], xyzs[fine + 1], feats[fine], h)
        return {"global": h.amax(dim=1), "tokens": h}


def pointnet2(
    in_channels: int = 3,
    num_centres: Sequence[int] = (512, 128),
    radii: Sequence[float] = (0.2, 0.4),
    num_samples: Sequence[int] = (32, 64),
    sa_dims: Sequence[Sequence[int]] = ((64, 64, 128), (128, 128, 256)),
    global_dims: Sequence[int] = (256, 512, 1024),
    fp_dims: Sequence[Sequence[int]] = ((256, 256), (256, 128), (128, 128, 128)),
) -> PointNet2:
    """PointNet++ (single-scale grouping) part-segmentation trunk; ``out_dim`` = ``fp_dims[-1][-1]``.

    One entry of ``num_centres`` / ``radii`` / ``num_samples`` / ``sa_dims`` per set-abstraction
    level (defaults: the reference SSG part-seg sizes); ``global_dims``: the final global level;
    ``fp_dims``: feature-propagation MLPs from the coarsest level back to the input points
    (``len(sa_dims) + 1`` of them). ``in_channels``: 3 (xyz) or 6 (xyz + normals).
    """
    lengths = {len(num_centres), len(radii), len(num_samples), len(sa_dims)}
    if len(lengths) != 1:
        raise ValueError("pointnet2: num_centres, radii, num_samples and sa_dims need one entry per level")
    levels = tuple(
        (int(c), float(r), int(s), tuple(d)) for c, r, s, d in zip(num_centres, radii, num_samples, sa_dims)
    )
    return PointNet2(in_channels, levels, tuple(global_dims), tuple(tuple(d) for d in fp_dims))
