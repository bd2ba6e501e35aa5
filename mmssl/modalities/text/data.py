"""The text dataset builder: corpus -> tokenizer -> packed blocks, plus a labelled few-shot task.

``text_corpus`` returns a :class:`~mmssl.data.DataBundle` with

- ``pretrain``: packed training blocks ``{"input_ids": [L], "attention_mask": [L]}``
  (:mod:`~mmssl.modalities.text.packing`);
- ``eval_train`` / ``eval_test``: the built-in labelled task "which document does this passage come
  from": windows of ``eval_length`` tokens ``{"input": ids [eval_length], "label": int}``, cut from
  the training / validation units of the ``task_classes`` largest document groups (see
  :mod:`~mmssl.modalities.text.corpus` for what a group is: a stdlib module, a file of a folder, a
  span of a single file, a JSONL label). Test passages come from validation text only;
- ``extras``: a :class:`~mmssl.modalities.text.extras.LanguageData` with the tokenizer (which the
  LM methods need) and the validation blocks (for perplexity and masked accuracy);
- ``stats``: the corpus, the tokenizer's folder and vocabulary size, class names, unit and token
  counts, and the files / JSONL lines skipped as unreadable (``skip_bad``).

With no ``root`` the corpus is the built-in one (standard-library docstrings); nothing is
downloaded. The tokenizer is trained on the training units, or loaded from a local folder.

With ``shards`` the pretraining items stream from text shards instead (:mod:`~mmssl.modalities.text.shards`)
and the corpus gives the evaluation sets only; the tokenizer is then trained on the shards' first records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mmssl.data import DataBundle, SkipBadFiles
from mmssl.data.shards import ShardStream, read_manifest
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.text.corpus import TextUnit, builtin_corpus, read_corpus, split_units
from mmssl.modalities.text.extras import LanguageData
from mmssl.modalities.text.keys import ATTENTION_MASK, INPUT_IDS
from mmssl.modalities.text.packing import LabelledBlocks, TokenBlocks, pack_blocks
from mmssl.modalities.text.shards import DocumentWindows, first_record_units, text_shard_samples
from mmssl.modalities.text.tokenizer import TokenizerSpec, cached_tokenizer, encode_texts, load_tokenizer

log = logging.getLogger(__name__)

#: how many shard records a tokenizer is trained on when ``data.tokenizer`` gives none
DEFAULT_TOKENIZER_RECORDS = 10_000


def packing_ids(tokenizer: Any) -> dict[str, int | None]:
    """``pad_id``, ``sep_id``, ``prefix_id`` for :func:`pack_blocks`: BERT-style when the tokenizer has
    ``[CLS]`` (documents end in ``[SEP]``, blocks start with ``[CLS]``), else GPT-style (``<eos>``)."""
    if tokenizer.pad_token_id is None:
        raise DataError("the tokenizer has no pad token; packed blocks need one for the last block")
    if tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
        return {
            "pad_id": tokenizer.pad_token_id,
            "sep_id": tokenizer.sep_token_id,
            "prefix_id": tokenizer.cls_token_id,
        }
    return {"pad_id": tokenizer.pad_token_id, "sep_id": tokenizer.eos_token_id, "prefix_id": None}


def _evenly_spaced(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread over ``0 .. n - 1`` (first and last included)."""
    if k >= n:
        return list(range(n))
    return [round(i * (n - 1) / max(k - 1, 1)) for i in range(k)]


def _group_windows(
    units: Sequence[TextUnit], ids: Sequence[list[int]], length: int, pack: dict[str, int | None]
) -> dict[str, torch.Tensor]:
    """Full ``length``-token windows of every group (its units packed in corpus order)."""
    by_group: dict[str, list[list[int]]] = {}
    for unit, doc in zip(units, ids):
        by_group.setdefault(unit.group, []).append(doc)
    out = {}
    for group, docs in by_group.items():
        windows, _ = pack_blocks(docs, length, drop_last=True, **pack)
        out[group] = windows
    return out


