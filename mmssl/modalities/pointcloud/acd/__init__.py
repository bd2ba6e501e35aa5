"""Approximate convex decomposition (ACD) labels for the ACD pretext (Gadelha et al., ECCV 2020, sec. 3.1).

Each mesh is decomposed offline into approximately convex components with CoACD (Wei et al.,
SIGGRAPH 2022; the ``coacd`` package); every sampled surface point then gets the id of its
component. Point clouds without a mesh (ShapeNetPart) first get a surface reconstructed with open3d.
One job per module:

- :mod:`.params`: :class:`~.params.ACDParams`, the settings of one decomposition;
- :mod:`.options`: the ``acd:`` recipe section of the point-cloud datasets (run options + settings);
- :mod:`.job`: :class:`~.job.ACDJob` (a shape to decompose) and :class:`~.job.Decomposition` (its hulls);
- :mod:`.geometry`: connected pieces, closed convex pieces, convex hulls;
- :mod:`.reconstruct`: surface reconstruction of a point cloud (ball pivoting, Poisson);
- :mod:`.decompose`: one shape, in this process (CoACD per piece or whole, fallbacks);
- :mod:`.assign`: per-point component labels from the hulls;
- :mod:`.cache`: the on-disk cache, keyed by shape content and settings;
- :mod:`.pool`: worker processes with a per-call timeout (why not ``concurrent.futures``: there);
- :mod:`.batch`: many shapes: cache, shortcut, workers, timeouts, fallbacks, progress.

Nothing here imports torch (worker processes start faster); labels are numpy ``int64``.
"""
