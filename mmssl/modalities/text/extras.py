"""The typed extra of the text dataset: what language-model methods and evaluators read beyond batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmssl.modalities.text.packing import TokenBlocks


@dataclass(frozen=True)
class LanguageData:
    """``tokenizer``: the corpus's transformers fast tokenizer (the LM methods' vocabulary and special
    ids; exported beside the trained model). ``val_blocks``: the held-out packed blocks, scored by the
    ``perplexity`` / ``masked_accuracy`` evaluators and prompting the causal LM's generations (empty
    when ``val_fraction`` is 0)."""

    tokenizer: Any
    val_blocks: TokenBlocks
