"""Moving a batch (tensors nested in dicts, lists and tuples) to a device: one function for the trainer,
the evaluators and any method that predicts on its own data."""

from __future__ import annotations

from typing import Any

import torch


def move_to(batch: Any, device: torch.device) -> Any:
    """Every tensor in a nested batch moved to ``device`` (asynchronously from pinned memory); other
    values are returned as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch
