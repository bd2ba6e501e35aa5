"""Batch keys of the point-cloud modality."""

from mmssl.data.keys import batch_key

POINTS = batch_key("points", "[B, N, 3] point coordinates")
NORMALS = batch_key("normals", "[B, N, 3] unit normals (zeros where unknown)")
ACD_LABELS = batch_key("acd", "[B, N] approximate-convex-decomposition component per point (-1 unknown)")
PARTS = batch_key("parts", "[B, N] global (ShapeNetPart) part id per point, in part-segmentation sets")
CATEGORY = batch_key("category", "[B] category of each shape (indexes PartTaxonomy.categories)")
