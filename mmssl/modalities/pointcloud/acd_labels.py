"""ACD labels of a dataset's training shapes, as the builders need them (Gadelha et al., ECCV 2020,
sec. 3.1): every shape decomposed (cached, in worker processes; see
:mod:`mmssl.modalities.pointcloud.acd`), then each of its sampled points labelled with its component.
What happened is returned as plain ``stats`` for ``DataBundle.stats``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmssl.modalities.pointcloud.acd.assign import assign_points
from mmssl.modalities.pointcloud.acd.batch import decompose_many
from mmssl.modalities.pointcloud.acd.cache import default_acd_cache_dir
from mmssl.modalities.pointcloud.acd.job import ACDJob
from mmssl.modalities.pointcloud.acd.options import ACDOptions
from mmssl.modalities.pointcloud.datasets import stack


def acd_cache_dir(cache_dir: str | Path | None) -> Path:
    """Where the builders keep ACD results: ``<cache_dir>/acd``, or
    :func:`~mmssl.modalities.pointcloud.acd.cache.default_acd_cache_dir`."""
    return Path(cache_dir).expanduser() / "acd" if cache_dir is not None else default_acd_cache_dir()


def acd_labels(
    jobs: list[ACDJob], points: list[np.ndarray], options: ACDOptions, cache_dir: str | None, num_points: int
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Component ids ``int64 [S, num_points]`` of ``points[s]`` (in the frame of ``jobs[s]``'s shape), and
    stats: ``acd_enabled``, and when enabled ``acd_shapes``, ``acd_cached``, ``acd_computed``,
    ``acd_fallbacks``, ``acd_seconds``, ``acd_mean_components``. With ``options.enabled`` false every
    label is -1."""
    if not options.enabled:
        return torch.full((len(points), num_points), -1, dtype=torch.int64), {"acd_enabled": False}
    decompositions, stats = decompose_many(
        jobs,
        options.params(),
        cache_dir=acd_cache_dir(cache_dir),
        workers=options.workers,
        timeout_s=options.timeout_s,
        fallback=options.fallback,
    )
    labels = [assign_points(p, d) for p, d in zip(points, decompositions)]
    return stack(labels, torch.int64), {
        "acd_enabled": True,
        "acd_shapes": stats.total,
        "acd_cached": stats.cached,
        "acd_computed": stats.computed,
        "acd_fallbacks": len(stats.fallbacks),
        "acd_seconds": round(stats.seconds, 2),
        "acd_mean_components": float(np.mean([len(d) for d in decompositions])) if decompositions else 0.0,
    }
