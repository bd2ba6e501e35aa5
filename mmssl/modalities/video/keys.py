"""Batch keys of the video modality."""

from mmssl.data.keys import batch_key

CLIP = batch_key("clip", "[B, T, 3, H, W] float clip of T frames (normalised)")
