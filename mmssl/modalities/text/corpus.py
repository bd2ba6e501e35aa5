"""Reading text corpora: plain files, folders, JSONL, and a built-in English corpus; the train/val split.

A corpus is a list of :class:`TextUnit` s, each a piece of text with a ``group`` that names the
document it comes from (what the built-in few-shot task classifies):

- a plain text file: one unit per paragraph (blank-line separated); groups are ``part 0 .. part K-1``,
  the file cut into ``K`` equal spans by character position (in a play anthology a span is roughly
  one play);
- a folder: every ``.txt`` / ``.md`` / ``.rst`` / ``.text`` file read as above (``.jsonl`` as below),
  the group being the file's path relative to the folder;
- JSONL: one unit per record (``text_field``), grouped by ``label_field`` when given, else by span of
  the file as for plain text;
- built-in: the docstrings of the Python standard library that ships with the interpreter (parsed
  with :mod:`ast`, nothing imported or downloaded; tests and private ``_modules`` left out),
  grouped by top-level module (``email``, ``asyncio`` ...). It is deterministic for a given Python
  version and cached as JSONL.

Two train/validation splits (:func:`split_units`):

- ``hash``: a unit goes to validation when the SHA-256 of its text falls below ``val_fraction`` of the
  hash range. It does not depend on the order in which units were read, and identical paragraphs
  (common in plays: "Ay.") always land on the same side. But validation paragraphs then sit between
  training paragraphs of the same scene, so held-out perplexity is optimistic (on the shared
  tinyshakespeare text a contiguous held-out part gives a perplexity about 1.5x higher).
- ``tail``: the last ``val_fraction`` of the units of every group, contiguous (for a single file: the
  end of each of its ``K`` spans), as language-modelling benchmarks hold out whole stretches of text.
  Every group keeps text on both sides, so the few-shot task still has all its classes.

``auto`` (the default) is ``tail`` for a single file and ``hash`` for folders and the built-in corpus,
whose documents are many and short.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmssl.cache import cache_folder, read_checked, write_checked
from mmssl.data import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError

log = logging.getLogger(__name__)

PLAIN_EXTENSIONS: tuple[str, ...] = (".txt", ".md", ".rst", ".text")
JSONL_EXTENSIONS: tuple[str, ...] = (".jsonl",)
# Bump when the built-in extraction or its cache format changes, so stale caches are not reused.
BUILTIN_VERSION = 3
# Folders of the standard library that hold tests, tools or vendored code rather than documentation.
_STDLIB_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "turtledemo", "ensurepip"}
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class TextUnit:
    """One paragraph / record / docstring: ``text``, where it comes from, and its document ``group``."""

    text: str
    source: str
    group: str


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(path, f"not UTF-8 text: {err}") from err
    except OSError as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    if not text.strip():
        raise CorruptFileError(path, "empty: no text in it")
    return text


def _span_group(offset: int, total: int, num_parts: int) -> str:
    """``part k``: which of ``num_parts`` equal character spans ``offset`` falls into."""
    return f"part {min(num_parts - 1, offset * num_parts // max(total, 1))}"


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs (blank-line separated, stripped, empty ones left out) of a plain text: the texts of
    :func:`read_plain_file`'s units, for text that is not a file (a shard record)."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def read_plain_file(path: str | Path, num_parts: int = 8, group: str | None = None) -> list[TextUnit]:
    """Paragraphs of a UTF-8 text file; grouped by span (``num_parts``) unless ``group`` is given."""
    path = Path(path)
    text = _read_text(path)
    units = []
    offset = 0
    for paragraph in _PARAGRAPH_BREAK.split(text):
        start = text.find(paragraph, offset)
        offset = start + len(paragraph)
        paragraph = paragraph.strip()
        if paragraph:
            g = group if group is not None else _span_group(start, len(text), num_parts)
            units.append(TextUnit(paragraph, f"{path}:{start}", g))
    return units


def read_jsonl(
    path: str | Path,
    text_field: str = "text",
    label_field: str | None = None,
    num_parts: int = 8,
    group: str | None = None,
    skipping: SkipBadFiles | None = None,
) -> list[TextUnit]:
    """One unit per JSON record; group = ``record[label_field]``, else ``group``, else span of the file.

    A line that is not a JSON object with a string ``text_field`` raises
    :class:`~mmssl.errors.CorruptFileError` naming the file and line; with ``skipping`` set to skip
    (:class:`~mmssl.data.SkipBadFiles`) it is logged, recorded as ``<file>:<line>`` and left out.
    """
    path = Path(path)
    skipping = skipping if skipping is not None else SkipBadFiles()
    lines = _read_text(path).splitlines()
    units, skipped = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            if not isinstance(record.get(text_field), str):
                raise ValueError(f"no string field '{text_field}' (keys: {', '.join(map(str, record))})")
            if label_field is not None and label_field not in record:
                raise ValueError(f"no label field '{label_field}'")
        except ValueError as err:
            skipping.record(CorruptFileError(path, f"line {number}: {err}"), f"{path}:{number}")
            skipped += 1
            continue
        text = record[text_field].strip()
        if not text:
            continue
        if label_field is not None:
            g = str(record[label_field])
        else:
            g = group if group is not None else _span_group(number - 1, len(lines), num_parts)
        units.append(TextUnit(text, f"{path}:{number}", g))
    if skipped:
        log.warning("%s: skipped %d bad line(s)", path, skipped)
    return units


def read_folder(
    root: str | Path,
    text_field: str = "text",
    label_field: str | None = None,
    skipping: SkipBadFiles | None = None,
) -> list[TextUnit]:
    """Every text / JSONL file under ``root`` (sorted), each file its own group (the document).

    An unreadable file raises, or with ``skipping`` set to skip is logged and left out.
    """
    root = Path(root)
    skipping = skipping if skipping is not None else SkipBadFiles()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.suffix.lower() in PLAIN_EXTENSIONS + JSONL_EXTENSIONS
    )
    if not files:
        exts = ", ".join(PLAIN_EXTENSIONS + JSONL_EXTENSIONS)
        raise DataError(f"no text files ({exts}) under {root}")

    def read(path: Path) -> list[TextUnit]:
        name = str(path.relative_to(root))
        if path.suffix.lower() in JSONL_EXTENSIONS:
            return read_jsonl(path, text_field, label_field, group=name, skipping=skipping)
        return read_plain_file(path, group=name)

    return [unit for _, units in skipping.keep_readable(files, lambda p: p, read) for unit in units]


def read_corpus(
    root: str | Path,
    text_field: str = "text",
    label_field: str | None = None,
    num_parts: int = 8,
    skipping: SkipBadFiles | None = None,
) -> list[TextUnit]:
    """A folder, a ``.jsonl`` file or a plain text file (by suffix), read as described above.

    ``skipping`` (:class:`~mmssl.data.SkipBadFiles`): what to do with unreadable files of a folder and
    bad JSONL lines (default: raise); a single unreadable file always raises.
    """
    path = Path(root).expanduser()
    if path.is_dir():
        units = read_folder(path, text_field, label_field, skipping)
    elif path.is_file():
        if path.suffix.lower() in JSONL_EXTENSIONS:
            units = read_jsonl(path, text_field, label_field, num_parts, skipping=skipping)
        else:
            units = read_plain_file(path, num_parts)
    else:
        raise DataError(f"text corpus not found: {path}")
    if not units:
        raise DataError(f"no text in {path}")
    return units


# ------------------------------------------------------------------------------------ built-in


def _stdlib_files(root: Path, modules: Sequence[str] | None) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place: tests, vendored packages, and folders such as lib-dynload / config-3.x-*.
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS and "-" not in d)
        files += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    files = sorted(files, key=lambda p: p.relative_to(root).as_posix())
    # Private modules (_pydecimal, _pyio ...) are implementation twins of documented public ones.
    files = [p for p in files if not _top_module(p, root).startswith("_")]
    if modules is not None:
        wanted = set(modules)
        files = [p for p in files if _top_module(p, root) in wanted]
    return files


def _top_module(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def extract_docstrings(path: Path, root: Path, min_words: int = 8) -> list[TextUnit]:
    """Docstrings of a module and of its classes and functions (``ast``: nothing is imported)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):  # e.g. test data in old syntax: not documentation
        return []
    rel, group = path.relative_to(root).as_posix(), _top_module(path, root)
    units = []
    for node in ast.walk(tree):  # breadth-first, in source order within a level: deterministic
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc.split()) >= min_words:
                units.append(TextUnit(doc, f"{rel}:{getattr(node, 'lineno', 0)}", group))
    return units


