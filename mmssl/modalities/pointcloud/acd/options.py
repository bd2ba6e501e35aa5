"""The ``acd:`` section of a point-cloud dataset recipe: whether and how its shapes get approximate
convex decomposition labels (Gadelha et al., ECCV 2020; CoACD, Wei et al., SIGGRAPH 2022).

One flat section holds the run options (``enabled``, ``workers``, ``timeout_s``, ``fallback``) and the
decomposition settings that a recipe may change (a subset of :class:`~.params.ACDParams`, same names);
:meth:`ACDOptions.params` gives the :class:`~.params.ACDParams` they select. The dataset builders
annotate their ``acd`` parameter with one of these classes, so :mod:`mmssl.options` checks the
section's keys (``data.acd.treshold`` -> "did you mean 'threshold'") and converts its values::

    data:
      name: procedural_parts
      acd: {workers: 2, timeout_s: 180, fallback: connected_components, threshold: 0.05}

Each builder's defaults are its class's: meshes (:class:`MeshACDOptions`) and reconstructed point
clouds (:class:`PointCloudACDOptions`, a coarser ``threshold``: reconstructed surfaces are bumpy).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mmssl.modalities.pointcloud.acd.params import FALLBACKS, ACDParams

_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(ACDParams))


@dataclass(frozen=True)
class ACDOptions:
    """``enabled``: decompose the training shapes (off: every point's label is -1). ``workers``: CoACD
    worker processes (0: in the calling process, no timeout). ``timeout_s``: wall-clock limit per shape,
    then the ``fallback`` decomposition (``connected_components`` or ``single``), logged. The other
    fields are :class:`~.params.ACDParams` fields of the same name."""

    enabled: bool = True
    workers: int = 2
    timeout_s: float = 60.0
    fallback: str = "connected_components"
    threshold: float = 0.05
    resolution: int = 1000
    preprocess_mode: str = "auto"
    preprocess_resolution: int = 30
    mcts_iterations: int = 50
    mcts_nodes: int = 10

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"unknown fallback '{self.fallback}'; choose one of {', '.join(FALLBACKS)}")
        self.params()  # checks preprocess_mode (and reconstruction)

    def params(self) -> ACDParams:
        """The decomposition settings: this section's ``ACDParams`` fields, ``ACDParams`` defaults for the
        rest."""
        return ACDParams(**{name: getattr(self, name) for name in _PARAM_FIELDS if hasattr(self, name)})


@dataclass(frozen=True)
class MeshACDOptions(ACDOptions):
    """For meshes (``procedural_parts``, ``mesh_folder``). ``split_pieces``: decompose each connected
    piece on its own, a closed convex piece being one component without a CoACD call (off: CoACD on
    every whole mesh).

    ``timeout_s`` defaults to 180, chosen by measuring real meshes (``benchmarks/acd_real_meshes.py``,
    these settings, one worker with a core to itself): 4-18 s for the odedstein meshes and Spot (0.8-14 k
    faces), 42 s for the Stanford bunny (69 k faces), and a teapot was reported at ~70 s. A worker that
    shares its core with another job takes twice as long, so 60 s would send such meshes to the fallback;
    180 s covers the slowest measured at 4x and still cuts off a CoACD call that hangs."""

    timeout_s: float = 180.0
    split_pieces: bool = True


@dataclass(frozen=True)
class PointCloudACDOptions(ACDOptions):
    """For point clouds without meshes (``shapenetpart``): each shape's surface is reconstructed first
    (``reconstruction``: ``ball_pivoting`` or ``poisson``). ``threshold`` defaults to 0.2: at 0.05 CoACD
    keeps cutting a bumpy reconstructed surface (over 45 s on a two-box cloud, then timed out) where 0.2
    takes seconds and still separates a table's top from its legs. ``timeout_s`` stays 60: real ShapeNetPart
    shapes, reconstructed, take 2.7-6.6 s each (``benchmarks/acd_real_meshes.py``: 16 shapes of
    ``shapenetpart_points``, ~240 points, and the full-resolution ones, ~2,600 points)."""

    threshold: float = 0.2
    reconstruction: str = "ball_pivoting"


#: the builders' defaults (frozen, so one instance can be every call's default)
MESH_ACD_DEFAULTS = MeshACDOptions()
POINT_CLOUD_ACD_DEFAULTS = PointCloudACDOptions()
