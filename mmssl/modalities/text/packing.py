"""Packing tokenised documents into fixed-length blocks.

As in BERT's and GPT-2's pre-training data pipelines (and transformers' ``run_mlm`` / ``run_clm``
``group_texts``), documents are concatenated into one stream, each followed by a separator
(``[SEP]`` / ``<|endoftext|>``), and the stream is cut into consecutive pieces::

    stream = d_1 + [sep] + d_2 + [sep] + ... + d_n + [sep]
    block_i = [prefix] + stream[i * b : (i + 1) * b],     b = block_size - (1 if prefix else 0)

``prefix`` is BERT's ``[CLS]`` (so every block starts the way BERT inputs do), none for GPT-2. The
last piece is right-padded with ``pad_id`` and its attention mask is 0 there, so every token of
the stream appears exactly once in the blocks (``drop_last=True`` drops that piece instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


def token_stream(docs: Sequence[Sequence[int]], sep_id: int | None) -> np.ndarray:
    """All documents' ids concatenated, each followed by ``sep_id`` (when given); int64."""
    parts: list[np.ndarray] = []
    sep = np.array([sep_id], dtype=np.int64) if sep_id is not None else None
    for doc in docs:
        parts.append(np.asarray(doc, dtype=np.int64))
        if sep is not None:
            parts.append(sep)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def pack_blocks(
    docs: Sequence[Sequence[int]],
    block_size: int,
    *,
    pad_id: int,
    sep_id: int | None = None,
    prefix_id: int | None = None,
    drop_last: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(input_ids [N, block_size], attention_mask [N, block_size])`` int64, as the module describes."""
    body = block_size - (1 if prefix_id is not None else 0)
    if body < 1:
        raise ValueError(f"block_size {block_size} leaves no room for tokens after the prefix")
    stream = token_stream(docs, sep_id)
    n_full, rest = divmod(len(stream), body)
    n = n_full + (1 if rest and not drop_last else 0)
    ids = np.full((n, body), pad_id, dtype=np.int64)
    mask = np.zeros((n, body), dtype=np.int64)
    used = stream[: n * body] if drop_last else stream
    ids.reshape(-1)[: len(used)] = used
    mask.reshape(-1)[: len(used)] = 1
    if prefix_id is not None:
        ids = np.concatenate([np.full((n, 1), prefix_id, dtype=np.int64), ids], axis=1)
        mask = np.concatenate([np.ones((n, 1), dtype=np.int64), mask], axis=1)
    return torch.from_numpy(ids), torch.from_numpy(mask)


class TokenBlocks(Dataset):
    """Packed blocks as pre-training items ``{"input_ids": [L], "attention_mask": [L]}`` (int64)."""

    def __init__(self, input_ids: Tensor, attention_mask: Tensor) -> None:
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError("input_ids and attention_mask must both be [N, L]")
        self.input_ids, self.attention_mask = input_ids, attention_mask

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids[index], "attention_mask": self.attention_mask[index]}


class LabelledBlocks(Dataset):
    """Token windows with a class: ``{"input": ids [L], "label": int}`` (the evaluation contract)."""

    def __init__(self, input_ids: Tensor, labels: Sequence[int], class_names: Sequence[str]) -> None:
        if input_ids.shape[0] != len(labels):
            raise ValueError("one label per window is needed")
        self.input_ids = input_ids
        self.targets: list[int] = [int(y) for y in labels]
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"input": self.input_ids[index], "label": self.targets[index]}
