"""The one bundle a dataset builder returns: what to pretrain on and what to evaluate on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch.utils.data import Dataset

from mmssl.errors import ConfigError

Extra = TypeVar("Extra")


@dataclass
class DataBundle:
    """Datasets for one recipe.

    ``pretrain`` yields what the method's ``forward`` expects: a dict with the keys in ``produces``
    (after ``collate_fn`` and ``batch_transform``). ``eval_train`` / ``eval_test`` yield
    ``{"input": tensor, "label": int}`` with a deterministic evaluation transform, for the kNN / linear /
    few-shot evaluators.

    ``extras`` holds typed, modality-specific objects that methods or evaluators need beyond batches
    (a tokenizer and held-out text blocks, a DAVIS root for label propagation, the part taxonomy of a
    segmentation set ...). Each is a dataclass defined by its modality; a consumer asks for it by type
    with :meth:`extra`, which names the dataset and the consumer when it is absent.

    ``collate_fn`` (optional) collates pretraining items; ``batch_transform`` (optional) runs on each
    whole batch after it reached the training device, without gradients: batched augmentation that
    draws per-sample parameters in one go (on the GPU when training there). ``stats`` are plain numbers
    and strings about how the data was read (files skipped, label sources); they are reported in
    ``metrics.json`` under ``data`` and read by nothing else.
    """

    pretrain: Dataset
    produces: frozenset[str] = frozenset()
    eval_train: Dataset | None = None
    eval_test: Dataset | None = None
    num_classes: int = 0
    extras: tuple[Any, ...] = ()
    collate_fn: Callable[[list[Any]], Any] | None = None
    batch_transform: Callable[[Any], Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def find_extra(self, kind: type[Extra]) -> Extra | None:
        """The extra of type ``kind``, or None."""
        for extra in self.extras:
            if isinstance(extra, kind):
                return extra
        return None

    def extra(self, kind: type[Extra], needed_by: str) -> Extra:
        """The extra of type ``kind``; a :class:`ConfigError` naming ``needed_by`` when there is none."""
        found = self.find_extra(kind)
        if found is None:
            have = ", ".join(type(e).__name__ for e in self.extras) or "none"
            raise ConfigError(
                f"{needed_by} needs {kind.__name__} from the dataset, but dataset "
                f"'{self.name or '?'}' provides {have}; use a dataset that provides it"
            )
        return found
