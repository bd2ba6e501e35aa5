"""Image data: a built-in procedural dataset, an ImageFolder reader, and the registered builders.

Base datasets (``ProceduralShapes``, ``ImageFolderDataset``) yield ``(uint8 tensor [3, H, W], label)``;
small wrappers turn them into what the toolkit's contracts expect:

- pretraining, two-view methods, ``augment="batch"`` (default): ``{"images": uint8 [3, S, S], "index": i}``
  per item, and the bundle's ``batch_transform``
  (:func:`~mmssl.modalities.image.batch_views.build_batch_views`) turns each batch into
  ``{"views": [v1, v2], "index": ...}`` on the training device;
- pretraining, two-view methods, ``augment="per_sample"``: ``{"views": [v1, v2], "index": i}`` per item
  (``transforms.v2`` in the data-loader workers);
- pretraining, single-image methods (``views=None``: rotation, MAE ...):
  ``{"image": tensor, "label": int, "index": i}``
- evaluation: ``{"input": tensor, "label": int}`` with the deterministic ``eval_transform``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE, INDEX, LABEL, VIEWS
from mmssl.data.source import data_source
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.batch_views import build_batch_views
from mmssl.modalities.image.views import (
    SINGLE_VIEW_NAMES,
    VIEW_NAMES,
    build_single_view,
    build_views,
    eval_transform,
)
from mmssl.procedural.shapes import ProceduralShapes

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ ImageFolder

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` reader (classes = sorted sub-folder names).

    Items: ``(transform(img), label)`` where ``img`` is a uint8 RGB tensor ``[3, H, W]``
    (``transform=None`` returns it as is). A file PIL cannot decode raises
    :class:`~mmssl.errors.CorruptFileError` naming it; with ``skip_bad=True`` the reader logs a
    warning naming the file and returns the next readable sample instead (``num_skipped`` counts
    distinct bad files seen by this process; each DataLoader worker keeps its own count).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[torch.Tensor], Any] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        self.transform = transform
        self.skip_bad = skip_bad
        exts = tuple(e.lower() for e in extensions)
        self.classes: list[str] = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not self.classes:
            raise DataError(f"no class sub-folders in {self.root} (expected root/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in self.classes:
            files = sorted(p for p in (self.root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts)
            self.samples += [(p, self.class_to_idx[c]) for p in files]
        if not self.samples:
            raise DataError(f"no images with extensions {', '.join(exts)} under {self.root}")
        self.targets: list[int] = [label for _, label in self.samples]
        self.bad_files: set[Path] = set()

    @property
    def num_skipped(self) -> int:
        return len(self.bad_files)

    @staticmethod
    def load_image(path: Path) -> torch.Tensor:
        """Decode fully (``convert`` forces it, so truncated files fail here) to uint8 ``[3, H, W]``."""
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise CorruptFileError(path, f"{type(err).__name__}: {err}") from err
        return TF.pil_to_tensor(rgb)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.samples)
        for offset in range(n):
            path, label = self.samples[(index + offset) % n]
            try:
                img = self.load_image(path)
            except CorruptFileError as err:
                if not self.skip_bad:
                    raise
                if path not in self.bad_files:
                    self.bad_files.add(path)
                    log.warning("skipping %s", err)
                continue
            return (self.transform(img) if self.transform is not None else img), label
        raise DataError(f"no readable image under {self.root}: all {n} files failed to decode")


# ---------------------------------------------------------------------------- contract wrappers


class TwoViewDataset(Dataset):
    """``base[i] = (img, label)`` -> ``{"views": two_views(img), "index": i}`` (labels withheld)."""

    def __init__(self, base: Dataset, two_views: Callable[[Any], list[torch.Tensor]]) -> None:
        self.base, self.two_views = base, two_views

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, _ = self.base[index]
        return {"views": self.two_views(img), "index": index}


class ImageBatchDataset(Dataset):
    """``base[i] = (img, label)`` -> ``{"images": img, "index": i}`` with ``img`` uint8 ``[3, S, S]``
    (labels withheld), for batched augmentation after collation.

    Images whose size differs from ``S = image_size`` get the evaluation geometry: shorter side
    resized to ``S`` (antialiased), then the central ``S x S`` square, so images of any size stack
    into one batch. The random resized crop of the batched views then samples from that square:
    at most ``S x S`` source pixels, and nothing outside the centre square of a non-square image
    (the per-sample pipelines crop from the full-resolution image).
    """

    def __init__(self, base: Dataset, image_size: int) -> None:
        self.base, self.image_size = base, image_size

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, _ = self.base[index]
        s = self.image_size
        if tuple(img.shape[-2:]) != (s, s):
            img = TF.center_crop(TF.resize(img, s, antialias=True), [s, s])
        return {"images": img, "index": index}


class SingleImageDataset(Dataset):
    """``{"image": transform(img), "label": label, "index": i}``, for methods that build their own
    inputs from one image (rotation, masked modelling)."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, label = self.base[index]
        return {"image": self.transform(img), "label": int(label), "index": index}


