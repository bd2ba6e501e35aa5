"""Writing a shard set: records into WebDataset tar files of a target size, then ``shards.json``, then a
read-back check of everything written.

Records are written as given (raw file bytes, no re-encoding) with ``webdataset.TarWriter``; a new shard
starts when the current one reaches ``max_samples`` records or ``max_bytes`` of payload. Every file goes
inside ``folder`` (the shard names have no folder part), so a writer never touches anything else.

Every member gets the same whole-second modification time (the writer's start). ``TarWriter`` otherwise
stamps each member with ``time.time()``, a fraction of a second that a plain (ustar) header cannot hold, so
``tarfile`` put a PAX extended header (a header block and a data block) before every member: twice the
headers to write and to parse, the larger part of the reading cost of a small record. A CIFAR-10 record of
three members (~0.9 KiB of JPEG) took ~6.5 KiB on disk; with plain headers it takes ~3.5 KiB.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from pathlib import Path
from typing import Any

from mmssl.data.shards.manifest import MANIFEST_NAME, ShardInfo, ShardManifest
from mmssl.data.shards.reader import Record, iter_records
from mmssl.errors import CorruptFileError, DataError

SHARD_NAME = "shard-{:06d}.tar"


def _digest(record: Record) -> tuple[str, dict[str, int]]:
    return record["__key__"], {k: zlib.crc32(v) for k, v in record.items() if k != "__key__"}


class ShardSetWriter:
    """Writes records to ``folder/shard-000000.tar``, ... (see the module docstring).

    ``modality``, ``classes`` and ``source`` go to the manifest. ``overwrite``: replace a shard set already
    in ``folder`` (otherwise that is a :class:`DataError`, so a finished set is never clobbered by accident).
    Use as a context manager, or call :meth:`close`, which returns the verified manifest.
    """

    def __init__(
        self,
        folder: str | Path,
        modality: str,
        classes: list[str] | None = None,
        source: str = "",
        max_samples: int = 10_000,
        max_bytes: int = 256 * 2**20,
        overwrite: bool = False,
    ) -> None:
        if max_samples < 1 or max_bytes < 1:
            raise ValueError(f"max_samples and max_bytes must be >= 1, got {max_samples}, {max_bytes}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.folder.glob("shard-*.tar"))
        if (existing or (self.folder / MANIFEST_NAME).exists()) and not overwrite:
            raise DataError(f"{self.folder} already holds a shard set: choose another folder or overwrite it")
        for old in existing:
            old.unlink()
        self.modality, self.classes, self.source = modality, list(classes or []), source
        self.mtime = int(time.time())  # whole seconds: no PAX header per member (module docstring)
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.shards: list[ShardInfo] = []
        self.fields: set[str] = set()
        self._written: list[list[tuple[str, dict[str, int]]]] = []
        self._tar: Any = None  # the open webdataset.TarWriter
        self._count = self._payload = 0
        self._keys: set[str] = set()
        self.manifest: ShardManifest | None = None

    def _open_next(self) -> None:
        import webdataset as wds  # only where shards are written (see reader.py)

        name = SHARD_NAME.format(len(self.shards))
        self._tar = wds.TarWriter(str(self.folder / name), encoder=False, mtime=self.mtime)
        self._name, self._count, self._payload = name, 0, 0
        self._written.append([])

    def _finish_current(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        path = self.folder / self._name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.shards.append(ShardInfo(self._name, self._count, path.stat().st_size, digest))
        self._tar = None

    def write(self, record: Record) -> None:
        """Add one record: ``{"__key__": key, ext: bytes, ...}``; keys must be unique and dot-free."""
        key = record.get("__key__")
        if not isinstance(key, str) or not key or "." in key or key.startswith("/") or ".." in key:
            raise DataError(f"record key {key!r} must be a non-empty relative name without dots")
        if key in self._keys:
            raise DataError(f"record key {key!r} written twice")
        for ext, value in record.items():
            if ext != "__key__" and not isinstance(value, bytes):
                raise DataError(f"record {key}: member {ext!r} must be bytes, got {type(value).__name__}")
        size = sum(len(v) for k, v in record.items() if k != "__key__")
        full = self._tar is not None and (
            self._count >= self.max_samples or self._payload + size > self.max_bytes
        )
        if full:
            self._finish_current()
        if self._tar is None:
            self._open_next()
        self._tar.write(record)  # type: ignore[union-attr]
        self._keys.add(key)
        self.fields.update(k for k in record if k != "__key__")
        self._written[-1].append(_digest(record))
        self._count += 1
        self._payload += size

    def close(self) -> ShardManifest:
        """Finish the last shard, read every shard back (same keys, same bytes: CRC-32 per member), write
        ``shards.json`` and return the manifest (also kept in :attr:`manifest`)."""
        if self.manifest is not None:
            return self.manifest
        self._finish_current()
        if not self.shards:
            raise DataError(f"no records were written to {self.folder}")
        manifest = ShardManifest(
            shards=self.shards,
            modality=self.modality,
            fields=sorted(self.fields),
            classes=self.classes,
            source=self.source,
            root=self.folder,
        )
        for shard, expected in zip(self.shards, self._written):
            got = [_digest(r) for r in iter_records(manifest.path(shard), expected=shard.samples)]
            if got != expected:
                raise CorruptFileError(manifest.path(shard), "read-back differs from what was written")
        manifest.write(self.folder)
        self.manifest = manifest
        return manifest

    def abort(self) -> None:
        """Remove every shard this writer wrote (no manifest was written): a failed run leaves no half set."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        for name in [s.name for s in self.shards] + ([self._name] if hasattr(self, "_name") else []):
            (self.folder / name).unlink(missing_ok=True)

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
