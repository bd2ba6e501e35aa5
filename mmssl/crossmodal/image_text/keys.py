"""The batch key of a caption (the image side uses the modality-free ``image`` key)."""

from mmssl.data.keys import batch_key

TEXT = batch_key("text", "[B, L] token ids of one caption per sample, padded with the tokenizer's pad id")
