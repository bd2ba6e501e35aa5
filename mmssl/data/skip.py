"""The one policy for files that cannot be decoded, shared by every modality's readers.

By default a bad file raises :class:`~mmssl.errors.CorruptFileError` naming it. With ``skip=True`` it is
logged once (a warning naming the file and the reason), remembered in ``bad_files`` and left out;
``num_skipped`` counts distinct bad files seen by this process (each DataLoader worker keeps its own).

Datasets check their files when they are built (:meth:`SkipBadFiles.keep_readable`), so that a bad file
leaves the index instead of another sample standing in for it (counted twice), and the bundle's
``stats`` list them (``num_skipped``, ``bad_files``; the runner writes them to metrics.json).
:meth:`SkipBadFiles.next_readable` (substitution) is left only where checking every file up front would
decode the whole data set (video clips: :class:`~mmssl.modalities.video.clips.VideoClipDataset`). Files
found bad there, possibly in data-loader worker processes, are marked in a :class:`SkippedWhileLoading`
(one flag per file in shared memory, so a worker's find reaches the main process): the bundle carries
it as an extra, and the runner adds its files to ``num_skipped`` / ``bad_files`` in metrics.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

from mmssl.errors import CorruptFileError, DataError

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


def _attempt(loader: Callable[[Item], Loaded], item: Item) -> Loaded | CorruptFileError:
    try:
        return loader(item)
    except CorruptFileError as err:
        return err


class SkippedWhileLoading:
    """The files of a data set found bad while its items were loaded, in any process.

    One flag per file in a shared-memory tensor: DataLoader workers (forked or spawned; torch shares the
    storage either way) set the flag of the file they skipped, and the main process reads them all.
    Setting a flag is idempotent, so concurrent workers need no lock and a file skipped by two workers
    counts once. Under torchrun each rank has its own flags: :meth:`gather_over_ranks` (called on every
    rank) merges them.
    """

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths = list(dict.fromkeys(Path(p) for p in paths))
        self._flags = torch.zeros(len(self.paths), dtype=torch.uint8).share_memory_()
        # built on the first skip, in the process that finds it: a worker started by pickling the dataset
        # (spawn) is not sent a second copy of every path
        self._index: dict[Path, int] | None = None

    def mark(self, path: str | Path) -> None:
        """Record ``path`` as skipped (a path outside the data set is ignored)."""
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.paths)}
        i = self._index.get(Path(path))
        if i is not None:
            self._flags[i] = 1

    def files(self) -> list[Path]:
        """The skipped files, in data-set order."""
        return [self.paths[i] for i in self._flags.nonzero().flatten().tolist()]

    def gather_over_ranks(self) -> None:
        """Mark here every file any rank marked (a collective: every rank must call it)."""
        from mmssl.core import distributed as dist

        if dist.is_distributed():
            for marked in dist.all_gather_object(self._flags.nonzero().flatten().tolist()):
                self._flags[marked] = 1

    def add_to(self, stats: dict) -> dict:
        """``stats`` with the skipped files added to ``bad_files`` / ``num_skipped`` (each file once) and
        ``skipped_while_loading`` counting those found after the data set was built."""
        found = [str(p) for p in self.files()]
        bad = list(dict.fromkeys([*stats.get("bad_files", []), *found]))
        return {**stats, "num_skipped": len(bad), "bad_files": bad, "skipped_while_loading": len(found)}


class SkipBadFiles:
    """Raise on a corrupt file, or (``skip=True``) log it once, count it and go on without it.
    ``shared``: also mark each skipped file there (seen by every process, see
    :class:`SkippedWhileLoading`)."""

    def __init__(self, skip: bool = False, shared: SkippedWhileLoading | None = None) -> None:
        self.skip = skip
        self.shared = shared
        self.bad_files: list[Path] = []
        self._seen: set[Path] = set()

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    def record(self, err: CorruptFileError | DataError, path: str | Path) -> None:
        """Note a bad file (once) or re-raise ``err`` when skipping is off."""
        if not self.skip:
            raise err
        path = Path(path)
        if path not in self._seen:
            self._seen.add(path)
            self.bad_files.append(path)
            if self.shared is not None:
                self.shared.mark(path)
            log.warning("skipping %s", err)

    def load(self, path: str | Path, loader: Callable[[], Loaded]) -> Loaded | None:
        """``loader()``, or None after recording ``path`` when it raises CorruptFileError (skip on)."""
        try:
            return loader()
        except CorruptFileError as err:
            self.record(err, path)
            return None

    def keep_readable(
        self,
        items: Iterable[Item],
        path_of: Callable[[Item], str | Path],
        loader: Callable[[Item], Loaded],
        workers: int = 1,
    ) -> list[tuple[Item, Loaded]]:
        """Load every item up front; returns ``(item, loaded)`` for the readable ones, in order, the rest
        recorded. ``workers`` > 1: the loads run in that many threads (for decoders that release the GIL);
        bad files are still recorded in order, and without ``skip`` the first one raises."""
        items = list(items)
        if workers <= 1 or len(items) <= 1:
            results: Iterable[Loaded | CorruptFileError] = map(lambda item: _attempt(loader, item), items)
            return self._collect(items, path_of, results)
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            return self._collect(items, path_of, pool.map(lambda item: _attempt(loader, item), items))
        finally:  # a bad file raised (skip off): the loads not started yet are cancelled
            pool.shutdown(wait=True, cancel_futures=True)

    def _collect(
        self,
        items: list[Item],
        path_of: Callable[[Item], str | Path],
        results: Iterable[Loaded | CorruptFileError],
    ) -> list[tuple[Item, Loaded]]:
        kept = []
        for item, result in zip(items, results):
            if isinstance(result, CorruptFileError):
                self.record(result, path_of(item))
            elif result is not None:
                kept.append((item, result))
        return kept

    def next_readable(
        self, index: int, paths: Sequence[str | Path], loader: Callable[[int], Loaded], where: str
    ) -> Loaded:
        """``loader(i)`` for the first readable ``i`` from ``index`` on (wrapping around)."""
        n = len(paths)
        for offset in range(n):
            i = (index + offset) % n
            loaded = self.load(paths[i], lambda i=i: loader(i))
            if loaded is not None:
                return loaded
        raise DataError(f"no readable file under {where}: all {n} files failed to decode")
