"""Ambient-sound targets (Owens et al., ECCV 2016, Sec. 3): sound-texture statistics -> a label per clip.

Two kinds of target, both fitted on the training clips only:

- ``clusters``: k-means (scikit-learn, ``n_init`` restarts, fixed ``random_state``) on the standardised
  statistics (:func:`~mmssl.modalities.audio.texture_stats.standardise_groups`); a clip's target is
  its cluster id (the paper's K = 30 classification task).
- ``binary``: the signs of the projections on the top ``num_bits`` principal components (the paper's
  binary-code variant): a ``num_bits``-way multi-label target trained with binary cross-entropy.
  Each bit splits the clips at the mean of one direction of largest variance.

:func:`ambient_targets` computes the statistics once per clip set and caches them (``.npz`` under
``$MMSSL_CACHE/audio_texture_stats``, keyed by the clips' ``cache_key`` and the statistics
parameters); targets are recomputed from the cached statistics, deterministically for a given seed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmssl.cache import NPZ_ERRORS, cache_folder
from mmssl.modalities.audio.texture_stats import (
    GROUPS,
    TextureConfig,
    standardise_groups,
    texture_feature_groups,
)

log = logging.getLogger(__name__)

TARGET_KINDS: tuple[str, ...] = ("clusters", "binary")


def kmeans_targets(
    features: Tensor | np.ndarray, num_clusters: int, seed: int = 0, n_init: int = 10
) -> tuple[Tensor, Tensor]:
    """K-means cluster ids ``int64 [N]`` and centres ``float64 [K, D]`` (scikit-learn, ``random_state=seed``).

    Cluster ids are renumbered by first appearance in clip order, so the ids do not depend on
    k-means' internal numbering (the partition itself is what the seed fixes).
    """
    x = np.asarray(features, dtype=np.float64)
    if not 2 <= num_clusters <= len(x):
        raise ValueError(f"num_clusters must be in [2, {len(x)}] (number of clips), got {num_clusters}")
    from sklearn.cluster import KMeans  # imported here: scikit-learn takes seconds to load

    km = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed).fit(x)
    _, first = np.unique(km.labels_, return_index=True)
    order = np.argsort(first)  # old ids sorted by where they first appear
    remap = np.empty(num_clusters, dtype=np.int64)
    remap[order] = np.arange(num_clusters)
    return torch.from_numpy(remap[km.labels_]), torch.from_numpy(km.cluster_centers_[order])


def binary_codes(features: Tensor | np.ndarray, num_bits: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Bits ``float32 [N, num_bits]`` = ``(x - mean) @ components.T > 0``; components ``[num_bits, D]``.

    PCA components have an arbitrary sign; each is flipped so that its largest-magnitude loading is
    positive, making the codes reproducible across library versions.
    """
    x = np.asarray(features, dtype=np.float64)
    if not 1 <= num_bits <= min(x.shape):
        raise ValueError(f"num_bits must be in [1, {min(x.shape)}] (min of clips, dims), got {num_bits}")
    from sklearn.decomposition import PCA  # imported here: scikit-learn takes seconds to load

    pca = PCA(n_components=num_bits, random_state=seed).fit(x)
    comps = pca.components_
    signs = np.sign(comps[np.arange(num_bits), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    proj = (x - pca.mean_) @ comps.T
    return torch.from_numpy((proj > 0).astype(np.float32)), torch.from_numpy(comps)


#: the statistics' folder under the cache root
STATS_CACHE_NAME = "audio_texture_stats"


def stats_cache_dir() -> Path:
    """``$MMSSL_CACHE/audio_texture_stats`` (next to the procedural data caches)."""
    return cache_folder(STATS_CACHE_NAME)


def cached_feature_groups(
    get_clip: Callable[[int], Tensor],
    count: int,
    sample_rate: int,
    config: TextureConfig,
    cache_key: str | None,
    cache_dir: str | Path | None = None,
) -> dict[str, Tensor]:
    """:func:`~mmssl.modalities.audio.texture_stats.texture_feature_groups`, stored as ``.npz`` when
    ``cache_key`` names the clip set (None: always recomputed). Write-then-rename, so concurrent
    runs never read a half-written file; a damaged file (the zip CRC-32 of every member is checked as it
    is read; a missing group, a row count other than ``count``, non-finite values) is logged, naming it,
    and recomputed."""
    path = None
    if cache_key is not None:
        folder = Path(cache_dir) if cache_dir is not None else stats_cache_dir()
        path = folder / f"{cache_key}_n{count}_sr{sample_rate}_{config.key()}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    groups = {g: torch.from_numpy(z[g]) for g in GROUPS}
                for g, v in groups.items():
                    if v.ndim != 2 or v.shape[0] != count or not torch.isfinite(v).all():
                        raise ValueError(f"group {g!r} {tuple(v.shape)} is not {count} finite rows")
                return groups
            except NPZ_ERRORS as err:
                log.warning(
                    "ignoring unreadable texture-statistics cache %s (%s: %s); recomputing it",
                    path,
                    type(err).__name__,
                    err,
                )
    start = time.perf_counter()
    groups = texture_feature_groups(get_clip, sample_rate, config, count=count)
    log.info("texture statistics of %d clips in %.1fs", count, time.perf_counter() - start)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{g: v.numpy() for g, v in groups.items()})
            os.replace(tmp, path)
        except OSError as err:
            log.warning("could not write texture-statistics cache %s (%s)", path, err)
    return groups


@dataclass
class AmbientTargets:
    """Targets for every training clip: ``int64 [N]`` cluster ids or ``float32 [N, bits]`` codes."""

    kind: str
    targets: Tensor
    num_outputs: int
    features: Tensor  # the standardised statistics [N, D] the targets were computed from
    info: dict[str, Any]


def ambient_targets(
    clips: Any,
    kind: str = "clusters",
    num_clusters: int = 30,
    num_bits: int = 30,
    seed: int = 0,
    config: TextureConfig | None = None,
    labels: list[int] | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> AmbientTargets:
    """Sound targets of a clip set with ``len(clips)``, ``clips.clip_audio(i)``, ``clips.sample_rate``
    and ``clips.cache_key`` (e.g. :class:`~mmssl.modalities.audio.av_clips.AudioVisualClips`).

    ``labels`` (optional, never used for the targets): class labels, to report how much of the class
    structure the targets carry (normalised mutual information for clusters).
    """
    config = config or TextureConfig()
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown ambient target kind '{kind}'; choose one of {', '.join(TARGET_KINDS)}")
    key = getattr(clips, "cache_key", None) if cache else None
    groups = cached_feature_groups(clips.clip_audio, len(clips), clips.sample_rate, config, key, cache_dir)
    features, _ = standardise_groups(groups)
    info: dict[str, Any] = {"num_clips": len(clips), "feature_dim": int(features.shape[1])}
    if kind == "clusters":
        targets, _ = kmeans_targets(features, num_clusters, seed)
        sizes = torch.bincount(targets, minlength=num_clusters)
        info.update(min_cluster=int(sizes.min()), max_cluster=int(sizes.max()))
        if labels is not None:
            from sklearn.metrics import normalized_mutual_info_score

            info["nmi_vs_labels"] = float(normalized_mutual_info_score(labels, targets.numpy()))
        return AmbientTargets(kind, targets, num_clusters, features.float(), info)
    bits, _ = binary_codes(features, num_bits, seed)
    info["bit_balance_min"] = float(torch.minimum(bits.mean(0), 1 - bits.mean(0)).min())
    return AmbientTargets(kind, bits, num_bits, features.float(), info)
