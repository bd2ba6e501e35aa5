"""Batch keys of the text modality."""

from mmssl.data.keys import batch_key

INPUT_IDS = batch_key("input_ids", "[B, L] token ids of packed blocks")
ATTENTION_MASK = batch_key("attention_mask", "[B, L] 1 for real tokens, 0 for padding")
