"""Real image–caption pairs from one JSONL or CSV file.

- ``.jsonl``: one JSON object per line, ``{"image": "photos/0001.jpg", "caption": "a dog on a beach"}``
  (blank lines ignored);
- ``.csv``: a header row naming at least the two columns (``image,caption``), one pair per row.

The field / column names are options (``image_field``, ``caption_field``). Image paths are relative to the
file's folder (absolute ones are kept); an image may appear in several pairs (several captions).

Errors name the file and the line: a CSV without one of the columns is a :class:`~mmssl.errors.DataError`
listing the columns it has; a JSONL line that is not an object with both fields, a row with an empty
field, or an image that does not exist is a :class:`~mmssl.errors.CorruptFileError` ``<file>: line N: ...``.
With ``skip_bad`` (:class:`~mmssl.data.SkipBadFiles`) those lines are logged, recorded as ``<file>:<N>``
and left out, and every listed image is decoded once up front so undecodable ones are left out too;
without it an undecodable image raises when it is read, naming the image.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mmssl.data.skip import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.folder import load_image
from mmssl.modalities.image.unlabelled import keep_readable

PAIR_FILE_EXTENSIONS: tuple[str, ...] = (".jsonl", ".csv")


@dataclass(frozen=True)
class CaptionedImage:
    """One pair: the ``image`` file, its ``caption`` and where it was listed (``<file>:<line>``)."""

    image: Path
    caption: str
    where: str


def _records(path: Path, text: str, image_field: str, caption_field: str) -> list[tuple[int, dict | str]]:
    """``(line, record)`` per pair; a record is a dict, or the reason the line is bad (a string)."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        columns = reader.fieldnames or []
        missing = [c for c in (image_field, caption_field) if c not in columns]
        if missing:
            raise DataError(
                f"{path}: no column {', '.join(repr(c) for c in missing)} in the header "
                f"(columns: {', '.join(columns) or 'none'}; set data.image_field / data.caption_field)"
            )
        # reader.line_num is the file line of the row just read (a row may span lines inside quotes)
        return [(reader.line_num, row) for row in reader]
    out: list[tuple[int, dict | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            out.append((number, f"not JSON ({err})"))
            continue
        out.append((number, record if isinstance(record, dict) else "not a JSON object"))
    return out


def read_pair_file(
    path: str | Path,
    image_field: str = "image",
    caption_field: str = "caption",
    skipping: SkipBadFiles | None = None,
) -> list[CaptionedImage]:
    """The pairs a ``.jsonl`` / ``.csv`` file lists (see the module docstring), in file order."""
    path = Path(path).expanduser()
    skipping = skipping if skipping is not None else SkipBadFiles()
    if path.suffix.lower() not in PAIR_FILE_EXTENSIONS:
        raise DataError(f"image–text pairs must be a .jsonl or .csv file, got {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the image–text pairs {path}: {err}") from err
    pairs = []
    for number, record in _records(path, text, image_field, caption_field):
        problem = record if isinstance(record, str) else None
        if isinstance(record, dict):
            image, caption = record.get(image_field), record.get(caption_field)
            for field, value in ((image_field, image), (caption_field, caption)):
                if not isinstance(value, str) or not value.strip():
                    keys = ", ".join(map(str, record))
                    problem = f"no '{field}' (a non-empty string; fields: {keys})"
                    break
            else:
                image_path = path.parent / Path(image.strip()).expanduser()  # type: ignore[union-attr]
                if not image_path.is_file():
                    problem = f"image not found: {image_path}"
        if problem is not None:
            skipping.record(CorruptFileError(path, f"line {number}: {problem}"), f"{path}:{number}")
            continue
        pairs.append(CaptionedImage(image_path, " ".join(caption.split()), f"{path}:{number}"))  # type: ignore[union-attr]
    if skipping.skip:
        readable = set(keep_readable(sorted({p.image for p in pairs}), skipping))
        pairs = [p for p in pairs if p.image in readable]
    if not pairs:
        raise DataError(f"{path} lists no usable image–caption pair ({skipping.num_skipped} skipped)")
    return pairs


class PairImages(Dataset):
    """The images of a list of pairs as ``(uint8 [3, H, W], -1)`` items (decoded when read)."""

    def __init__(self, pairs: list[CaptionedImage]) -> None:
        self.paths = [p.image for p in pairs]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index]), -1
