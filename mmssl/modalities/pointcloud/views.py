"""Random views of a point cloud for the shared two-view methods (SimCLR, MoCo, BYOL in
:mod:`mmssl.core.methods`), selected in a recipe with ``data.views: two_view`` and tuned with
``data.view_options`` (:class:`PointViewOptions`).

Each view of a shape is drawn independently, in this order:

1. **crop / drop** a fraction ``r ~ U[crop_low, crop_high]`` of the points: ``region`` removes the
   ``round(r N)`` points nearest to a random point of the cloud (one contiguous ball-shaped region, as
   the occlusion-like crops of STRL, Huang et al., ICCV 2021, and PointContrast-style partial views),
   ``random`` removes that many points chosen uniformly;
2. **re-sample** the remaining points to a fixed count (``num_points``, default the input's ``N``): a
   random subset when enough remain, otherwise all of them plus random repeats, so every view has the
   same shape and views batch;
3. **rotate**: about the up axis by an angle ``~ U[-max_angle, max_angle]`` (``rotation: up``; ShapeNet
   is y-up), or by a uniformly random rotation of SO(3) (``so3``: a unit quaternion from a normalised
   4-D Gaussian, Shoemake 1992), or not at all;
4. **scale** each axis by its own factor ``~ U[scale_low, scale_high]`` (``anisotropic``; one factor for
   all axes otherwise);
5. **shift** by ``~ U[-shift, shift]`` per axis;
6. **jitter** every point by Gaussian noise of std ``jitter_sigma`` clipped to ``+-jitter_clip``
   (PointNet's augmentation: 0.01 / 0.05).

``normals: true`` makes each view ``[num_points, 6]`` (xyz + unit normals) for an encoder with
``in_channels: 6``: normals rotate with the points, follow an anisotropic scaling by its inverse
(the inverse transpose of a diagonal map) and are re-normalised, and ignore shifts and jitter.

Randomness comes from ``generator`` or torch's global generator, which the trainer seeds per sample
and epoch, so views do not depend on the number of data-loader workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mmssl.data.multiview import MultiViewTransform

ROTATIONS = ("none", "up", "so3")
CROPS = ("none", "region", "random")
VIEW_NAMES = ("two_view",)


@dataclass(frozen=True)
class PointViewOptions:
    """The ``data.view_options`` section of a point-cloud two-view recipe (see the module docstring for
    what each step does and in which order).

    ``rotation``: ``none``, ``up`` (about ``up_axis`` by up to ``max_angle`` degrees either way) or
    ``so3``. ``scale_low`` / ``scale_high``: the scaling range, per axis when ``anisotropic``.
    ``shift``: largest translation per axis. ``jitter_sigma`` / ``jitter_clip``: per-point Gaussian noise.
    ``crop``: ``none``, ``region`` (a contiguous ball of points removed) or ``random`` (random points
    dropped); ``crop_low`` / ``crop_high``: the range of the removed fraction. ``num_points``: points per
    view (default: as many as the shape has). ``normals``: views carry normals (6 channels).
    """

    rotation: str = "up"
    max_angle: float = 180.0
    up_axis: int = 1
    scale_low: float = 0.8
    scale_high: float = 1.25
    anisotropic: bool = True
    shift: float = 0.1
    jitter_sigma: float = 0.01
    jitter_clip: float = 0.05
    crop: str = "region"
    crop_low: float = 0.1
    crop_high: float = 0.4
    num_points: int | None = None
    normals: bool = False

    def __post_init__(self) -> None:
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {', '.join(ROTATIONS)}, got '{self.rotation}'")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got '{self.crop}'")
        if self.up_axis not in (0, 1, 2):
            raise ValueError(f"up_axis must be 0, 1 or 2, got {self.up_axis}")
        if not 0 < self.scale_low <= self.scale_high:
            raise ValueError(f"need 0 < scale_low <= scale_high, got {self.scale_low}, {self.scale_high}")
        if not 0 <= self.crop_low <= self.crop_high < 1:
            raise ValueError(f"need 0 <= crop_low <= crop_high < 1, got {self.crop_low}, {self.crop_high}")
        if self.shift < 0 or self.jitter_sigma < 0 or self.jitter_clip < 0 or self.max_angle < 0:
            raise ValueError("shift, jitter_sigma, jitter_clip and max_angle must be >= 0")
        if self.num_points is not None and self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


# ------------------------------------------------------------------------------ rotations


def up_rotation(angle: Tensor, up_axis: int = 1) -> Tensor:
    """Rotation matrices ``[*angle.shape, 3, 3]`` by ``angle`` (radians) about ``up_axis``, right-handed
    (y-up: x turns towards -z)."""
    a, c = [axis for axis in range(3) if axis != up_axis]
    if up_axis == 1:  # right-handed order of the plane (z, x) for the y axis
        a, c = c, a
    rot = torch.zeros(*angle.shape, 3, 3, dtype=angle.dtype)
    cos, sin = angle.cos(), angle.sin()
    rot[..., up_axis, up_axis] = 1.0
    rot[..., a, a], rot[..., a, c], rot[..., c, a], rot[..., c, c] = cos, -sin, sin, cos
    return rot


def random_so3(generator: torch.Generator | None = None) -> Tensor:
    """One rotation ``[3, 3]`` uniform over SO(3): the matrix of a unit quaternion drawn from a
    normalised 4-D standard Gaussian (uniform on the 3-sphere, hence Haar-uniform rotations)."""
    q = torch.randn(4, generator=generator, dtype=torch.float64)
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float32,
    )


# ------------------------------------------------------------------------------ crop / drop, re-sampling


def region_crop(xyz: Tensor, num_remove: int, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """``(keep [N - num_remove], centre)``: indices (ascending) of the points left after removing the
    ``num_remove`` points nearest to the random point ``centre`` (itself included): one contiguous
    region. Ties in distance are broken by index."""
    n = xyz.shape[0]
    centre = int(torch.randint(n, (1,), generator=generator))
    dist = (xyz - xyz[centre]).square().sum(-1)
    order = torch.sort(dist, stable=True).indices
    return order[num_remove:].sort().values, centre


def random_drop(n: int, num_remove: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices (ascending) of ``n - num_remove`` points kept after dropping ``num_remove`` random ones."""
    return torch.randperm(n, generator=generator)[num_remove:].sort().values


