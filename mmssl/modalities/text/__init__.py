"""Text adapter: corpora (plain text, folders, JSONL, built-in stdlib docstrings), trained and cached
sub-word tokenizers, packed blocks, BERT / GPT-2 encoders from transformers configs, masked and
next-token LM methods, held-out LM evaluators, and export to a plain transformers folder.

Importing this package registers its components (``mmssl.registry`` imports it by name).
"""

from mmssl.modalities.text import data, encoders, eval, methods

__all__ = ["data", "encoders", "eval", "methods"]
