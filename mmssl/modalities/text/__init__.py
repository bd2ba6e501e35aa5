"""Text adapter: corpora (plain text, folders, JSONL, built-in stdlib docstrings), trained and cached
sub-word tokenizers, packed blocks, BERT / GPT-2 encoders from transformers configs, masked and
next-token LM methods, held-out LM evaluators, and export to a plain transformers folder.

Components are listed in :mod:`mmssl.modalities.text.components` and imported on first lookup.
"""
