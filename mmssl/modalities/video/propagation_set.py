"""The extra a video bundle carries for label propagation: a DAVIS-layout root and the sequences to use.

DAVIS (Perazzi et al., CVPR 2016; Pont-Tuset et al. 2017) is the semi-supervised video object
segmentation benchmark on which CRW (Jabri et al. 2020) and its successors report label propagation.
Dataset builders put a :class:`PropagationSet` in ``DataBundle.extras`` where a DAVIS-layout set with masks
is known; the ``label_propagation`` evaluator (:mod:`mmssl.modalities.video.eval`) reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmssl.modalities.video.io import list_davis_sequences


@dataclass(frozen=True)
class PropagationSet:
    """``root``: a DAVIS-layout folder; ``sequences``: the names to evaluate, in order; ``resolution``:
    the ``JPEGImages`` / ``Annotations`` sub-folder."""

    root: str
    sequences: list[str] = field(default_factory=list)
    resolution: str = "480p"


def propagation_set(
    root: str | Path, names: Sequence[str], resolution: str, num_sequences: int
) -> PropagationSet:
    """The first ``num_sequences`` of ``names`` (0: all) under ``root``."""
    names = list(names)
    if num_sequences > 0:
        names = names[:num_sequences]
    return PropagationSet(str(root), names, resolution)


def davis_propagation_set(
    root: str | Path, resolution: str, split: str | None, num_sequences: int
) -> PropagationSet:
    """The ``split`` sequences of a DAVIS root (all of them without an ``ImageSets`` list), the first
    ``num_sequences`` (0: all)."""
    names = list_davis_sequences(root, resolution, split)
    return propagation_set(Path(root).expanduser(), names, resolution, num_sequences)
