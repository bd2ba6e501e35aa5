"""The manifest of a shard set: which WebDataset tar files, how many samples each, and what they hold.

A shard set is a folder of tar files in the WebDataset layout (each sample is the members sharing one
key: ``000123.jpg``, ``000123.cls``, ``000123.json``; readable by ``webdataset``, OpenCLIP, ...) plus
``shards.json``, written by ``data_tools/make_shards.py``::

    {"format": "mmssl-shards/1", "modality": "image", "classes": ["airplane", ...],
     "fields": ["cls", "jpg", "json"], "source": "../shared/data/images/cifar10/train",
     "shards": [{"name": "shard-000000.tar", "samples": 4096, "bytes": 12345678, "sha256": "..."}, ...]}

The per-shard sample counts are what make streaming exactly resumable: a reader can skip whole shards by
arithmetic (see :mod:`mmssl.data.shards.stream`). Nothing here knows a modality; ``modality`` and
``fields`` say which decoder a builder should use and are checked against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmssl.errors import DataError

FORMAT = "mmssl-shards/1"
MANIFEST_NAME = "shards.json"


@dataclass(frozen=True)
class ShardInfo:
    """One tar file of the set: name (relative to the manifest's folder), sample count, size, digest."""

    name: str
    samples: int
    bytes: int = 0
    sha256: str = ""


@dataclass
class ShardManifest:
    """What ``shards.json`` holds (see the module docstring); ``root`` is the folder it was read from."""

    shards: list[ShardInfo]
    modality: str
    fields: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    source: str = ""
    root: Path = Path(".")

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def offsets(self) -> list[int]:
        """Global index of each shard's first sample (samples are numbered in manifest order)."""
        starts, total = [], 0
        for shard in self.shards:
            starts.append(total)
            total += shard.samples
        return starts

    def path(self, shard: ShardInfo) -> Path:
        return self.root / shard.name

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "modality": self.modality,
            "fields": list(self.fields),
            "classes": list(self.classes),
            "source": self.source,
            "shards": [asdict(s) for s in self.shards],
        }

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/shards.json`` (atomically: a reader never sees half a manifest)."""
        path = Path(folder) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)
        return path


def read_manifest(location: str | Path, modality: str | None = None) -> ShardManifest:
    """The manifest at ``location`` (a shard folder or its ``shards.json``); :class:`DataError` naming the
    file and key when it is missing or malformed, or when it holds another ``modality`` than expected.
    Every listed shard must exist (a missing one is named, not found mid-epoch)."""
    path = Path(location).expanduser()
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"shard manifest not found: {path} (write shards with `python data_tools/make_shards.py`)"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable shard manifest ({type(err).__name__}: {err})") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"{path}: key 'format' must be {FORMAT!r}, got {got!r}")
    try:
        shards = [ShardInfo(**entry) for entry in raw["shards"]]
        manifest = ShardManifest(
            shards=shards,
            modality=str(raw["modality"]),
            fields=[str(f) for f in raw.get("fields", [])],
            classes=[str(c) for c in raw.get("classes", [])],
            source=str(raw.get("source", "")),
            root=path.parent,
        )
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: malformed manifest ({type(err).__name__}: {err})") from err
    if not shards:
        raise DataError(f"{path}: key 'shards' lists no shard")
    for shard in shards:
        if Path(shard.name).is_absolute() or ".." in Path(shard.name).parts:
            raise DataError(f"{path}: shard name {shard.name!r} must be a plain path inside {path.parent}")
        if shard.samples < 1:
            raise DataError(f"{path}: shard {shard.name} has {shard.samples} samples")
        if not manifest.path(shard).is_file():
            raise DataError(f"{path}: shard {manifest.path(shard)} is listed but missing")
    if modality is not None and manifest.modality != modality:
        raise DataError(f"{path}: holds {manifest.modality!r} samples, this dataset reads {modality!r}")
    return manifest
