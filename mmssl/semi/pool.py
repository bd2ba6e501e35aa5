"""The unlabelled pool, a typed extra of a semi-supervised dataset's :class:`~mmssl.data.DataBundle`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class UnlabelledPool:
    """Every unlabelled sample, for methods that predict on all of them at once.

    ``dataset`` yields ``{"input": evaluation view, "index": i}`` in pool order (a batch's ``u_index``
    points into it): the OOD guard scores it, self-training and data distillation pseudo-label it.
    ``is_ood`` (bool ``[pool]``) and ``true_labels`` (``[pool]``, -1 for out-of-domain samples) are
    ground truth for reporting only (the ``classifier_accuracy`` evaluator); methods never read them.
    None where the dataset does not know them.
    """

    dataset: Dataset
    is_ood: Tensor | None = None
    true_labels: Tensor | None = None
