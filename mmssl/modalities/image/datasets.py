"""The registered image datasets: built-in procedural shapes, labelled real images (an ImageFolder root
with train/ and test/, or splits from anywhere: :mod:`~mmssl.modalities.image.splits`, CIFAR python
folders included) and unlabelled images (:mod:`~mmssl.modalities.image.unlabelled`).

Base datasets (:class:`~mmssl.procedural.shapes.ProceduralShapes`,
:class:`~mmssl.modalities.image.folder.ImageFolderDataset`,
:class:`~mmssl.modalities.image.cifar.CifarImages`,
:class:`~mmssl.modalities.image.unlabelled.UnlabelledImages`) yield ``(uint8 tensor [3, H, W], label)``;
the wrappers of :mod:`mmssl.data.wrappers` (and :class:`~mmssl.modalities.image.items.ImageBatchItems`)
turn them into what the toolkit's contracts expect:

- pretraining, two-view presets, ``augment="batch"`` (default): ``{"images": uint8 [3, S, S], "index": i}``
  per item, and the bundle's ``batch_transform``
  (:class:`~mmssl.modalities.image.batch_views.BatchViews`) turns each batch into
  ``{"views": [v1, v2], "index": ...}`` on the training device;
- pretraining, two-view presets, ``augment="per_sample"``: ``{"views": [v1, v2], "index": i}`` per item
  (``transforms.v2`` in the data-loader workers, :func:`~mmssl.modalities.image.views.sample_views`);
- pretraining, single-image presets (``views: mae``) or no augmentation (``views: null``; rotation,
  jigsaw ...): ``{"image": tensor, "label": int, "index": i}``;
- evaluation: ``{"input": tensor, "label": int}`` with the deterministic ``eval_transform``.

Both augmentation paths read the same :class:`~mmssl.modalities.image.view_spec.ViewSpec` per view:
the preset named by ``views`` with the recipe's ``view_options`` applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmssl.data import DataBundle, LabelledItems, MultiViewItems, SingleItems
from mmssl.data.keys import IMAGE, INDEX, LABEL, VIEWS
from mmssl.data.shards import ShardStream
from mmssl.data.source import data_source
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.image.batch_views import BatchViews
from mmssl.modalities.image.folder import ImageFolderDataset
from mmssl.modalities.image.items import ImageBatchItems
from mmssl.modalities.image.shards import image_shard_samples
from mmssl.modalities.image.splits import ImageSplits, as_image_splits, resolve_splits
from mmssl.modalities.image.unlabelled import UnlabelledImages, WithoutLabel
from mmssl.modalities.image.view_spec import SINGLE_VIEW_NAMES, VIEW_NAMES, ViewOptions, resolve_views
from mmssl.modalities.image.views import AugmentationView, eval_transform, sample_views
from mmssl.options import build_dataclass
from mmssl.procedural.shapes import ProceduralShapes

AUGMENT_MODES: tuple[str, ...] = ("batch", "per_sample")


def _check_views(views: str | None) -> str | None:
    if views is None or (isinstance(views, str) and views.lower() in ("none", "null", "")):
        return None
    if views not in VIEW_NAMES + SINGLE_VIEW_NAMES:
        names = ", ".join(VIEW_NAMES + SINGLE_VIEW_NAMES)
        raise DataError(f"unknown views '{views}'; choose one of {names} or null")
    return views


def _check_augment(augment: str) -> str:
    if augment not in AUGMENT_MODES:
        raise DataError(f"unknown augment '{augment}'; choose one of {', '.join(AUGMENT_MODES)}")
    return augment


def _view_options(options: ViewOptions | Mapping[str, Any] | None) -> ViewOptions | None:
    """The recipe's ``view_options`` as a :class:`ViewOptions` (a plain mapping when built directly)."""
    if options is None or isinstance(options, ViewOptions):
        return options
    return build_dataclass(ViewOptions, options, "data.view_options")


