"""Modality-free extras: typed data a bundle carries beyond its own batches, for modality-free consumers.

A modality's own extras (a DAVIS root, a tokenizer ...) live with that modality. The ones here are read by
code that knows no modality, chiefly the cross-modal evaluators (:mod:`mmssl.crossmodal`), and built by
any modality that pairs two inputs:

* :class:`HeldOutPairs`: held-out paired items (dicts keyed by item key, e.g. ``{"image", "audio"}``),
  for retrieval in both directions between two towers (CLIP, Radford et al. 2021, Sec. 3.1);
* :class:`LabelledSplits`: labelled train / test sets for another input than the bundle's own
  ``eval_train`` / ``eval_test`` (e.g. the audio of an audio-visual set), picked by ``name``, for the
  N-shot evaluation of the tower that reads that input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset


@dataclass(frozen=True)
class HeldOutPairs:
    """Held-out paired items: ``dataset[i]`` is a dict with one entry per item key (deterministic)."""

    dataset: Dataset


@dataclass(frozen=True)
class LabelledSplits:
    """Labelled sets ``{"input", "label"}`` under ``name`` (e.g. ``"audio_eval"``): the evaluation contract
    of ``eval_train`` / ``eval_test`` for an input other than the bundle's own."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int


def labelled_splits(extras: Iterable[Any], name: str) -> LabelledSplits | None:
    """The :class:`LabelledSplits` called ``name`` among ``extras``, or None."""
    return next((e for e in extras if isinstance(e, LabelledSplits) and e.name == name), None)
