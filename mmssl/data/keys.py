"""Batch keys: the names of what a pretraining batch holds, declared once with their meaning.

A batch is a plain ``dict`` (so ``default_collate``, ``move_to`` and DataLoader workers handle it);
its keys are :data:`BatchKey` constants declared with :func:`batch_key` instead of bare strings. A data
source declares the keys its pretraining items produce and a method declares the keys its ``forward``
consumes; the recipe loader checks that the second set is inside the first before anything is built
(:func:`check_batch_keys`).

At run time a key is a plain ``str`` and its description lives in :data:`DESCRIPTIONS` (:func:`describe`):
a ``str`` subclass carrying its description broke ``torch.compile`` on torch 2.11, whose Dynamo treats
such a key as an opaque object, so a method's ``key in batch`` read False or failed to trace.

The keys below are modality-free; a modality declares its own next to its data (e.g.
``mmssl.modalities.video.keys.CLIP``) with :func:`batch_key`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NewType

from mmssl.errors import ConfigError

BatchKey = NewType("BatchKey", str)
"""A batch-dictionary key: a ``str`` for type checkers and at run time."""

DESCRIPTIONS: dict[str, str] = {}
"""One-line description of each declared key's value, by key."""


def batch_key(name: str, description: str) -> BatchKey:
    """Declare the batch key ``name`` with a one-line description of its value (one meaning per name)."""
    if DESCRIPTIONS.setdefault(name, description) != description:
        raise ValueError(f"batch key '{name}' is already declared as: {DESCRIPTIONS[name]}")
    return BatchKey(name)


def describe(key: str) -> str:
    """The declared description of ``key``."""
    return DESCRIPTIONS[key]


VIEWS = batch_key("views", "list of V augmented views of each sample, each [B, ...] (two-view methods)")
INDEX = batch_key("index", "[B] position of each sample in the pretraining set (memory banks, fixed targets)")
INPUT = batch_key("input", "[B, ...] one input per sample in evaluation datasets")
LABEL = batch_key("label", "[B] class index per sample in evaluation datasets")
IMAGE = batch_key("image", "[B, 3, H, W] one (possibly augmented) image per sample")
IMAGES_UINT8 = batch_key(
    "images", "[B, 3, S, S] uint8 images for batched augmentation (the bundle's batch_transform makes views)"
)


def check_batch_keys(
    consumed: Iterable[str], produced: Iterable[str], method: str, dataset: str, where: str = "recipe"
) -> None:
    """Raise :class:`ConfigError` when the method reads a key the dataset's items do not have."""
    produced = set(produced)
    missing = sorted(set(consumed) - produced)
    if missing:
        raise ConfigError(
            f"{where}: method '{method}' reads batch key(s) {', '.join(repr(k) for k in missing)} "
            f"but dataset "
            f"'{dataset}' produces {', '.join(repr(k) for k in sorted(produced)) or 'nothing'} with these "
            "options (for a two-view method set the dataset's views, e.g. data.views=simclr)"
        )
