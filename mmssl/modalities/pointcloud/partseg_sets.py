"""Part-segmentation evaluation splits read from a ShapeNetPart-layout folder, with the split files deciding
which shapes label the few-shot support and which are scored.

The few-shot protocol (:mod:`mmssl.modalities.pointcloud.partseg`) draws its K labelled shapes per
category from ``eval_train`` and scores all of ``eval_test``. Here ``eval_train`` is the
``support_split`` (``train``: the split file's training list, e.g. the 10-shot pool of
``shared/data/3d/shapenetpart_points``; or ``trainval``) and ``eval_test`` the ``score_split`` (``val``
to tune, ``test`` to report), never overlapping: ``trainval`` with ``val`` is refused.

Used by the ``shapenetpart`` builder for its own splits, and by ``procedural_parts`` through its
``eval_on`` section (:class:`ShapeNetPartEval`): pretrain on the built-in shapes, evaluate on real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from mmssl.modalities.pointcloud.datasets import ShapeNetPartItems
from mmssl.modalities.pointcloud.shapenetpart import ShapeNetPart
from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy, shapenetpart_taxonomy

SUPPORT_SPLITS = ("train", "trainval")
SCORE_SPLITS = ("val", "test")


def check_eval_splits(support_split: str, score_split: str) -> None:
    """``ValueError`` unless ``support_split`` is train / trainval, ``score_split`` val / test, disjoint."""
    if support_split not in SUPPORT_SPLITS:
        raise ValueError(f"support_split must be one of {', '.join(SUPPORT_SPLITS)}, got '{support_split}'")
    if score_split not in SCORE_SPLITS:
        raise ValueError(f"score_split must be one of {', '.join(SCORE_SPLITS)}, got '{score_split}'")
    if support_split == "trainval" and score_split == "val":
        raise ValueError("support_split trainval contains the val shapes: score on test, or support on train")


@dataclass(frozen=True)
class ShapeNetPartEval:
    """The ``eval_on`` section of ``procedural_parts``: score part segmentation on a ShapeNetPart-layout
    ``root`` instead of the built-in test shapes.

    ``num_points`` rows per shape (the ``shapenetpart_points`` files hold ~240: use <= 236 to avoid
    repeats); ``categories`` to keep (default: every category of ``synsetoffset2category.txt``; name the
    ones the folder has, so that ``num_classes`` and the taxonomy match); ``support_split`` /
    ``score_split`` as in the module docstring; ``skip_bad``: skip unreadable files with a warning.
    """

    root: str
    num_points: int = 2048
    categories: list[str] | None = None
    support_split: str = "train"
    score_split: str = "test"
    skip_bad: bool = False

    def __post_init__(self) -> None:
        check_eval_splits(self.support_split, self.score_split)
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")


@dataclass
class PartSegSplits:
    """What a builder puts in its bundle: ``eval_train`` (the support pool), ``eval_test`` (scored), their
    taxonomy, and stats about how they were read."""

    eval_train: Dataset
    eval_test: Dataset
    taxonomy: PartTaxonomy
    stats: dict[str, Any]


def shapenetpart_splits(
    options: ShapeNetPartEval, seed: int, support: ShapeNetPart | None = None
) -> PartSegSplits:
    """The support and scored splits of ``options.root``. ``support``: an already-open
    :class:`~mmssl.modalities.pointcloud.shapenetpart.ShapeNetPart` of ``options.support_split`` to reuse
    (the ``shapenetpart`` builder's pretraining shapes when both are ``trainval``)."""
    common: dict[str, Any] = dict(
        num_points=options.num_points, categories=options.categories, seed=seed, skip_bad=options.skip_bad
    )
    opened = []
    if support is None:
        support = ShapeNetPart(options.root, options.support_split, **common)
        opened.append(support)
    scored = ShapeNetPart(options.root, options.score_split, log_split_report=False, **common)
    opened.append(scored)
    bad = list(dict.fromkeys(p for split in opened for p in split.bad_files))
    split_stats = {f"split_{kind}": count for kind, count in support.report.counts().items()}
    return PartSegSplits(
        eval_train=ShapeNetPartItems(support),
        eval_test=ShapeNetPartItems(scored),
        taxonomy=shapenetpart_taxonomy(support.categories),
        stats={
            "eval_root": str(support.root),
            "eval_num_points": options.num_points,
            "num_support": len(support),
            "num_scored": len(scored),
            "support_split": options.support_split,
            "score_split": options.score_split,
            "num_skipped": len(bad),  # of the splits opened here (a reused support reports its own)
            "bad_files": [str(p) for p in bad],
            **split_stats,
        },
    )