def pretrain_dataset(
    base: Dataset, views: str | None, image_size: int, augment: str, options: ViewOptions | None = None
) -> tuple[Dataset, Callable[[Any], Any] | None]:
    """The pretraining dataset and the bundle's ``batch_transform`` (None: items are final)."""
    if views is None:
        if options is not None:
            raise ConfigError("data.view_options needs data.views (a preset such as simclr or mae)")
        return SingleItems(base, eval_transform(image_size), IMAGE), None
    try:
        specs = resolve_views(views, image_size, options)
    except ValueError as err:
        raise ConfigError(f"'data.view_options': {err}") from None
    if views in SINGLE_VIEW_NAMES:  # one augmented image per sample (masked image modelling)
        (spec,) = specs
        return SingleItems(base, AugmentationView(image_size, spec), IMAGE), None
    if augment == "batch":
        return ImageBatchItems(base, image_size), BatchViews.from_specs(specs, image_size)
    return MultiViewItems(base, sample_views(specs, image_size)), None


def pretrain_keys(options: Mapping[str, Any]) -> set[str]:
    """Two-view recipes get ``views`` (+ ``index``); single-image ones (``views`` null or a single-view
    name such as ``mae``) get one ``image`` per sample with its ``label`` and ``index``."""
    views = _check_views(options["views"])
    if views is None or views in SINGLE_VIEW_NAMES:
        return {IMAGE, LABEL, INDEX}
    return {VIEWS, INDEX}


