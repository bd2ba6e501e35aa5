"""Export a trained text encoder as a plain transformers model folder.

``export_pretrained(encoder, tokenizer, folder)`` writes the wrapped ``*ForMaskedLM`` /
``*ForCausalLM`` model (``config.json`` + safetensors weights) and the tokenizer
(``tokenizer.json`` + ``tokenizer_config.json``) with ``save_pretrained``, so that::

    from transformers import AutoModelForMaskedLM, AutoTokenizer    # or AutoModelForCausalLM
    model = AutoModelForMaskedLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)

loads them with no mmssl import and computes the same logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmssl.modalities.text.encoders import HFTextEncoder


def export_pretrained(encoder: HFTextEncoder, tokenizer: Any, folder: str | Path) -> Path:
    """``save_pretrained`` of the encoder's transformers model and of its tokenizer into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