def resample(keep: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:
    """``count`` indices drawn from ``keep``: a random subset when ``len(keep) >= count``, else every
    kept index once plus random repeats."""
    if len(keep) >= count:
        return keep[torch.randperm(len(keep), generator=generator)[:count]]
    extra = keep[torch.randint(len(keep), (count - len(keep),), generator=generator)]
    return torch.cat([keep, extra])


# ------------------------------------------------------------------------------ the view


class PointCloudView:
    """One random view ``[N, C]`` -> ``[num_points, 3]`` (or ``[num_points, 6]`` with ``normals``) of a
    cloud whose first three channels are xyz and the next three (when present) unit normals."""

    def __init__(self, options: PointViewOptions = PointViewOptions()) -> None:
        self.options = options

    def __call__(self, cloud: Tensor, generator: torch.Generator | None = None) -> Tensor:
        o = self.options
        cloud = torch.as_tensor(cloud, dtype=torch.float32)
        if o.normals and cloud.shape[-1] < 6:
            raise ValueError("view_options.normals needs clouds with normals ([N, 6])")
        n = cloud.shape[0]
        count = o.num_points or n
        keep = torch.arange(n)
        if o.crop != "none":
            num_remove = min(n - 1, int(round(float(_uniform((), o.crop_low, o.crop_high, generator)) * n)))
            keep = (
                region_crop(cloud[:, :3], num_remove, generator)[0]
                if o.crop == "region"
                else random_drop(n, num_remove, generator)
            )
        picked = cloud[resample(keep, count, generator)]
        xyz = picked[:, :3]
        normals = picked[:, 3:6] if o.normals else None
        if o.rotation == "up":
            angle = _uniform((), -math.radians(o.max_angle), math.radians(o.max_angle), generator)
            rot = up_rotation(angle, o.up_axis)
        elif o.rotation == "so3":
            rot = random_so3(generator)
        else:
            rot = torch.eye(3)
        xyz = xyz @ rot.T
        scale = _uniform((3,) if o.anisotropic else (1,), o.scale_low, o.scale_high, generator)
        xyz = xyz * scale + _uniform((3,), -o.shift, o.shift, generator)
        if o.jitter_sigma > 0:
            noise = torch.randn(xyz.shape, generator=generator) * o.jitter_sigma
            xyz = xyz + noise.clamp(-o.jitter_clip, o.jitter_clip)
        if normals is None:
            return xyz
        # A linear map A sends normals to A^-T n; for A = S R (R orthogonal, S diagonal): S^-1 R n.
        normals = (normals @ rot.T) / scale
        return torch.cat([xyz, normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)], dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def two_view_transform(options: PointViewOptions | None = None) -> MultiViewTransform:
    """Two independent :class:`PointCloudView` draws of each shape (SimCLR / MoCo / BYOL)."""
    return MultiViewTransform.repeated(PointCloudView(options or PointViewOptions()), 2)
