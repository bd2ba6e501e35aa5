"""Sub-word tokenizers trained on the corpus with HF ``tokenizers``, cached, saved in transformers' format.

Two kinds, each laid out so that its special tokens take the first ids (the text encoders' defaults
assume this layout; :func:`check_special_ids` verifies it against an encoder):

- ``wordpiece`` (BERT, Devlin et al. 2019): BERT's normaliser (lower-casing optional) and
  pre-tokeniser, WordPiece vocabulary; ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``; encoding a
  text for the model gives ``[CLS] text [SEP]``.
- ``bpe`` (GPT-2, Radford et al. 2019): byte-level BPE, so every string is representable without
  an unknown token; ``<|endoftext|>=0`` (bos = eos = unk, GPT-2's only special token) and
  ``<pad>=1``.

The result is a transformers fast tokenizer, so ``save_pretrained(folder)`` writes files that
``AutoTokenizer.from_pretrained(folder)`` reads without mmssl. Trained tokenizers are cached under
``$MMSSL_CACHE/text_tokenizers/<key>``, the key hashing the training texts and every setting, with a
``checksums.sha256`` of the folder's files: a cached tokenizer whose files differ from it (cut short,
edited, missing) is logged, naming the file, and trained again, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from mmssl.cache import cache_folder, verify_checksums, write_checksums
from mmssl.errors import DataError
from mmssl.modalities.text.corpus import corpus_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

TOKENIZER_KINDS: tuple[str, ...] = ("wordpiece", "bpe")
# Bump when the tokenizer pipeline changes, so stale caches are not reused.
TOKENIZER_VERSION = 1
WORDPIECE_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
BPE_SPECIALS = {
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<pad>",
}


@dataclass(frozen=True)
class TokenizerSpec:
    """How a tokenizer is trained: ``kind`` (``wordpiece`` | ``bpe``), ``vocab_size`` (an upper bound:
    a small corpus may yield fewer pieces), ``min_frequency`` of a merge, ``lowercase`` (WordPiece only;
    byte-level BPE keeps every byte) and ``max_length``, the tokenizer's ``model_max_length`` (the
    encoder's position count)."""

    kind: str = "wordpiece"
    vocab_size: int = 8192
    min_frequency: int = 2
    lowercase: bool = True
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise DataError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, got '{self.kind}'")

    def cache_key(self, texts: Sequence[str]) -> str:
        """Hash of the training texts and every setting (and the pipeline's and library's versions)."""
        spec = {
            "corpus": corpus_fingerprint(texts),
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "lowercase": self.lowercase if self.kind == "wordpiece" else None,
            "max_length": self.max_length,
            "version": TOKENIZER_VERSION,
            "tokenizers": tokenizers.__version__,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def train_tokenizer(texts: Sequence[str], spec: TokenizerSpec = TokenizerSpec()) -> PreTrainedTokenizerFast:
    """Train a ``wordpiece`` or ``bpe`` tokenizer on ``texts`` as ``spec`` says (see the module docstring)."""
    from transformers import PreTrainedTokenizerFast  # lazy: see encoders.py

    kind, vocab_size, min_frequency = spec.kind, spec.vocab_size, spec.min_frequency
    if kind == "wordpiece":
        specials = list(WORDPIECE_SPECIALS.values())
        tok = Tokenizer(models.WordPiece(unk_token=WORDPIECE_SPECIALS["unk_token"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=spec.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
        )
        tok.train_from_iterator(texts, trainer)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        special_map = WORDPIECE_SPECIALS
    else:
        specials = list(dict.fromkeys(BPE_SPECIALS.values()))  # <|endoftext|>, <pad>
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        special_map = BPE_SPECIALS
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=spec.max_length, **special_map)


def cached_tokenizer(
    texts: Sequence[str], spec: TokenizerSpec = TokenizerSpec(), cache_dir: str | Path | None = None
) -> tuple[PreTrainedTokenizerFast, Path, bool]:
    """:func:`train_tokenizer`, or the copy cached for the same texts and ``spec``.

    Returns ``(tokenizer, folder, cache_hit)``; ``folder`` holds the tokenizer in transformers'
    format (default ``$MMSSL_CACHE/text_tokenizers/<key>``). A cached folder is used only when its files
    match its ``checksums.sha256``; otherwise a warning names what differs and the tokenizer is trained
    again (and the cache replaced).
    """
    key = spec.cache_key(texts)
    base = Path(cache_dir) if cache_dir is not None else cache_folder("text_tokenizers")
    folder = base / key
    if (folder / "tokenizer.json").is_file():
        problem = verify_checksums(folder)
        if problem is None:
            try:
                return load_tokenizer(folder), folder, True
            except (DataError, OSError, ValueError) as err:
                problem = str(err)
        log.warning("ignoring damaged tokenizer cache %s (%s); training again", folder, problem)
    tok = train_tokenizer(texts, spec)
    try:
        base.mkdir(parents=True, exist_ok=True)
        # Save into a fresh folder, then rename it into place: a concurrent reader sees all or nothing.
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{key}."))
        tok.save_pretrained(tmp)
        write_checksums(tmp)
        if folder.exists():  # an unreadable leftover, or another process won the race
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as err:
        log.warning("could not cache the tokenizer in %s (%s); continuing without it", folder, err)
    return tok, folder, False


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer saved with ``save_pretrained`` (a local folder; nothing is downloaded)."""
    from transformers import AutoTokenizer

    path = Path(path).expanduser()
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise DataError(f"no tokenizer in {path} (expected tokenizer.json / tokenizer_config.json)")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # the Rust tokenizers library raises a bare Exception for a bad file
        raise DataError(f"cannot load the tokenizer in {path}: {type(err).__name__}: {err}") from err


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without special tokens (the fast backend; no length warnings)."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def check_special_ids(
    tokenizer: PreTrainedTokenizerFast, expected: dict[str, int | None], where: str
) -> None:
    """Raise naming the setting when a token id the encoder was built with differs from the tokenizer's.

    ``expected`` maps attribute names such as ``"pad_token_id"`` to the encoder's value.
    """
    for attr, value in expected.items():
        actual = getattr(tokenizer, attr, None)
        if value is not None and actual is not None and actual != value:
            raise DataError(
                f"the tokenizer's {attr} is {actual} but the encoder was built with {value}; "
                f"set {where}.{attr}: {actual} in the recipe"
            )
