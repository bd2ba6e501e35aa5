"""ShapeNetPart (Yi et al., SIGGRAPH Asia 2016) in the layout of the PointNet++ release
``shapenetcore_partanno_segmentation_benchmark_v0_normal``::

    root/synsetoffset2category.txt                       "Airplane\\t02691156" per line
    root/<synset>/<shape id>.txt                         rows "x y z nx ny nz part" (part: GLOBAL id 0..49)
    root/train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<id>", ...]

16 categories, 50 parts; a category owns a contiguous block of global part ids
(:data:`SHAPENETPART_PARTS`), and part-segmentation evaluation restricts the argmax to the true
category's block (Qi et al., PointNet++, 2017; the ACD paper follows it).

Split files in the wild are not always consistent with the folders (a listed file that is
missing, an entry listed twice, a shape in two splits, a file in no split). :func:`check_splits`
reports each kind; the dataset logs one warning per kind with the count and the first few names,
drops missing entries, keeps the first of duplicated ones, and never crashes on them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmssl.data.keys import INDEX
from mmssl.data.skip import SkipBadFiles
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.pointcloud.io import normalize_unit_sphere, subsample_indices
from mmssl.modalities.pointcloud.keys import CATEGORY, NORMALS, PARTS, POINTS

log = logging.getLogger(__name__)

# (name, ShapeNetCore synset) in the order of the official synsetoffset2category.txt.
SHAPENETPART_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Airplane", "02691156"),
    ("Bag", "02773838"),
    ("Cap", "02954340"),
    ("Car", "02958343"),
    ("Chair", "03001627"),
    ("Earphone", "03261776"),
    ("Guitar", "03467517"),
    ("Knife", "03624134"),
    ("Lamp", "03636649"),
    ("Laptop", "03642806"),
    ("Motorbike", "03790512"),
    ("Mug", "03797390"),
    ("Pistol", "03948459"),
    ("Rocket", "04099429"),
    ("Skateboard", "04225987"),
    ("Table", "04379243"),
)

# Part names per category in global-id order (the ShapeNetPart project page's listing); informative
# only: files and evaluation use the ids.
SHAPENETPART_PART_NAMES: dict[str, tuple[str, ...]] = {
    "Airplane": ("body", "wing", "tail", "engine"),
    "Bag": ("handle", "body"),
    "Cap": ("panels", "peak"),
    "Car": ("roof", "hood", "wheel", "body"),
    "Chair": ("back", "seat", "leg", "arm"),
    "Earphone": ("earcup", "headband", "cord"),
    "Guitar": ("head", "neck", "body"),
    "Knife": ("blade", "handle"),
    "Lamp": ("base", "shade", "canopy", "tube"),
    "Laptop": ("keyboard", "screen"),
    "Motorbike": ("gas_tank", "seat", "wheel", "handle", "light", "body"),
    "Mug": ("handle", "body"),
    "Pistol": ("barrel", "handle", "trigger"),
    "Rocket": ("body", "fin", "nose"),
    "Skateboard": ("wheel", "deck", "belt"),
    "Table": ("top", "leg", "support"),
}


def _part_table() -> dict[str, list[int]]:
    table, start = {}, 0
    for name, _ in SHAPENETPART_CATEGORIES:
        k = len(SHAPENETPART_PART_NAMES[name])
        table[name] = list(range(start, start + k))
        start += k
    return table


# Category name -> global part ids: Airplane [0..3], Bag [4, 5], Cap [6, 7], Car [8..11], Chair [12..15],
# Earphone [16..18], Guitar [19..21], Knife [22, 23], Lamp [24..27], Laptop [28, 29], Motorbike [30..35],
# Mug [36, 37], Pistol [38..40], Rocket [41..43], Skateboard [44..46], Table [47..49].
SHAPENETPART_PARTS: dict[str, list[int]] = _part_table()
NUM_PARTS: int = 50
SPLITS: tuple[str, ...] = ("train", "val", "test", "trainval")


def part_id(category: str, part: str) -> int:
    """Global id of a named part, e.g. ``part_id("Chair", "seat") == 13``."""
    return SHAPENETPART_PARTS[category][SHAPENETPART_PART_NAMES[category].index(part)]


def read_categories(root: str | Path) -> list[tuple[str, str]]:
    """``(name, synset)`` pairs from ``root/synsetoffset2category.txt``, in file order."""
    path = Path(root) / "synsetoffset2category.txt"
    if not path.is_file():
        raise DataError(f"ShapeNetPart category file not found: {path}")
    pairs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{path}:{lineno}: expected '<category> <synset>', got {line!r}")
        if fields[0] not in SHAPENETPART_PARTS:
            raise DataError(f"{path}:{lineno}: unknown ShapeNetPart category '{fields[0]}'")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f"no categories in {path}")
    return pairs


@dataclass
class SplitReport:
    """Inconsistencies between the split files and the folders (entries as ``"<synset>/<id>"``)."""

    missing: list[str] = field(default_factory=list)  # listed, no file (per split, "split: entry")
    duplicates: list[str] = field(default_factory=list)  # listed more than once in one split
    in_several_splits: list[str] = field(default_factory=list)  # listed in more than one of train/val/test
    unlisted: list[str] = field(default_factory=list)  # a file in a category folder but in no split

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}

    def log(self, root: Path) -> None:
        for kind, entries in self.__dict__.items():
            if entries:
                more = f" (+{len(entries) - 5} more)" if len(entries) > 5 else ""
                log.warning(
                    "ShapeNetPart %s: %d split entr%s %s: %s%s",
                    root,
                    len(entries),
                    "y" if len(entries) == 1 else "ies",
                    kind.replace("_", " "),
                    ", ".join(entries[:5]),
                    more,
                )


def _split_file(root: Path, split: str) -> Path:
    return root / "train_test_split" / f"shuffled_{split}_file_list.json"


def read_split(root: str | Path, split: str) -> list[str]:
    """Raw entries ``"<synset>/<id>"`` of one split file (``train``, ``val`` or ``test``), as listed."""
    path = _split_file(Path(root), split)
    if not path.is_file():
        raise DataError(f"ShapeNetPart split file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(path, f"not JSON: {err}") from err
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise CorruptFileError(path, "expected a JSON list of 'shape_data/<synset>/<id>' strings")
    # "shape_data/<synset>/<id>" -> "<synset>/<id>"
    return ["/".join(e.strip("/").split("/")[-2:]) for e in entries]


def check_splits(root: str | Path) -> SplitReport:
    """Compare the three split files with the category folders; see :class:`SplitReport`."""
    root = Path(root)
    synsets = {s for _, s in read_categories(root)}
    report = SplitReport()
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        entries = read_split(root, split)
        counts: dict[str, int] = {}
        for e in entries:
            counts[e] = counts.get(e, 0) + 1
        for e, c in counts.items():
            if c > 1:
                report.duplicates.append(f"{split}: {e} (x{c})")
            if not (root / f"{e}.txt").is_file():
                report.missing.append(f"{split}: {e}")
            elif e in seen:
                report.in_several_splits.append(f"{e} ({seen[e]}, {split})")
            else:
                seen[e] = split
    for synset in sorted(synsets):
        for f in sorted((root / synset).glob("*.txt")):
            if f"{synset}/{f.stem}" not in seen:
                report.unlisted.append(f"{synset}/{f.stem}")
    return report


def load_shape(path: str | Path, category: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ShapeNetPart file -> ``(xyz [N, 3] float32, normals [N, 3] float32, parts [N] int64)``.

    Raises :class:`~mmssl.errors.CorruptFileError` naming the file when it is unreadable, empty, not
    7 numeric columns, has NaN/inf values, or (``category`` given) holds a part id outside that
    category's block.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
    if rows.size == 0:
        raise CorruptFileError(path, "no points")
    if rows.shape[1] != 7:
        raise CorruptFileError(path, f"expected 7 columns 'x y z nx ny nz part', got {rows.shape[1]}")
    if not np.isfinite(rows).all():
        raise CorruptFileError(path, f"{int((~np.isfinite(rows)).any(1).sum())} rows hold NaN or inf")
    parts = np.rint(rows[:, 6]).astype(np.int64)
    if category is not None:
        valid = SHAPENETPART_PARTS[category]
        bad = np.setdiff1d(np.unique(parts), valid)
        if bad.size:
            raise CorruptFileError(path, f"part ids {bad.tolist()} are not {category} parts {valid}")
    return rows[:, :3].astype(np.float32), rows[:, 3:6].astype(np.float32), parts


class ShapeNetPart(Dataset):
    """Part-segmentation items from a ShapeNetPart-layout ``root``.

    ``split``: ``train``, ``val``, ``test`` or ``trainval`` (train + val, what the few-shot protocol
    draws from). ``categories``: names to keep (default: all in ``synsetoffset2category.txt``);
    an item's ``category`` indexes ``self.categories``. ``num_points`` rows are drawn per shape with a
    generator seeded by ``(seed, index)``, so an item is the same on every access. ``normalize``:
    centre and scale each shape into the unit sphere.

    Items: ``{"points": float32 [N, 3], "normals": float32 [N, 3], "parts": int64 [N] (global ids),
    "category": int, "index": int}``. ``targets`` lists the category of every item without loading.
    A bad file raises :class:`~mmssl.errors.CorruptFileError` when it is read; with ``skip_bad=True``
    every file is read once when the dataset is built (in ``workers`` threads) and the bad ones are
    logged, listed in ``bad_files``, counted in ``num_skipped`` and left out of the index (the policy of
    :class:`~mmssl.data.skip.SkipBadFiles`, ``self.skip``): no other shape ever stands in for one.
    ``report`` (:class:`SplitReport`) holds the split inconsistencies, logged as warnings unless
    ``log_split_report=False``; ``cache_in_memory`` keeps loaded items.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        num_points: int = 2048,
        categories: list[str] | tuple[str, ...] | None = None,
        normalize: bool = True,
        seed: int = 0,
        skip_bad: bool = False,
        cache_in_memory: bool = True,
        log_split_report: bool = True,
        workers: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"ShapeNetPart root not found: {self.root}")
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        if num_points < 1:
            raise DataError(f"num_points must be >= 1, got {num_points}")
        pairs = read_categories(self.root)
        if categories is not None:
            known = {n for n, _ in pairs}
            unknown = [c for c in categories if c not in known]
            if unknown:
                raise DataError(
                    f"categories {unknown} not in {self.root / 'synsetoffset2category.txt'} "
                    f"(has {', '.join(sorted(known))})"
                )
            pairs = [p for p in pairs if p[0] in categories]
        self.categories: list[str] = [n for n, _ in pairs]
        synset_to_index = {s: i for i, (_, s) in enumerate(pairs)}
        self.split, self.num_points, self.normalize, self.seed = split, num_points, normalize, seed
        self.cache_in_memory = cache_in_memory

        self.report = check_splits(self.root)
        if log_split_report:
            self.report.log(self.root)
        entries: list[str] = []
        for s in ("train", "val") if split == "trainval" else (split,):
            entries += read_split(self.root, s)
        self.samples: list[tuple[Path, int]] = []
        seen: set[str] = set()
        for e in entries:
            synset = e.split("/")[0]
            path = self.root / f"{e}.txt"
            if e in seen or synset not in synset_to_index or not path.is_file():
                continue  # duplicate, another category, or missing (all reported above)
            seen.add(e)
            self.samples.append((path, synset_to_index[synset]))
        self.skip = SkipBadFiles(skip_bad)
        if skip_bad:
            checked = self.skip.keep_readable(
                self.samples,
                lambda sample: sample[0],
                lambda sample: load_shape(sample[0], self.categories[sample[1]]) is not None,
                workers or min(8, os.cpu_count() or 1),
            )
            self.samples = [sample for sample, _ in checked]
        if not self.samples:
            raise DataError(
                f"no readable ShapeNetPart shapes for split '{split}' under {self.root} "
                f"(categories: {', '.join(self.categories)}; split report: {self.report.counts()}; "
                f"{self.num_skipped} unreadable)"
            )
        self.targets: list[int] = [c for _, c in self.samples]
        self.paths: list[Path] = [path for path, _ in self.samples]
        self.parts_per_category: dict[int, list[int]] = {
            i: list(SHAPENETPART_PARTS[n]) for i, n in enumerate(self.categories)
        }
        self._memo: dict[int, dict[str, torch.Tensor | int]] = {}

    @property
    def num_skipped(self) -> int:
        return self.skip.num_skipped

    @property
    def bad_files(self) -> list[Path]:
        return self.skip.bad_files

    def __len__(self) -> int:
        return len(self.samples)

    def load_full(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows of shape ``index`` (no subsampling or normalisation)."""
        path, cat = self.samples[index]
        return load_shape(path, self.categories[cat])

    def sample(
        self, index: int, full: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``num_points`` rows of item ``index`` in the file's frame (not normalised); ``full``: its
        :meth:`load_full` rows when already read."""
        xyz, normals, parts = full if full is not None else self.load_full(index)
        rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), int(index)]))
        keep = subsample_indices(len(xyz), self.num_points, rng)
        return xyz[keep], normals[keep], parts[keep]

    def _load_item(self, index: int) -> dict[str, torch.Tensor | int]:
        xyz, normals, parts = self.sample(index)
        if self.normalize:
            xyz = normalize_unit_sphere(xyz)
        return {
            POINTS: torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32)),
            NORMALS: torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32)),
            PARTS: torch.from_numpy(parts),
            CATEGORY: self.samples[index][1],
            INDEX: index,
        }

    def _cached_item(self, index: int) -> dict[str, torch.Tensor | int]:
        if index in self._memo:
            return self._memo[index]
        item = self._load_item(index)
        if self.cache_in_memory:
            self._memo[index] = item
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return dict(self._cached_item(index), index=index)  # a file broken since it was checked raises
