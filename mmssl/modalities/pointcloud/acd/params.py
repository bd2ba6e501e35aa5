"""The settings of one approximate convex decomposition (ACD; Gadelha et al., ECCV 2020, sec. 3.1).

:class:`ACDParams` holds everything that changes a shape's decomposition: CoACD's own settings (Wei et
al., SIGGRAPH 2022: the keyword arguments of ``coacd.run_coacd``), whether a mesh is decomposed piece by
piece, and for point clouds the surface reconstruction. All of it except the reconstruction of meshes
enters the cache key (:mod:`mmssl.modalities.pointcloud.acd.cache`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: what a shape gets when CoACD fails or times out (:func:`~.decompose.fallback_decomposition`)
FALLBACKS: tuple[str, ...] = ("connected_components", "single")
#: how a point cloud's surface is rebuilt before CoACD (:func:`~.reconstruct.reconstruct_surface`)
RECONSTRUCTIONS: tuple[str, ...] = ("ball_pivoting", "poisson")


@dataclass(frozen=True)
class ACDParams:
    """CoACD settings (the keyword arguments of ``coacd.run_coacd``), the per-piece split, and for
    point clouds the surface reconstruction. The CoACD defaults here are cheaper than CoACD's own
    (resolution 2000, preprocess_resolution 50, mcts_iterations 150, mcts_nodes 20): a few times
    faster for a similar number of components on shapes built from primitives; see
    ``benchmarks/acd_cache.py``."""

    threshold: float = 0.05  # concavity threshold: lower -> more, finer components
    resolution: int = 1000  # samples per hull for the concavity metric (CoACD default 2000)
    preprocess_mode: str = "auto"  # manifold pre-processing: "auto" | "on" | "off"
    preprocess_resolution: int = 30  # voxel resolution of that pre-processing (default 50)
    mcts_iterations: int = 50  # (default 150)
    mcts_nodes: int = 10  # (default 20)
    mcts_max_depth: int = 3
    max_convex_hull: int = -1  # -1: no limit
    seed: int = 0
    # Decompose each connected piece on its own, a closed convex piece being its own component
    # (no CoACD call), when a mesh has 2..max_pieces pieces; otherwise the whole mesh goes to CoACD.
    split_pieces: bool = True
    max_pieces: int = 32
    reconstruction: str = "ball_pivoting"  # point clouds only: "ball_pivoting" | "poisson"

    def __post_init__(self) -> None:
        if self.preprocess_mode not in ("auto", "on", "off"):
            raise ValueError(f"preprocess_mode must be auto, on or off, got '{self.preprocess_mode}'")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}")

    def coacd_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``coacd.run_coacd``."""
        d = dataclasses.asdict(self)
        for key in ("reconstruction", "split_pieces", "max_pieces"):
            d.pop(key)
        return d

    def settings(self) -> dict[str, Any]:
        """Everything that changes a mesh's decomposition (the cache key), reconstruction aside."""
        d = dataclasses.asdict(self)
        d.pop("reconstruction")
        return d