def labelled_task(
    train_units: Sequence[TextUnit],
    train_ids: Sequence[list[int]],
    val_units: Sequence[TextUnit],
    val_ids: Sequence[list[int]],
    pack: dict[str, int | None],
    *,
    num_classes: int,
    length: int,
    train_per_class: int,
    test_per_class: int,
    min_per_class: int,
) -> tuple[LabelledBlocks, LabelledBlocks] | None:
    """ "Which group is this passage from": the ``num_classes`` groups with most training windows
    among those with at least ``min_per_class`` windows in both splits. None if fewer than 2."""
    train_windows = _group_windows(train_units, train_ids, length, pack)
    val_windows = _group_windows(val_units, val_ids, length, pack)
    eligible = [
        g
        for g in train_windows
        if len(train_windows[g]) >= min_per_class and len(val_windows.get(g, ())) >= min_per_class
    ]
    classes = sorted(eligible, key=lambda g: (-len(train_windows[g]), g))[:num_classes]
    if len(classes) < 2:
        return None
    classes = sorted(classes)  # label order independent of sizes

    def build(windows: dict[str, torch.Tensor], per_class: int) -> LabelledBlocks:
        parts, labels = [], []
        for label, g in enumerate(classes):
            picked = windows[g][_evenly_spaced(len(windows[g]), per_class)]
            parts.append(picked)
            labels += [label] * len(picked)
        return LabelledBlocks(torch.cat(parts), labels, classes)

    return build(train_windows, train_per_class), build(val_windows, test_per_class)


def text_corpus_keys(options: Mapping[str, Any]) -> set[str]:
    """The pretraining items' keys (packed blocks); also refuses, when the recipe loads, a
    ``tokenizer_records`` that cannot apply: without ``shards`` (a folder corpus trains its tokenizer on
    all its training units) or beside a given ``tokenizer``."""
    records = options.get("tokenizer_records")
    if records is not None and options.get("shards") is None:
        raise ConfigError(
            f"data.tokenizer_records ({records}) applies to data.shards only: a corpus read from data.root "
            "or the built-in one trains its tokenizer on all its training text"
        )
    if records is not None and options.get("tokenizer") is not None:
        raise ConfigError(
            f"data.tokenizer ({options['tokenizer']}) and data.tokenizer_records ({records}): the "
            "tokenizer is loaded from that folder or trained on that many shard records, not both"
        )
    return {INPUT_IDS, ATTENTION_MASK}