def builtin_corpus(
    modules: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> list[TextUnit]:
    """Docstrings of the interpreter's standard library (``modules``: top-level names to keep).

    Deterministic for a given Python version: files are walked in sorted order, docstrings in
    :func:`ast.walk` order. The result is cached as JSONL under ``cache_dir`` (default
    ``$MMSSL_CACHE/text``), keyed by the Python version, the stdlib path and ``modules``.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"the standard library source folder is missing: {root}")
    spec = {"v": BUILTIN_VERSION, "python": sys.version, "root": str(root), "modules": modules}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) if cache_dir is not None else cache_folder("text")
    path = path / f"stdlib_docstrings_{key}.jsonl"
    if use_cache and path.is_file():
        try:
            lines = read_checked(path).decode("utf-8").splitlines()
            return [TextUnit(**json.loads(line)) for line in lines]
        except (ValueError, TypeError, OSError) as err:  # UnicodeDecodeError is a ValueError
            log.warning("ignoring unreadable cache %s (%s); extracting again", path, err)
    units = [u for f in _stdlib_files(root, modules) for u in extract_docstrings(f, root)]
    if not units:
        raise DataError(f"no docstrings found in the standard library at {root} (modules={modules})")
    if use_cache:
        _write_jsonl(units, path)
    return units


def _write_jsonl(units: list[TextUnit], path: Path) -> None:
    """Write-then-rename (another process never reads a half-written cache), after a line holding the
    SHA-256 of the rest (:func:`~mmssl.cache.read_checked`: a file cut short or altered is re-extracted)."""
    lines = "".join(json.dumps({"text": u.text, "source": u.source, "group": u.group}) + "\n" for u in units)
    try:
        write_checked(path, lines.encode("utf-8"))
    except OSError as err:
        log.warning("could not write cache %s (%s); continuing without it", path, err)


# --------------------------------------------------------------------------------------- split


def is_validation(text: str, val_fraction: float) -> bool:
    """True when the first 64 bits of SHA-256(text), as a fraction of 2^64, are below ``val_fraction``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < val_fraction * 2.0**64


VAL_SPLITS: tuple[str, ...] = ("hash", "tail")


def split_units(
    units: Sequence[TextUnit], val_fraction: float = 0.1, mode: str = "hash"
) -> tuple[list[TextUnit], list[TextUnit]]:
    """``(train, val)`` by content hash or as the tail of each group (see the module docstring); each
    keeps the input order."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if mode not in VAL_SPLITS:
        raise DataError(f"val_split must be one of {', '.join(VAL_SPLITS)} (or auto), got '{mode}'")
    if mode == "tail":
        return _tail_split(units, val_fraction)
    train, val = [], []
    for u in units:
        (val if is_validation(u.text, val_fraction) else train).append(u)
    return train, val


def _tail_split(units: Sequence[TextUnit], val_fraction: float) -> tuple[list[TextUnit], list[TextUnit]]:
    """The last ``round(val_fraction * n)`` units of each group (``n`` its units) to validation."""
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        groups.setdefault(u.group, []).append(i)
    held_out: set[int] = set()
    for members in groups.values():
        n_val = round(val_fraction * len(members))
        held_out.update(members[len(members) - n_val :] if n_val else [])
    train = [u for i, u in enumerate(units) if i not in held_out]
    val = [u for i, u in enumerate(units) if i in held_out]
    return train, val


def corpus_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (unambiguous: each is length-prefixed)."""
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
