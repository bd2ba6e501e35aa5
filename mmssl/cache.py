"""Where generated data and derived results are cached: one root for every modality, and how an entry
proves it is intact.

Procedural datasets, ACD decompositions, sound-texture statistics and tokenizers are written once under
``$MMSSL_CACHE`` (default ``~/.cache/mmssl``), each in its own sub-folder keyed by its parameters.

Every entry is written atomically (a temporary name, then a rename) and checked when it is read, so that
a damaged entry (a disk error, a copy cut short, a file overwritten) is recomputed, with a warning
naming it, instead of being used:

- ``.npz`` entries: every member carries the zip format's CRC-32, verified by ``np.load`` as it reads
  the member; a damaged file raises one of :data:`NPZ_ERRORS` (and is never unpickled:
  ``allow_pickle=False``);
- folders (procedural data sets, tokenizers): ``checksums.sha256`` lists the SHA-256 of every file,
  written into the folder before it is renamed into place (:func:`write_checksums`) and verified before
  the folder is used (:func:`verify_checksums`);
- single text files: a first line with the SHA-256 and length of the rest (:func:`write_checked`,
  :func:`read_checked`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

#: what ``np.load(path, allow_pickle=False)`` of a damaged ``.npz`` raises: not a zip, a member cut
#: short or failing its CRC-32 (``BadZipFile``, ``EOFError``, ``zlib.error``), a missing member
#: (``KeyError``), a bad array header or a pickle refused (``ValueError``), an unreadable file (``OSError``)
NPZ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
)

#: the file of a cached folder that lists the SHA-256 of every other file (``sha256sum`` format)
CHECKSUMS = "checksums.sha256"
_HEADER = b"mmssl-cache sha256="


def cache_folder(name: str = "") -> Path:
    """``$MMSSL_CACHE/<name>`` or ``~/.cache/mmssl/<name>`` (read at call time, so tests can redirect it)."""
    base = os.environ.get("MMSSL_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "mmssl"
    return root / name if name else root


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(folder: Path) -> Path:
    """Write ``folder/checksums.sha256``: the SHA-256 of every file below ``folder`` (any depth), one
    ``<hex>  <relative path>`` line each, sorted. Call it once the folder is complete, before renaming it
    into place."""
    folder = Path(folder)
    lines = [
        f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}\n"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != CHECKSUMS
    ]
    target = folder / CHECKSUMS
    target.write_text("".join(lines), encoding="utf-8")
    return target


#: folder listings verified by this process, with the size and modification time of every file listed
_VERIFIED: set[tuple[str, int]] = set()


def verify_checksums(folder: Path) -> str | None:
    """None when every file ``folder/checksums.sha256`` lists is there with that SHA-256; else what is
    wrong, naming the file (no list: written by an older version or never finished). A folder this
    process has verified already is hashed again only when a listed file's size or modification time
    changed since."""
    folder = Path(folder)
    listing = folder / CHECKSUMS
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return f"no readable {listing} ({type(err).__name__}): written by an older version, or damaged"
    if not lines:
        return f"{listing} lists no file"
    entries = []
    for number, line in enumerate(lines, 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") or ".." in Path(name).parts:
            return f"{listing}: line {number} is not '<sha256>  <file>'"
        entries.append((folder / name, digest))
    try:
        stats = [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path, _ in entries]
    except OSError:
        stats = None  # a file is missing: named below
    stamp = (str(folder.resolve()), hash((tuple(lines), tuple(stats or ()))))
    if stats is not None and stamp in _VERIFIED:
        return None
    for path, digest in entries:
        if not path.is_file():
            return f"{path} is missing"
        if file_sha256(path) != digest:
            return f"{path} differs from the file written (SHA-256 mismatch)"
    _VERIFIED.add(stamp)
    return None


def write_checked(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically, after a first line holding its SHA-256 and length
    (:func:`read_checked` verifies both)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _HEADER + f"{hashlib.sha256(payload).hexdigest()} bytes={len(payload)}\n".encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checked(path: Path) -> bytes:
    """The payload :func:`write_checked` wrote to ``path``; ``ValueError`` saying what is wrong when the
    first line is missing or the rest is not what it describes (cut short, extended or altered)."""
    data = Path(path).read_bytes()
    first, newline, payload = data.partition(b"\n")
    if not newline or not first.startswith(_HEADER):
        raise ValueError("no checksum line: written by an older version, or not a cache entry")
    try:
        digest, size = first[len(_HEADER) :].decode("ascii").split(" bytes=")
        expected_size = int(size)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"unreadable checksum line {first[:80]!r}") from None
    if len(payload) != expected_size:
        raise ValueError(f"holds {len(payload)} bytes after its checksum line, {expected_size} were written")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError("SHA-256 mismatch: the content differs from what was written")
    return payload
