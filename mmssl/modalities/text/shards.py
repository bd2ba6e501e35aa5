"""Text shards: records with one ``txt`` member (a whole ``.txt`` file, or one JSONL line's text), decoded
into the token stream of a document and cut into training blocks as they stream.

Written by ``data_tools/make_shards.py text`` and streamed through :class:`~mmssl.data.shards.ShardStream`
by ``text_corpus``'s ``shards`` option. A record is read as the folder corpus reads its file
(:mod:`~mmssl.modalities.text.corpus`): a ``.txt`` file's paragraphs are its units, a JSONL line is one;
the units are tokenised and joined into one stream, each followed by the separator
(:func:`~mmssl.modalities.text.packing.token_stream`), as the folder corpus packs all its units.

A folder corpus packs its whole stream into consecutive blocks once; a stream of records gives one item
per record and epoch, so each item is one block-sized window of its record's stream at a random offset
(drawn under the sample's seed, as an audio crop is), padded like the folder's last block when the record
is shorter (:class:`DocumentWindows`). A long document thus contributes a different window each epoch.
Tokenising a whole book for one window would cost seconds per item, so a record longer than
:data:`MAX_RECORD_CHARS` characters is first cut to a random run of whole paragraphs of that length
(:func:`paragraph_run`); corpora of documents (web pages, JSONL lines) never reach it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.data.shards import Record, ShardManifest, ShardSamples, iter_records, read_manifest
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.text.corpus import split_paragraphs
from mmssl.modalities.text.keys import ATTENTION_MASK, INPUT_IDS
from mmssl.modalities.text.packing import pack_blocks, token_stream
from mmssl.modalities.text.tokenizer import encode_texts

TEXT_MEMBER = "txt"
#: characters of a record tokenised per item at most (64 Ki: ~20 ms with a fast tokenizer)
MAX_RECORD_CHARS = 1 << 16


def record_units(record: Record, where: str) -> list[str]:
    """The unit texts of a record: a JSONL line's text (make_shards.py's ``json`` member gives its
    ``line``), else the paragraphs of the file (:func:`~mmssl.modalities.text.corpus.split_paragraphs`).
    :class:`CorruptFileError` naming the record when it has no ``txt`` member, is not UTF-8 or holds no
    text."""
    if TEXT_MEMBER not in record:
        raise CorruptFileError(where, f"no {TEXT_MEMBER} member (members: {sorted(record)})")
    try:
        text = record[TEXT_MEMBER].decode("utf-8")
        meta = json.loads(record["json"]) if "json" in record else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(where, f"{type(err).__name__}: {err}") from err
    units = ([text.strip()] if text.strip() else []) if "line" in meta else split_paragraphs(text)
    if not units:
        raise CorruptFileError(where, "no text in it")
    return units


def paragraph_run(units: Sequence[str], max_chars: int = MAX_RECORD_CHARS) -> list[str]:
    """All of ``units`` when they hold at most ``max_chars`` characters; else consecutive units from a
    uniformly drawn first one (torch's generator: seeded per sample), up to ``max_chars`` in all (the
    first one cut to ``max_chars`` when it alone is longer)."""
    if sum(len(u) for u in units) <= max_chars:
        return list(units)
    start = int(torch.randint(len(units), ()))
    run, total = [], 0
    for unit in units[start:]:
        if run and total + len(unit) > max_chars:
            break
        run.append(unit[:max_chars])
        total += len(run[-1])
    return run


def decode_text_record(record: Record, where: str, tokenizer: Any, sep_id: int | None) -> np.ndarray:
    """The record's token stream (int64 ``[T]``): its units (:func:`record_units`, cut by
    :func:`paragraph_run` when long) tokenised and joined, each followed by ``sep_id``."""
    return token_stream(encode_texts(tokenizer, paragraph_run(record_units(record, where))), sep_id)


class DocumentWindows(Dataset):
    """Pretraining items ``{"input_ids": [block_size], "attention_mask": [block_size]}`` (int64) of
    documents given as token streams (``documents[i]``: a text shard set's samples): ``prefix_id``, then
    a window of ``block_size - 1`` tokens (``block_size`` without a prefix) at a uniformly drawn offset,
    right-padded with ``pad_id`` (attention 0) when the document is shorter: the blocks of
    :func:`~mmssl.modalities.text.packing.pack_blocks`, one per document."""

    def __init__(self, documents: Dataset, block_size: int, pad_id: int, prefix_id: int | None) -> None:
        self.documents, self.block_size = documents, int(block_size)
        self.pad_id, self.prefix_id = pad_id, prefix_id
        self.body = self.block_size - (1 if prefix_id is not None else 0)
        if self.body < 1:
            raise DataError(f"block_size {block_size} leaves no room for tokens after the prefix")

    def __len__(self) -> int:
        return len(self.documents)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        stream = self.documents[index]
        start = int(torch.randint(max(0, len(stream) - self.body) + 1, ()))
        window = stream[start : start + self.body]
        ids, mask = pack_blocks([window], self.block_size, pad_id=self.pad_id, prefix_id=self.prefix_id)
        return {INPUT_IDS: ids[0], ATTENTION_MASK: mask[0]}


def first_record_units(manifest: ShardManifest, count: int) -> list[str]:
    """The units of the first ``count`` records of the set, in manifest order (make_shards.py writes
    records in a seeded random order, so they are a random sample of the corpus): what a tokenizer is
    trained on when none is given (the folder corpus trains one on its units)."""
    if count < 1:
        raise DataError(f"data.tokenizer_records must be >= 1, got {count}")
    units: list[str] = []
    read = 0
    for shard in manifest.shards:
        path = manifest.path(shard)
        for record in iter_records(path, expected=shard.samples):
            units += record_units(record, f"{path}:{record['__key__']}")
            read += 1
            if read == count:
                return units
    return units


def text_shard_samples(location: str, tokenizer: Any, sep_id: int | None = None) -> ShardSamples:
    """The text shard set at ``location`` (a folder with ``shards.json``, or that file); each record
    decodes to its token stream under ``tokenizer``, documents separated by ``sep_id``."""
    decode = functools.partial(decode_text_record, tokenizer=tokenizer, sep_id=sep_id)  # picklable
    return ShardSamples(read_manifest(location, modality="text"), decode)