@data_source(produces=text_corpus_keys)
def text_corpus(
    root: str | None = None,
    text_field: str = "text",
    label_field: str | None = None,
    builtin_modules: list[str] | None = None,
    tokenizer: str | None = None,
    tokenizer_kind: str = "wordpiece",
    vocab_size: int = 4096,
    min_frequency: int = 2,
    lowercase: bool = True,
    block_size: int = 128,
    val_fraction: float = 0.1,
    val_split: str = "auto",
    task_classes: int = 8,
    eval_length: int = 64,
    eval_train_per_class: int = 40,
    eval_test_per_class: int = 20,
    eval_min_per_class: int = 10,
    cache_dir: str | None = None,
    skip_bad: bool = False,
    seed: int = 0,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
    tokenizer_records: int | None = None,
) -> DataBundle:
    """A text corpus for language-model pre-training and few-shot evaluation (see the module docstring).

    ``root``: a plain text file, a ``.jsonl`` file (``text_field``, optional ``label_field``) or a
    folder of them; None: the built-in standard-library docstrings (``builtin_modules`` restricts
    them to some top-level modules). ``tokenizer``: a local tokenizer folder, else one is trained
    (``tokenizer_kind`` ``wordpiece`` for the masked LM, ``bpe`` for the causal LM; ``vocab_size``,
    ``min_frequency``, ``lowercase``) and cached. ``cache_dir`` replaces the cache root
    (``$MMSSL_CACHE`` or ``~/.cache/mmssl``) for the built-in corpus and the tokenizers.
    ``block_size``: tokens per packed block (the encoder's ``max_length`` or less).
    ``val_fraction``: share of units held out for validation; ``val_split``: ``hash`` (by content),
    ``tail`` (the contiguous end of each document part) or ``auto`` (``tail`` for a single file, else
    ``hash``; see :mod:`mmssl.modalities.text.corpus`); ``stats["val_split"]`` says which. The few-shot
    task uses ``task_classes`` groups, ``eval_length``-token windows, up to ``eval_train_per_class`` /
    ``eval_test_per_class`` per class, and only groups with at least ``eval_min_per_class``
    windows in each split. ``skip_bad``: skip unreadable files and
    JSONL lines with a warning instead of raising.

    ``shards``: pretrain on text shards (``data_tools/make_shards.py text``) instead of the training
    blocks: streamed (:class:`~mmssl.data.shards.ShardStream`: split over processes and data-loader
    workers, block shuffle of ``shuffle_buffer`` records, exact resume), each item a ``block_size`` window
    of one record's document (:mod:`~mmssl.modalities.text.shards`). The evaluation text (the few-shot
    task, the validation blocks) still comes from ``root``, or the built-in corpus when it is None. The
    tokenizer is ``tokenizer`` when given, else one trained (as above, cached) on the units of the first
    ``tokenizer_records`` records of the shards (default 10,000; make_shards.py writes records in a seeded
    random order, so they are a sample of the corpus), never on the evaluation text.
    """
    text_corpus_keys({"shards": shards, "tokenizer": tokenizer, "tokenizer_records": tokenizer_records})
    skipping = SkipBadFiles(skip_bad)
    if root is None:
        units = builtin_corpus(builtin_modules, cache_dir=Path(cache_dir) / "text" if cache_dir else None)
        corpus_name = "builtin:stdlib-docstrings"
    else:
        units = read_corpus(root, text_field, label_field, num_parts=task_classes, skipping=skipping)
        corpus_name = str(Path(root).expanduser())
    if val_split == "auto":
        val_split = "tail" if root is not None and Path(root).expanduser().is_file() else "hash"
    train_units, val_units = split_units(units, val_fraction, val_split)
    if not train_units:
        raise DataError(f"no training text in {corpus_name} after holding out val_fraction={val_fraction}")
    manifest = read_manifest(shards, modality="text") if shards is not None else None
    records = DEFAULT_TOKENIZER_RECORDS if tokenizer_records is None else tokenizer_records
    records = None if tokenizer is not None else records  # how many the tokenizer is trained on
    if tokenizer is not None:
        tok, tok_dir, hit = load_tokenizer(tokenizer), Path(tokenizer), True
    else:
        spec = TokenizerSpec(tokenizer_kind, vocab_size, min_frequency, lowercase, max_length=block_size)
        if manifest is None:
            texts = [u.text for u in train_units]
        else:  # the pretraining text, not the evaluation corpus
            texts = first_record_units(manifest, records)  # type: ignore[arg-type]
        tok, tok_dir, hit = cached_tokenizer(
            texts, spec, cache_dir=Path(cache_dir) / "text_tokenizers" if cache_dir else None
        )
    pack = packing_ids(tok)
    train_ids = encode_texts(tok, [u.text for u in train_units])
    val_ids = encode_texts(tok, [u.text for u in val_units])
    if manifest is None:
        pretrain: TokenBlocks | ShardStream = TokenBlocks(*pack_blocks(train_ids, block_size, **pack))
        streamed: dict[str, Any] = {"num_train_tokens": pretrain.num_tokens}
    else:
        documents = text_shard_samples(shards, tok, pack["sep_id"])  # type: ignore[arg-type]
        items = DocumentWindows(documents, block_size, pack["pad_id"], pack["prefix_id"])  # type: ignore[arg-type]
        pretrain = ShardStream(items, documents, seed=seed, shuffle_buffer=shuffle_buffer)
        streamed = {
            "shards": str(manifest.root),
            "num_shards": len(manifest.shards),
            "num_train": manifest.num_samples,
            "tokenizer_records": records,
        }
    val_blocks = TokenBlocks(*pack_blocks(val_ids, block_size, **pack))
    if len(val_blocks) == 0:
        log.warning(
            "%s: no validation text (val_fraction=%s); perplexity cannot be measured",
            corpus_name,
            val_fraction,
        )
    task = labelled_task(
        train_units,
        train_ids,
        val_units,
        val_ids,
        pack,
        num_classes=task_classes,
        length=eval_length,
        train_per_class=eval_train_per_class,
        test_per_class=eval_test_per_class,
        min_per_class=eval_min_per_class,
    )
    if task is None:
        log.warning("%s: fewer than 2 document groups with enough text; no few-shot task", corpus_name)
    eval_train, eval_test = task if task is not None else (None, None)
    return DataBundle(
        pretrain=pretrain,
        eval_train=eval_train,
        eval_test=eval_test,
        num_classes=len(eval_train.class_names) if eval_train is not None else 0,
        extras=(LanguageData(tokenizer=tok, val_blocks=val_blocks),),
        name="text_corpus",
        stats={
            "corpus": corpus_name,
            "val_split": f"{val_split} ({val_fraction:.0%} of the units)",
            "tokenizer_dir": str(tok_dir),
            "tokenizer_cache_hit": hit,
            "vocab_size": len(tok),
            "block_size": block_size,
            "class_names": list(eval_train.class_names) if eval_train is not None else [],
            "num_train_units": len(train_units),
            "num_val_units": len(val_units),
            **streamed,
            "num_val_tokens": val_blocks.num_tokens,
            "num_skipped": skipping.num_skipped,
            "bad_files": [str(p) for p in skipping.bad_files],
        },
    )
