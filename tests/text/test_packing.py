"""Packing documents into blocks keeps every token exactly once, in order."""

from __future__ import annotations

import pytest
import torch

from mmssl.modalities.text.packing import TokenBlocks, pack_blocks, token_stream

PAD, SEP, CLS = 0, 3, 2


def _docs(n: int = 23, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 40, (n,), generator=g).tolist()
    return [torch.randint(10, 100, (k,), generator=g).tolist() for k in lengths]


@pytest.mark.parametrize("prefix", [CLS, None])
def test_every_token_of_the_stream_appears_once_in_order(prefix):
    docs = _docs()
    ids, mask = pack_blocks(docs, 16, pad_id=PAD, sep_id=SEP, prefix_id=prefix)
    body = slice(1, None) if prefix is not None else slice(None)
    if prefix is not None:
        assert (ids[:, 0] == CLS).all() and (mask[:, 0] == 1).all()
    expected = [t for d in docs for t in [*d, SEP]]
    # Reading the blocks' real tokens row by row (prefix column left out) gives the stream back.
    assert ids[:, body][mask[:, body].bool()].tolist() == expected
    # Only the last block has padding, and it is all at the end.
    assert mask[:-1].all()
    tail = mask[-1, body]
    assert tail.tolist() == sorted(tail.tolist(), reverse=True)
    assert (ids[-1, body][tail == 0] == PAD).all()
    assert ids.shape[1] == 16 and ids.shape[0] == -(-len(expected) // ids[:, body].shape[1])


def test_drop_last_keeps_only_full_blocks():
    docs = _docs(seed=1)
    stream = token_stream(docs, SEP).tolist()
    ids, mask = pack_blocks(docs, 10, pad_id=PAD, sep_id=SEP, prefix_id=CLS, drop_last=True)
    assert mask.all()
    assert ids[:, 1:].reshape(-1).tolist() == stream[: ids.shape[0] * 9]
    assert len(stream) - ids.shape[0] * 9 < 9


def test_token_blocks_items():
    ids, mask = pack_blocks([[5, 6, 7]], 4, pad_id=PAD, sep_id=None)
    blocks = TokenBlocks(ids, mask)
    assert len(blocks) == 1 and blocks.num_tokens == 3
    assert blocks[0]["input_ids"].tolist() == [5, 6, 7, PAD]
    assert blocks[0]["attention_mask"].tolist() == [1, 1, 1, 0]