class LabelledDataset(Dataset):
    """``{"input": transform(img), "label": label}``: the evaluation contract."""

    def __init__(self, base: Dataset, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base, self.transform = base, transform
        self.targets: list[int] = list(getattr(base, "targets", []))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, label = self.base[index]
        return {"input": self.transform(img), "label": int(label)}


def _check_views(views: str | None) -> str | None:
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in VIEW_NAMES + SINGLE_VIEW_NAMES:
        names = ", ".join(VIEW_NAMES + SINGLE_VIEW_NAMES)
        raise DataError(f"unknown views '{views}'; choose one of {names} or null")
    return views


AUGMENT_MODES: tuple[str, ...] = ("batch", "per_sample")


def _check_augment(augment: str) -> str:
    if augment not in AUGMENT_MODES:
        raise DataError(f"unknown augment '{augment}'; choose one of {', '.join(AUGMENT_MODES)}")
    return augment


def _pretrain_dataset(
    base: Dataset, views: str | None, image_size: int, augment: str
) -> tuple[Dataset, Callable[[Any], Any] | None]:
    """The pretraining dataset and the bundle's ``batch_transform`` (None: items are final)."""
    if views is None:
        return SingleImageDataset(base, eval_transform(image_size)), None
    if views in SINGLE_VIEW_NAMES:  # one augmented image per sample (masked image modelling)
        return SingleImageDataset(base, build_single_view(views, image_size)), None
    if augment == "batch":
        return ImageBatchDataset(base, image_size), build_batch_views(views, image_size)
    return TwoViewDataset(base, build_views(views, image_size)), None


# ---------------------------------------------------------------------------------- builders


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """Two-view recipes get ``views`` (+ ``index``); single-image ones (``views`` null or a single-view
    name such as ``mae``) get one ``image`` per sample with its ``label`` and ``index``."""
    views = _check_views(options["views"])
    if views is None or views in SINGLE_VIEW_NAMES:
        return {IMAGE, LABEL, INDEX}
    return {VIEWS, INDEX}


@data_source(produces=pretrain_keys)
def procedural_shapes(
    views: str | None = "simclr",
    image_size: int = 32,
    num_classes: int = 10,
    train_per_class: int = 500,
    test_per_class: int = 100,
    seed: int = 0,
    cache_dir: str | None = None,
    augment: str = "batch",
) -> DataBundle:
    """Built-in shapes-and-textures images (see :class:`ProceduralShapes`); no download.

    ``views``: two-view recipe for pretraining (``simclr``, ``moco_v2``, ``byol``), a one-image
    recipe (``mae``: crop + flip) or null (no augmentation), the last two giving single images
    ``{"image", "label", "index"}``. Pretraining and ``eval_train`` use the same train images;
    ``eval_test`` is a disjoint test draw. ``cache_dir``: where rendered splits are stored
    (default ``$MMSSL_CACHE/procedural_shapes`` or ``~/.cache/mmssl/procedural_shapes``).
    ``augment``: ``"batch"`` (pretraining items are uint8 images; the bundle's ``batch_transform``
    makes both views of a whole batch on the training device) or ``"per_sample"`` (each item's views
    are made by ``transforms.v2`` in the data-loader workers). Ignored for single images.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    common = dict(image_size=image_size, num_classes=num_classes, seed=seed, cache_dir=cache_dir)
    train = ProceduralShapes(train_per_class, split="train", **common)  # type: ignore[arg-type]
    test = ProceduralShapes(test_per_class, split="test", **common)  # type: ignore[arg-type]
    evaluation = eval_transform(image_size)
    pretrain, batch_transform = _pretrain_dataset(train, views, image_size, augment)
    return DataBundle(
        pretrain=pretrain,
        eval_train=LabelledDataset(train, evaluation),
        eval_test=LabelledDataset(test, evaluation),
        num_classes=num_classes,
        batch_transform=batch_transform,
        info={
            "modality": "image",
            "dataset": "procedural_shapes",
            "class_names": train.class_names,
            "image_size": image_size,
            "views": views,
            "augment": augment if views in VIEW_NAMES else None,
            "num_train": len(train),
            "num_test": len(test),
        },
    )


@data_source(produces=pretrain_keys)
def image_folder(
    root: str,
    views: str | None = "simclr",
    image_size: int = 32,
    train_subdir: str = "train",
    test_subdir: str = "test",
    skip_bad: bool = False,
    augment: str = "batch",
    seed: int = 0,
) -> DataBundle:
    """Real images in ``root/<train_subdir>/<class>/*`` and ``root/<test_subdir>/<class>/*``.

    ``views`` and ``augment`` as for ``procedural_shapes``. Evaluation images are resized (shorter
    side) and centre-cropped to ``image_size``. Pretraining with ``augment="per_sample"`` takes the
    random resized crop from the full-resolution image; with ``augment="batch"`` images are first
    resized and centre-cropped to ``image_size`` (where their size differs) so that they stack into
    a batch, and the crop is taken from that square (see :class:`ImageBatchDataset`).
    ``skip_bad``: skip undecodable files with a warning instead of raising
    :class:`~mmssl.errors.CorruptFileError`.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"image_folder root not found: {base}")
    train = ImageFolderDataset(base / train_subdir, skip_bad=skip_bad)
    test = ImageFolderDataset(base / test_subdir, skip_bad=skip_bad)
    if train.classes != test.classes:
        raise DataError(
            f"class folders differ between {base / train_subdir} ({', '.join(train.classes)}) "
            f"and {base / test_subdir} ({', '.join(test.classes)})"
        )
    evaluation = eval_transform(image_size)
    pretrain, batch_transform = _pretrain_dataset(train, views, image_size, augment)
    return DataBundle(
        pretrain=pretrain,
        eval_train=LabelledDataset(train, evaluation),
        eval_test=LabelledDataset(test, evaluation),
        num_classes=len(train.classes),
        batch_transform=batch_transform,
        info={
            "modality": "image",
            "dataset": "image_folder",
            "root": str(base),
            "class_names": train.classes,
            "image_size": image_size,
            "views": views,
            "augment": augment if views in VIEW_NAMES else None,
            "num_train": len(train),
            "num_test": len(test),
        },
    )
