"""The caption tokenizer: trained on the training captions (cached like the text modality's), or loaded.

Captions become fixed-length id rows ``[CLS] words [SEP] [PAD] ...`` (WordPiece, BERT's layout: ``[PAD]=0``,
so ``bert_small``'s default ``pad_token_id`` matches), which stack into a batch with the default collate.
The text tower (``bert_small``, :class:`~mmssl.modalities.text.encoders.HFTextEncoder`) takes the id rows
alone and derives its attention mask from the pad id, so it follows the one-input tower contract of
``crossmodal_contrastive`` (its ``global`` output is the mean of the last hidden states over real tokens).

:class:`CaptionTokenizer` is the bundle's typed extra: the ``zero_shot`` evaluator encodes its prompts with
it, and ``crossmodal_contrastive`` checks the text tower against it when it is built
(:meth:`CaptionTokenizer.check_tower`: vocabulary size, pad id, length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.errors import ConfigError
from mmssl.modalities.text.tokenizer import TokenizerSpec, cached_tokenizer, load_tokenizer


@dataclass(frozen=True)
class CaptionTokenizer:
    """``tokenizer`` (a transformers fast tokenizer) and the ``max_length`` every caption is padded or
    truncated to; ``item_key``: the item key the captions are under (the text tower's key)."""

    tokenizer: Any
    max_length: int
    item_key: str = "text"

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Long ``[N, max_length]``: each text with its special tokens, truncated (the closing ``[SEP]`` kept)
        and padded with the pad id."""
        if not texts:
            return torch.empty(0, self.max_length, dtype=torch.long)
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return out["input_ids"].long()

    def num_truncated(self, texts: Sequence[str]) -> int:
        """How many of ``texts`` are longer than ``max_length`` tokens with their special tokens."""
        encoded = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return sum(len(ids) > self.max_length for ids in encoded)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def check_tower(self, key: str, tower: nn.Module, where: str) -> None:
        """Raise :class:`ConfigError` naming the setting when the tower reading ``key`` cannot take these ids:
        a vocabulary smaller than the tokenizer's, another pad id, or fewer positions than ``max_length``.
        Towers without those attributes (not a transformers text encoder) are not checked."""
        if key != self.item_key:
            return
        vocab = getattr(tower, "vocab_size", None)
        if vocab is not None and vocab < self.vocab_size:
            raise ConfigError(
                f"'{where}.vocab_size' is {vocab} but the caption tokenizer has {self.vocab_size} tokens; "
                f"set {where}.vocab_size: {self.vocab_size} (or more)"
            )
        pad = getattr(tower, "pad_token_id", None)
        if pad is not None and pad != self.pad_id:
            raise ConfigError(
                f"'{where}.pad_token_id' is {pad} but the caption tokenizer pads with {self.pad_id}"
            )
        positions = getattr(tower, "max_length", None)
        if positions is not None and positions < self.max_length:
            raise ConfigError(
                f"'{where}.max_length' is {positions} but captions are {self.max_length} tokens long; "
                f"raise it or lower data.max_length"
            )


def caption_tokenizer(
    captions: Sequence[str],
    *,
    max_length: int,
    tokenizer: str | None = None,
    vocab_size: int = 1024,
    min_frequency: int = 2,
    lowercase: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[CaptionTokenizer, dict[str, Any]]:
    """A WordPiece tokenizer trained on ``captions`` (cached under ``$MMSSL_CACHE/text_tokenizers`` or
    ``cache_dir``), or the one saved in the local folder ``tokenizer``; returns it with ``stats``."""
    if tokenizer is not None:
        tok, folder, hit = load_tokenizer(tokenizer), Path(tokenizer), True
    else:
        spec = TokenizerSpec("wordpiece", vocab_size, min_frequency, lowercase, max_length=max_length)
        tok, folder, hit = cached_tokenizer(list(captions), spec, cache_dir=cache_dir)
    stats = {"tokenizer_dir": str(folder), "tokenizer_cache_hit": hit, "vocab_size": len(tok)}
    return CaptionTokenizer(tok, max_length), stats
