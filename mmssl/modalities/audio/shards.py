"""Audio shards: records with one audio member (``wav``, ``flac``, ``ogg``, ...), decoded from memory.

Written by ``data_tools/make_shards.py audio`` (every file decoded once by :func:`~.io.read_audio` before it
is written, so a set holds no undecodable or cut-short record) and streamed through
:class:`~mmssl.data.shards.ShardStream` by the ``shards`` option of the ``fsdd`` and ``audio_folder_csv``
datasets: AudioSet-scale pretraining sets are read as they stream while ``root`` still gives the labelled
evaluation clips (see docs/scaling.md). A record decodes to ``(wave float32 [S], -1)``, mono at the
dataset's ``sample_rate``: the clip :class:`~mmssl.modalities.audio.clips.AudioClips` gives for its file,
unlabelled, so the pretraining items (:mod:`~mmssl.modalities.audio.crops`) are made as for a folder.

Background mixing (``view_options.mix_ratio``) draws its background clip from a pool; a stream cannot be
read at a random index, so the pool of a streamed set is the block being streamed (:class:`HeldBlock`:
``shuffle_buffer`` clips around the current one), which is what BYOL-A does too: it mixes in a clip from
a FIFO bank of past inputs.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from mmssl.data.shards import Record, ShardSamples, only_member, read_manifest
from mmssl.modalities.audio.io import AUDIO_EXTENSIONS, read_audio

AUDIO_FIELDS: tuple[str, ...] = tuple(ext.lstrip(".") for ext in AUDIO_EXTENSIONS)
NO_LABEL = -1  # pretraining reads no labels, as the video and image shards


def decode_audio_record(record: Record, where: str, sample_rate: int) -> tuple[Tensor, int]:
    """``(mono float32 [S] at sample_rate, -1)``: the record's clip, read as
    :meth:`~mmssl.modalities.audio.clips.AudioClips.read` reads a file; errors name
    ``<shard>:<key>.<member>`` (the tar member), whose extension also tells the reader the format."""
    member = only_member(record, AUDIO_FIELDS, "audio", where)
    wave, _ = read_audio(f"{where}.{member}", sample_rate, mono=True, data=record[member])
    return wave[0], NO_LABEL


class AudioShardSamples(ShardSamples):
    """The records of an audio shard set (``samples[i] = (wave, -1)``) at ``sample_rate``; also keeps the
    global indices of the block being streamed, in order, for :class:`HeldBlock`."""

    def __init__(self, location: str, sample_rate: int) -> None:
        decode = functools.partial(decode_audio_record, sample_rate=int(sample_rate))  # picklable
        super().__init__(read_manifest(location, modality="audio"), decode)
        self.sample_rate = int(sample_rate)
        self.block: list[int] = []

    def hold(self, records: dict[int, tuple[str, Record]]) -> None:
        super().hold(records)
        self.block = sorted(records)


class HeldBlock(Dataset):
    """The clips of the block being streamed from ``samples`` as a map-style pool (``pool[j]`` is the
    ``j``-th clip of the block, in index order): the background pool of a streamed set (module
    docstring). Empty until the stream holds a block; every item is made while one is held."""

    def __init__(self, samples: AudioShardSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples.block)

    def __getitem__(self, j: int) -> Any:
        return self.samples[self.samples.block[j]]


def audio_shard_samples(location: str, sample_rate: int = 16000) -> AudioShardSamples:
    """The audio shard set at ``location`` (a folder with ``shards.json``, or that file), read at
    ``sample_rate``."""
    return AudioShardSamples(location, sample_rate)


def audio_bundle_options(
    shards: str | None,
    sample_rate: int,
    *,
    clip_seconds: float,
    views: str | None,
    view_options: Any,
    seed: int,
    shuffle_buffer: int,
) -> dict[str, Any]:
    """The keyword arguments ``fsdd`` and ``audio_folder_csv`` pass to ``audio_bundle``: the pretraining
    clips' settings, with the streamed shard set when ``shards`` is given."""
    return dict(
        clip_seconds=clip_seconds,
        views=views,
        view_options=view_options,
        shards=audio_shard_samples(shards, sample_rate) if shards is not None else None,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
    )