def image_bundle(
    name: str,
    train: Dataset | None,
    test: Dataset | None,
    num_classes: int,
    *,
    views: str | None,
    image_size: int,
    augment: str,
    view_options: ViewOptions | None,
    stats: Mapping[str, Any] | None = None,
    unlabelled: Dataset | None = None,
) -> DataBundle:
    """Pretraining on ``train`` (see the module docstring), or on ``unlabelled`` when given (items without
    ``label``); evaluation on ``train`` and ``test`` where they are given."""
    evaluation = eval_transform(image_size)
    source = unlabelled if unlabelled is not None else train
    if source is None:
        raise DataError(f"{name}: nothing to pretrain on")
    pretrain, batch_transform = pretrain_dataset(source, views, image_size, augment, view_options)
    if unlabelled is not None and (views is None or views in SINGLE_VIEW_NAMES):
        pretrain = WithoutLabel(pretrain)
    return DataBundle(
        pretrain=pretrain,
        eval_train=LabelledItems(train, evaluation) if train is not None else None,
        eval_test=LabelledItems(test, evaluation) if test is not None else None,
        num_classes=num_classes,
        batch_transform=batch_transform,
        name=name,
        stats={
            **(stats or {}),
            "image_size": image_size,
            "views": views,
            "augment": augment if views in VIEW_NAMES else None,
            "num_train": len(train) if train is not None else 0,  # type: ignore[arg-type]
            "num_test": len(test) if test is not None else 0,  # type: ignore[arg-type]
        },
    )


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
    view_options: ViewOptions | None = None,
) -> DataBundle:
    """Built-in shapes-and-textures images (see :class:`ProceduralShapes`); no download.

    ``views``: two-view preset for pretraining (``simclr``, ``moco_v2``, ``byol``), a one-image
    preset (``mae``: crop + flip) or null (no augmentation), the last two giving single images
    ``{"image", "label", "index"}``. ``view_options``: overrides of the preset's numbers, applied to
    every view (:class:`~mmssl.modalities.image.view_spec.ViewOptions`, e.g.
    ``{crop_scale: [0.2, 1.0], jitter_strength: 0.5}``). Pretraining and ``eval_train`` use the same
    train images; ``eval_test`` is a disjoint test draw. ``cache_dir``: where rendered splits are
    stored (default ``$MMSSL_CACHE/procedural_shapes`` or ``~/.cache/mmssl/procedural_shapes``).
    ``augment``: ``"batch"`` (pretraining items are uint8 images; the bundle's ``batch_transform``
    makes both views of a whole batch on the training device) or ``"per_sample"`` (each item's views
    are made by ``transforms.v2`` in the data-loader workers). Ignored for single images.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    common = dict(image_size=image_size, num_classes=num_classes, seed=seed, cache_dir=cache_dir)
    train = ProceduralShapes(train_per_class, split="train", **common)  # type: ignore[arg-type]
    test = ProceduralShapes(test_per_class, split="test", **common)  # type: ignore[arg-type]
    return image_bundle(
        "procedural_shapes",
        train,
        test,
        num_classes,
        views=views,
        image_size=image_size,
        augment=augment,
        view_options=_view_options(view_options),
    )


def _exactly_one(
    options: Mapping[str, Any], dataset: str, first: tuple[str, str], second: tuple[str, str]
) -> None:
    """A :class:`ConfigError` unless exactly one of the two ``(key, what it is)`` options is given."""
    given = [key for key, _ in (first, second) if options.get(key) is not None]
    if len(given) != 1:
        got = "; got both (" + ", ".join(f"{k}: {options[k]}" for k in given) + ")" if given else ""
        raise ConfigError(
            f"dataset '{dataset}' needs exactly one of data.{first[0]} ({first[1]}) and "
            f"data.{second[0]} ({second[1]}){got}"
        )


def image_folder_keys(options: Mapping[str, Any]) -> set[str]:
    """As :func:`pretrain_keys`; also checks, when the recipe loads, that exactly one of ``root`` and
    ``splits`` says where the images are."""
    _exactly_one(
        options,
        "image_folder",
        ("root", "a folder with train/ and test/"),
        ("splits", "{train: DIR, val: DIR or {last_per_class: N}, test: DIR}"),
    )
    return pretrain_keys(options)


@data_source(produces=image_folder_keys)
def image_folder(
    root: str | None = None,
    views: str | None = "simclr",
    image_size: int = 32,
    train_subdir: str = "train",
    test_subdir: str = "test",
    skip_bad: bool = False,
    augment: str = "batch",
    seed: int = 0,
    view_options: ViewOptions | None = None,
    splits: ImageSplits | None = None,
) -> DataBundle:
    """Real labelled images: ``root`` with train/ and test/ sub-folders, or ``splits`` from anywhere.

    ``root``: ``root/<train_subdir>/<class>/*`` and ``root/<test_subdir>/<class>/*``; pretraining and
    ``eval_train`` use the train folder, ``eval_test`` the test folder.

    ``splits`` (instead of ``root``): ``{train: PATH, val: PATH | {last_per_class: N} | {fraction: F,
    seed: S}, test: PATH}``, each path an ImageFolder root or a CIFAR python folder; pretraining and
    ``eval_train`` use train minus val, ``eval_test`` is test when given, else val
    (``stats["eval_split"]`` says which); see :mod:`~mmssl.modalities.image.splits`.

    ``views``, ``view_options`` and ``augment`` as for ``procedural_shapes``. Evaluation images are
    resized (shorter side) and centre-cropped to ``image_size``. Pretraining with
    ``augment="per_sample"`` takes the random resized crop from the full-resolution image; with
    ``augment="batch"`` images are first resized and centre-cropped to ``image_size`` (where their size
    differs) so that they stack into a batch, and the crop is taken from that square (see
    :class:`~mmssl.modalities.image.items.ImageBatchItems`). ``skip_bad``: every image file is decoded
    once when the dataset is built (in threads); undecodable ones are logged, left out of the index (no
    other sample stands in for them) and listed in ``stats["num_skipped"]`` / ``stats["bad_files"]``;
    without it the first one read raises :class:`~mmssl.errors.CorruptFileError` naming it.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    splits = as_image_splits(splits, "data.splits")
    if splits is not None or root is None:
        image_folder_keys({"root": root, "splits": splits, "views": views})
        if (train_subdir, test_subdir) != ("train", "test"):
            raise ConfigError("data.train_subdir / data.test_subdir apply to data.root, not to data.splits")
        return _image_splits_bundle(
            splits,  # type: ignore[arg-type]
            views=views,
            image_size=image_size,
            augment=augment,
            skip_bad=skip_bad,
            view_options=view_options,
        )
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
    return image_bundle(
        "image_folder",
        train,
        test,
        len(train.classes),
        views=views,
        image_size=image_size,
        augment=augment,
        view_options=_view_options(view_options),
        stats={"root": str(base), "skip_bad": skip_bad, **skipped_stats(train, test)},
    )


def skipped_stats(*datasets: Any) -> dict[str, Any]:
    """``num_skipped`` and ``bad_files`` (each once) of the datasets built with ``skip_bad``: the files
    left out of their index (the runner writes them to metrics.json under ``data``)."""
    bad = list(dict.fromkeys(p for d in datasets for p in getattr(d, "bad_files", [])))
    return {"num_skipped": len(bad), "bad_files": [str(p) for p in bad]}


def _image_splits_bundle(
    splits: ImageSplits,
    *,
    views: str | None,
    image_size: int,
    augment: str,
    skip_bad: bool,
    view_options: ViewOptions | Mapping[str, Any] | None,
) -> DataBundle:
    resolved = resolve_splits(splits, skip_bad=skip_bad, where="data.splits")
    return image_bundle(
        "image_folder",
        resolved.train,  # type: ignore[arg-type]
        resolved.evaluation,  # type: ignore[arg-type]
        len(resolved.classes),
        views=views,
        image_size=image_size,
        augment=augment,
        view_options=_view_options(view_options),
        stats={**resolved.stats(), "skip_bad": skip_bad},
    )


def unlabelled_keys(options: Mapping[str, Any]) -> set[str]:
    """As :func:`pretrain_keys`, less ``label``: unlabelled images have none. Also checks, when the recipe
    loads, that exactly one of ``images`` and ``shards`` says where they are."""
    _exactly_one(
        options,
        "image_files",
        ("images", "a folder or a list of files"),
        ("shards", "a shard folder written by data_tools/make_shards.py"),
    )
    return pretrain_keys(options) - {LABEL}


@data_source(produces=unlabelled_keys, labelled=lambda options: options["eval"] is not None)
def image_files(
    images: str | None = None,
    views: str | None = "simclr",
    image_size: int = 32,
    skip_bad: bool = False,
    augment: str = "batch",
    seed: int = 0,
    view_options: ViewOptions | None = None,
    eval: ImageSplits | None = None,
    shards: str | None = None,
    shuffle_buffer: int = 1000,
) -> DataBundle:
    """Pretraining on unlabelled images: a folder of any depth, a ``.txt`` / ``.csv`` list of files, or
    WebDataset shards.

    ``images``: see :mod:`~mmssl.modalities.image.unlabelled` (``.csv`` lists need a ``path`` column;
    paths in lists are relative to the list's folder). ``skip_bad``: undecodable files are found when
    the dataset is built (each file decoded once), logged, counted in ``stats["num_skipped"]`` (named in
    ``stats["bad_files"]``, with those of the ``eval`` folders) and left out of the index; without it
    the first one read raises :class:`~mmssl.errors.CorruptFileError` naming it. ``views``,
    ``view_options`` and ``augment`` as for ``image_folder``; pretraining items
    carry no ``label``.

    ``eval`` (optional): labelled splits for kNN / linear / few-shot, the same section as
    ``image_folder``'s ``splits`` (``{train: DIR, val: ..., test: DIR}``). Without it the bundle has no
    ``eval_train`` / ``eval_test``, and evaluators that need labels say so.

    ``shards`` (instead of ``images``): a folder written by ``data_tools/make_shards.py``, streamed
    (:class:`~mmssl.data.shards.ShardStream`: split over processes and data-loader workers, block
    shuffle of ``shuffle_buffer`` samples, exact resume); labels in the shards are not used.
    """
    views = _check_views(views)
    augment = _check_augment(augment)
    splits = as_image_splits(eval, "data.eval")
    unlabelled_keys({"images": images, "shards": shards, "views": views})
    samples = image_shard_samples(shards) if shards is not None else None
    unlabelled = samples if samples is not None else UnlabelledImages(images, skip_bad=skip_bad)  # type: ignore[arg-type]
    stats: dict[str, Any] = {
        "num_pretrain": len(unlabelled),
        "skip_bad": skip_bad,
        "eval_split": "none",
    }
    if samples is not None:
        stats.update(shards=str(samples.manifest.root), num_shards=len(samples.manifest.shards))
    else:
        stats.update(images=unlabelled.source, **skipped_stats(unlabelled))
    train = test = None
    num_classes = 0
    if splits is not None:
        resolved = resolve_splits(splits, skip_bad=skip_bad, where="data.eval")
        train, test, num_classes = resolved.train, resolved.evaluation, len(resolved.classes)
        bad = list(dict.fromkeys(stats.get("bad_files", []) + resolved.stats()["bad_files"]))
        stats.update(resolved.stats(), num_skipped=len(bad), bad_files=bad)
    bundle = image_bundle(
        "image_files",
        train,  # type: ignore[arg-type]
        test,  # type: ignore[arg-type]
        num_classes,
        views=views,
        image_size=image_size,
        augment=augment,
        view_options=_view_options(view_options),
        stats=stats,
        unlabelled=unlabelled,
    )
    if samples is not None:
        bundle.pretrain = ShardStream(bundle.pretrain, samples, seed=seed, shuffle_buffer=shuffle_buffer)
    return bundle
