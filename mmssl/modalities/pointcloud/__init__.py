"""Point-cloud adapter: point and mesh I/O, ShapeNetPart layout, procedural part-annotated shapes,
approximate-convex-decomposition (ACD) labels, point backbones, the ACD pretext, two-view views for the
shared SimCLR / MoCo / BYOL, Point-MAE on the shared masking core, and few-shot part segmentation.

Modules: ``io`` (files, surface sampling), ``shapenetpart`` / ``procedural`` (the data), ``acd/`` (the
decomposition, its cache and worker pool, the ``acd:`` recipe section), ``acd_labels`` (ACD labels for
the builders), ``datasets`` (in-memory items), ``taxonomy`` (the part taxonomy extra), ``partseg_sets``
(support / scored splits from split files), ``views`` (two-view augmentation), ``data`` (the registered
dataset builders), ``encoders``, ``grouping`` / ``chamfer`` / ``point_transformer`` / ``point_mae``
(Point-MAE), ``acd_pretext``, ``partseg/`` (few-shot part segmentation), ``render``.

Components are listed in ``components.py`` beside this file and imported on first lookup.
"""
