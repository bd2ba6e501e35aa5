"""Part-segmentation splits as stacked tensors, and the K-shot support draws of the few-shot protocol
(Gadelha et al., ECCV 2020, Sec. 4: K labelled shapes per category)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmssl.errors import DataError
from mmssl.eval.few_shot import sample_n_shot
from mmssl.modalities.pointcloud.keys import CATEGORY, NORMALS, PARTS, POINTS


def load_split(dataset: Dataset, batch_size: int = 32) -> dict[str, Tensor]:
    """Every item of a part-segmentation split stacked: points, normals, parts [S, N], category [S]."""
    if dataset is None or len(dataset) == 0:
        raise DataError("part_segmentation needs non-empty eval_train / eval_test splits")
    out: dict[str, list[Tensor]] = {POINTS: [], NORMALS: [], PARTS: [], CATEGORY: []}
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            for key in out:
                out[key].append(torch.as_tensor(batch[key]))
    except KeyError as err:
        raise DataError(
            f"part_segmentation items need keys points, normals, parts, category; missing {err}"
        ) from None
    except RuntimeError as err:  # default collate of clouds with different point counts
        raise DataError(f"part_segmentation needs a fixed number of points per shape: {err}") from None
    split = {k: torch.cat(v) for k, v in out.items()}
    split[PARTS], split[CATEGORY] = split[PARTS].long(), split[CATEGORY].long()
    return split


def subset(split: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    """The shapes ``idx`` of a stacked split."""
    return {k: v[idx] for k, v in split.items()}


def to_device(split: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in split.items()}


def sample_k_shot(categories: Tensor, k: int, seed: int) -> Tensor:
    """Indices of exactly ``k`` shapes of every category present, drawn with ``seed`` (deterministic)."""
    return sample_n_shot(categories, k, seed)


def check_shots(categories: Tensor, shots: list[int], names: list[str]) -> None:
    """Every K in ``shots`` can be drawn from every category present in ``categories``; else a
    :class:`~mmssl.errors.DataError` naming the evaluator's option, before any model is fitted."""
    classes, counts = torch.unique(categories.cpu().long(), return_counts=True)
    fewest = int(counts.min())
    too_many = [k for k in shots if k > fewest]
    if too_many:
        cls = int(classes[int(counts.argmin())])
        name = names[cls] if 0 <= cls < len(names) else str(cls)
        raise DataError(
            f"part_segmentation: cannot draw {too_many[0]} labelled shapes per category (category "
            f"{cls} '{name}' has only {fewest} in eval_train); lower eval.part_segmentation.shots to at "
            f"most {fewest} (asked: {shots}; categories: {names})"
        )


def draw_support(categories: Tensor, k: int, seed: int, names: list[str]) -> Tensor:
    """:func:`sample_k_shot`, with a :class:`~mmssl.errors.DataError` naming the evaluator's option when a
    category has fewer than ``k`` shapes."""
    try:
        return sample_k_shot(categories, k, seed)
    except ValueError as err:
        raise DataError(
            f"part_segmentation: cannot draw {k} labelled shapes per category ({err}); "
            f"lower eval.part_segmentation.shots (categories: {names})"
        ) from None
