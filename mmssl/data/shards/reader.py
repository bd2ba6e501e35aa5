"""Reading the samples of one WebDataset tar shard, through the ``webdataset`` library's tar iterator.

A sample (a *record*) is a dict ``{"__key__": "000123", "jpg": b"...", "cls": b"3", ...}``: the raw bytes
of every member sharing the key, by extension (lower case, without the dot). Decoding bytes into tensors
is the modality's job. Member names are checked before anything is read: an absolute name or one with
``..`` is refused (a tar written to escape its folder is not data), and a truncated or non-tar file is a
:class:`~mmssl.errors.CorruptFileError` naming the shard.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from mmssl.errors import CorruptFileError

Record = dict[str, Any]


def check_member_name(name: str, shard: Path) -> str:
    """``name`` when it is a plain relative member name; :class:`CorruptFileError` otherwise."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise CorruptFileError(shard, f"member {name!r} has an absolute or parent path: refused")
    return name


def iter_records(shard: str | Path, expected: int | None = None) -> Iterator[Record]:
    """The records of ``shard`` in stored order (see the module docstring). ``expected``: the count the
    manifest gives; a shard that ends early (a tar cut at a member boundary reads as a shorter tar) or
    runs long is a :class:`CorruptFileError`."""
    # imported here, not with the module: importing the toolkit (every video and image dataset imports the
    # shard reader) must not need webdataset on a machine that reads no shards
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    path = Path(shard)
    count = 0

    def reraise(err: Exception) -> bool:
        raise err

    try:
        with open(path, "rb") as stream:
            members = (
                {**member, "__url__": str(path)}
                for member in tar_file_iterator(
                    stream, handler=reraise, rename_files=lambda name: check_member_name(name, path)
                )
            )
            for record in group_by_keys(members, handler=reraise):
                record.pop("__url__", None)
                record.pop("__local_path__", None)
                count += 1
                if expected is not None and count > expected:
                    raise CorruptFileError(path, f"holds more than the {expected} records shards.json lists")
                yield record
    except CorruptFileError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise CorruptFileError(path, f"not a complete tar shard ({type(err).__name__}: {err})") from err
    if expected is not None and count < expected:
        raise CorruptFileError(path, f"ends after {count} of the {expected} records shards.json lists")


def count_records(shard: str | Path) -> int:
    """How many records ``shard`` holds (reads it through)."""
    return sum(1 for _ in iter_records(shard))


def only_member(record: Record, fields: tuple[str, ...], kind: str, where: str) -> str:
    """The name of the record's one ``kind`` member (one of ``fields``, the modality's file extensions);
    :class:`CorruptFileError` naming ``where`` when it has none or several."""
    found = [name for name in record if name in fields]
    if len(found) != 1:
        raise CorruptFileError(
            where, f"needs exactly one {kind} member ({', '.join(fields)}), got {found or 'none'}"
        )
    return found[0]
