"""Batch keys of the audio modality."""

from mmssl.data.keys import batch_key

AUDIO = batch_key("audio", "[B, S] mono waveform (a random crop of each clip)")
