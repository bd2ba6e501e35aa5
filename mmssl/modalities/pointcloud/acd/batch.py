"""Approximate convex decompositions of many shapes (Gadelha et al., ECCV 2020; CoACD, Wei et al.,
SIGGRAPH 2022): the cache first, then the convex-pieces shortcut, then CoACD in worker processes.

- results are read from and written to the on-disk cache (:mod:`~mmssl.modalities.pointcloud.acd.cache`);
- meshes made only of closed convex pieces are done at once, in this process;
- the others run in ``workers`` worker processes (:mod:`~mmssl.modalities.pointcloud.acd.pool`), each
  with one OpenMP thread by default, with a tqdm progress bar;
- each mesh has a wall-clock ``timeout_s``: CoACD can hang for minutes on self-intersecting input
  with ``preprocess_mode="off"``. A worker past its deadline is killed and the mesh gets a
  fallback decomposition, logged: ``connected_components`` (the convex hull of each connected
  piece of the mesh, which for meshes built from primitives is one hull per primitive) or
  ``single`` (one hull). Fallbacks are cached too (the log says so when they are reused).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmssl.modalities.pointcloud.acd.cache import ACDCache, cache_key
from mmssl.modalities.pointcloud.acd.decompose import (
    decompose,
    decompose_convex_pieces,
    fallback_decomposition,
)
from mmssl.modalities.pointcloud.acd.job import ACDJob, Decomposition
from mmssl.modalities.pointcloud.acd.params import FALLBACKS, ACDParams
from mmssl.modalities.pointcloud.acd.pool import run_with_timeouts

log = logging.getLogger(__name__)


@dataclass
class ACDStats:
    """What one :func:`decompose_many` call did."""

    total: int = 0
    cached: int = 0
    computed: int = 0
    fallbacks: list[str] = field(default_factory=list)  # names of shapes that got a fallback
    seconds: float = 0.0


def decompose_many(
    jobs: list[ACDJob],
    params: ACDParams | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    timeout_s: float = 60.0,
    fallback: str = "connected_components",
    threads_per_worker: int = 1,
    progress: bool = True,
) -> tuple[list[Decomposition], ACDStats]:
    """Decompose every job, reading and filling the cache; returns decompositions in job order.

    Meshes made only of convex pieces (:func:`~.decompose.decompose_convex_pieces`) are done here at
    once; the others go to CoACD. ``workers >= 1``: that many worker processes (spawned, started only
    when some mesh needs CoACD), each mesh killed after ``timeout_s`` seconds and given the ``fallback``
    decomposition; a worker that crashes is replaced. ``workers=0``: run in this process, one after
    the other, with no timeout (a hung CoACD hangs the caller), errors still fall back.
    ``cache_dir=None`` disables the cache.
    """
    from tqdm.auto import tqdm

    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback '{fallback}'; choose one of {', '.join(FALLBACKS)}")
    params = params or ACDParams()
    cache = ACDCache(cache_dir)
    start = time.perf_counter()
    stats = ACDStats(total=len(jobs))
    results: list[Decomposition | None] = [None] * len(jobs)
    keys = [cache_key(job, params) for job in jobs]
    todo = []
    for i, key in enumerate(keys):
        results[i] = cache.load(key)
        if results[i] is None:
            todo.append(i)
        elif results[i].is_fallback:
            stats.fallbacks.append(jobs[i].name)
    stats.cached = len(jobs) - len(todo)
    if stats.fallbacks:
        log.info(
            "ACD: %d cached decompositions are fallbacks (e.g. %s)", len(stats.fallbacks), stats.fallbacks[0]
        )

    def finish(i: int, decomposition: Decomposition) -> None:
        if decomposition.is_fallback:
            stats.fallbacks.append(jobs[i].name)
            log.warning(
                "ACD of %s: %s, %d components", jobs[i].name, decomposition.method, len(decomposition)
            )
        results[i] = decomposition
        cache.save(keys[i], decomposition)
        bar.update(1)

    def fall_back(i: int, reason: str) -> None:
        finish(i, fallback_decomposition(jobs[i], fallback, reason))

    bar = tqdm(total=len(todo), desc="ACD (coacd)", unit="mesh", disable=not progress or not todo)
    try:
        needs_coacd = []
        for i in todo:  # meshes made only of convex pieces need no CoACD, hence no worker
            quick = decompose_convex_pieces(jobs[i], params)
            if quick is None:
                needs_coacd.append(i)
            else:
                finish(i, quick)
        if needs_coacd and workers <= 0:
            for i in needs_coacd:
                try:
                    finish(i, decompose(jobs[i], params))
                except Exception as err:  # noqa: BLE001 - any failure of coacd/open3d falls back
                    fall_back(i, f"{type(err).__name__}: {err}")
        elif needs_coacd:
            run_with_timeouts(
                decompose,
                [(i, (jobs[i], params)) for i in needs_coacd],
                workers=workers,
                timeout_s=timeout_s,
                threads=threads_per_worker,
                on_done=finish,
                on_failed=fall_back,
                name="coacd",
            )
    finally:
        bar.close()
    stats.computed = len(todo)
    stats.seconds = time.perf_counter() - start
    if todo:
        log.info(
            "ACD: %d shapes (%d cached, %d computed, %d fallbacks) in %.1fs",
            stats.total,
            stats.cached,
            stats.computed,
            len(stats.fallbacks),
            stats.seconds,
        )
    return [r for r in results if r is not None], stats
