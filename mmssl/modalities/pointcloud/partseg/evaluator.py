"""The ``part_segmentation`` evaluator: K-shot part segmentation, fine-tuned and frozen-linear, over
several seeded draws (Gadelha et al., ECCV 2020, Sec. 4; the protocol is in
:mod:`mmssl.modalities.pointcloud.partseg`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
from torch import Tensor, nn

from mmssl.data import DataBundle
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.modalities.pointcloud.partseg.figures import render_predictions
from mmssl.modalities.pointcloud.partseg.metrics import category_part_mask, segmentation_scores
from mmssl.modalities.pointcloud.partseg.model import PartSegmenter, predict_parts
from mmssl.modalities.pointcloud.partseg.splits import check_shots, draw_support, load_split, subset
from mmssl.modalities.pointcloud.partseg.train import finetune_segmenter, linear_segmenter
from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy
from mmssl.option_markers import WHOLE_SECTION, ScoresLabelledSplits

log = logging.getLogger(__name__)


def _taxonomy(data: DataBundle) -> tuple[list[str], dict[int, list[int]], int]:
    """Category names, part ids per category and the number of parts, from the data's
    :class:`~mmssl.modalities.pointcloud.taxonomy.PartTaxonomy`."""
    taxonomy = data.find_extra(PartTaxonomy)
    if taxonomy is None:
        raise DataError(
            f"evaluator 'part_segmentation' needs the part taxonomy (PartTaxonomy: categories, "
            f"parts_per_category, num_parts) of dataset '{data.name or '?'}', which provides none: use a "
            "part-annotated point-cloud dataset (procedural_parts, shapenetpart)"
        )
    parts = {int(c): [int(p) for p in ps] for c, ps in taxonomy.parts_per_category.items()}
    return list(taxonomy.categories), parts, int(taxonomy.num_parts)


_noted: set[str] = set()  # each batch note is logged once per process (trained and baseline alike)


def _note_batch_fit(batch_size: int, shots: list[int], categories: Tensor, supervised: bool) -> None:
    """Warn (once) that fine-tuning uses batches of the whole training set of a K-shot draw (or of the
    supervised run) when ``batch_size`` is more than it holds (:func:`~.train.finetune_segmenter`
    lowers the batch to it)."""
    num_categories = int(torch.unique(categories).numel())
    sizes = [(f"{k}-shot", k * num_categories) for k in shots]
    if supervised:
        sizes.append(("supervised", int(categories.numel())))
    for what, n in sizes:
        message = (
            f"part_segmentation: eval.part_segmentation.batch_size={batch_size} is more than the {n} "
            f"shapes of the {what} training set; fine-tuning on batches of {n}"
        )
        if batch_size > n and message not in _noted:
            _noted.add(message)
            log.warning(message)


@dataclass(frozen=True)
class PartSegOptions(ScoresLabelledSplits):
    """The ``eval.part_segmentation`` section (the fields are described in
    :func:`part_segmentation_evaluator`); it scores the dataset's labelled ``eval_train`` /
    ``eval_test``, so the recipe loader refuses it for a dataset without them (``mesh_folder`` /
    ``point_folder`` without ``eval_on``) instead of failing after pretraining."""

    shots: tuple[int, ...] = (1, 5, 10)
    seeds: int = 3
    finetune: bool = True
    linear: bool = True
    supervised: bool = False
    linear_init: bool = False
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True
    acd_weight: float = 0.0
    linear_epochs: int = 30
    linear_lr: float = 1e-2
    linear_batch_size: int = 4096
    eval_batch_size: int = 16
    num_renders: int = 4
    up_axis: int = 1

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"part_segmentation needs seeds >= 1, got {self.seeds}")
        if not (self.finetune or self.linear or self.supervised):
            raise ValueError("part_segmentation: enable at least one of finetune, linear, supervised")


def part_segmentation_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[PartSegOptions, WHOLE_SECTION] = PartSegOptions(),
) -> dict[str, float]:
    """K-shot part segmentation, fine-tuned (``ft``) and frozen-linear (``linear``), over ``seeds`` draws
    (every name below is a field of ``options``, :class:`PartSegOptions`).

    For each K in ``shots`` and seeds ``seed .. seed + seeds - 1``: K shapes per category from
    ``eval_train``; the whole ``eval_test`` split is scored. Returns
    ``fewshot{K}_{ft,linear}_{class,instance}_miou`` (mean over seeds) and ``..._std`` (population
    std). ``supervised``: also fine-tune on every labelled training shape (one run) ->
    ``supervised_ft_{class,instance}_miou``.

    Fine-tuning: ``steps`` Adam steps of ``batch_size`` shapes (at most the support set: a larger
    ``batch_size`` is lowered to it, with a warning) at ``lr`` / ``weight_decay`` (cosine),
    scale+shift ``augment``; ``acd_weight > 0`` adds the ACD loss on ``data.pretrain`` at every
    step (the paper's joint training; it uses 10); ``linear_init``: start from the linear probe's
    head instead of a random one (the reference code's ``--init_cls``). Linear probe:
    ``linear_epochs`` / ``linear_lr`` / ``linear_batch_size`` (points per step). ``figures_dir``:
    PNG renders (true vs predicted parts) of ``num_renders`` test shapes for the largest K, first
    seed (``up_axis`` drawn vertically).

    A K larger than some category's number of ``eval_train`` shapes raises a
    :class:`~mmssl.errors.DataError` naming ``eval.part_segmentation.shots`` before anything is fitted.
    """
    device, seed, figures_dir = torch.device(ctx.device), ctx.seed, ctx.figures_dir
    o = options
    shots, seeds, finetune, linear, supervised = o.shots, o.seeds, o.finetune, o.linear, o.supervised
    steps, batch_size, lr, weight_decay, augment = o.steps, o.batch_size, o.lr, o.weight_decay, o.augment
    acd_weight, linear_init, eval_batch_size = o.acd_weight, o.linear_init, o.eval_batch_size
    linear_epochs, linear_lr, linear_batch_size = o.linear_epochs, o.linear_lr, o.linear_batch_size
    num_renders, up_axis = o.num_renders, o.up_axis
    names, parts_per_category, num_parts = _taxonomy(data)
    mask = category_part_mask(parts_per_category, num_parts)
    train, test = load_split(data.eval_train), load_split(data.eval_test)

    def fit(variant: str, support: Mapping[str, Tensor], s: int) -> PartSegmenter:
        if variant == "linear" or linear_init:
            probe = linear_segmenter(
                encoder,
                support,
                num_parts,
                epochs=linear_epochs,
                lr=linear_lr,
                weight_decay=weight_decay,
                batch_size=linear_batch_size,
                seed=s,
                device=device,
            )
            if variant == "linear":
                return probe
        return finetune_segmenter(
            encoder,
            support,
            num_parts,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            augment=augment,
            seed=s,
            device=device,
            acd_data=data.pretrain if acd_weight > 0 else None,
            acd_weight=acd_weight,
            head_init=probe.head if linear_init else None,
        )

    def score(model: PartSegmenter) -> dict[str, float]:
        pred = predict_parts(model, test, mask, eval_batch_size)
        return segmentation_scores(pred, test, parts_per_category)[1]

    variants = [v for v, on in (("ft", finetune), ("linear", linear)) if on]
    shots = sorted({int(k) for k in shots})
    check_shots(train["category"], shots, names)
    if finetune or supervised:
        _note_batch_fit(batch_size, shots if finetune else [], train["category"], supervised)
    results: dict[str, float] = {}
    was_training = encoder.training  # the linear variant runs the caller's encoder in eval mode
    try:
        for k in shots:
            for variant in variants:
                t0, runs = time.perf_counter(), []
                for s in range(seed, seed + seeds):
                    model = fit(variant, subset(train, draw_support(train["category"], k, s, names)), s)
                    runs.append(score(model))
                    if figures_dir is not None and num_renders > 0 and k == shots[-1] and s == seed:
                        path = Path(figures_dir) / f"partseg_{k}shot_{variant}.png"
                        render_predictions(path, model, test, mask, names, num_renders, up_axis)
                for key in runs[0]:
                    v = torch.tensor([run[key] for run in runs], dtype=torch.float64)
                    results[f"fewshot{k}_{variant}_{key}"] = v.mean().item()
                    results[f"fewshot{k}_{variant}_{key}_std"] = v.std(unbiased=False).item()
                log.info("part_segmentation %d-shot %s: %.1fs", k, variant, time.perf_counter() - t0)
        if supervised:
            results.update({f"supervised_ft_{key}": v for key, v in score(fit("ft", train, seed)).items()})
    finally:
        encoder.train(was_training)
    return results
