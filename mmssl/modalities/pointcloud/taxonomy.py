"""The part taxonomy of a part-segmentation set: the typed extra that the ``part_segmentation`` evaluator
reads from a :class:`~mmssl.data.DataBundle` (``data.find_extra(PartTaxonomy)``).

ShapeNetPart (Yi et al., SIGGRAPH Asia 2016) numbers its 50 parts globally, each category owning a block
of ids; evaluation restricts a shape's prediction to its category's block (Qi et al., PointNet++, 2017;
the ACD paper, Gadelha et al., ECCV 2020, follows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmssl.modalities.pointcloud.shapenetpart import NUM_PARTS, SHAPENETPART_PARTS


@dataclass
class PartTaxonomy:
    """``categories``: names, indexed by the items' ``category``; ``parts_per_category``: category index
    -> its global part ids; ``num_parts``: size of the global part-id space (ShapeNetPart: 50)."""

    categories: list[str]
    parts_per_category: dict[int, list[int]]
    num_parts: int


def shapenetpart_taxonomy(categories: Sequence[str]) -> PartTaxonomy:
    """The ShapeNetPart taxonomy restricted to ``categories`` (in that order), with global part ids."""
    return PartTaxonomy(
        categories=list(categories),
        parts_per_category={i: list(SHAPENETPART_PARTS[c]) for i, c in enumerate(categories)},
        num_parts=NUM_PARTS,
    )
