"""The registered image–text datasets: the built-in procedural captions and real pairs from a file.

Both give a :class:`~mmssl.data.DataBundle` whose pretraining items are ``{"image", "text", "index"}``
(:mod:`.items`) for ``crossmodal_contrastive`` with ``encoder_key: image`` and a ``text`` tower, and whose
extras are

- :class:`~mmssl.data.extras.HeldOutPairs`: held-out pairs (evaluation transform, one caption each) for the
  ``retrieval`` evaluator (R@K image->text and text->image);
- :class:`~.tokens.CaptionTokenizer`: the tokenizer the captions were encoded with (the ``zero_shot``
  evaluator encodes its prompts with it; the method checks the text tower against it);
- :class:`~.extras.ZeroShotTask` s: labelled images with class names for the ``zero_shot`` evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from mmssl.crossmodal.image_text.captions import (
    TEMPLATES,
    VOCABULARIES,
    all_captions,
    caption,
    combination,
    num_combinations,
)
from mmssl.crossmodal.image_text.extras import ZeroShotTask
from mmssl.crossmodal.image_text.items import ImageTextItems, held_out_items, train_image_transform
from mmssl.crossmodal.image_text.keys import TEXT
from mmssl.crossmodal.image_text.pair_files import PairImages, read_pair_file
from mmssl.crossmodal.image_text.render import CaptionedPictures
from mmssl.crossmodal.image_text.tokens import CaptionTokenizer, caption_tokenizer
from mmssl.data import DataBundle, LabelledItems, SkipBadFiles
from mmssl.data.extras import HeldOutPairs
from mmssl.data.keys import IMAGE, INDEX
from mmssl.data.source import data_source
from mmssl.errors import DataError
from mmssl.modalities.image.splits import ImageSplits, as_image_splits, resolve_splits
from mmssl.modalities.image.views import eval_transform

#: the attributes the procedural set can label its pictures with (``eval_attribute``, zero-shot tasks)
ATTRIBUTES: tuple[str, ...] = tuple(VOCABULARIES)


class AttributeLabels(Dataset):
    """``(picture, attribute class)`` items of some pictures of a :class:`CaptionedPictures` (all of them
    when ``count`` is None, else the first ``count``), labelled by one attribute."""

    def __init__(self, pictures: CaptionedPictures, attribute: str, count: int | None = None) -> None:
        self.pictures, self.column = pictures, ATTRIBUTES.index(attribute)
        n = len(pictures) if count is None else min(count, len(pictures))
        self.targets: list[int] = pictures.attributes[:n, self.column].tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.pictures.images[index], self.targets[index]


def _encode_all(tokens: CaptionTokenizer, captions: Sequence[Sequence[str]]) -> Tensor:
    """Long ``[N, K, L]``: ``K`` captions per picture encoded with ``tokens``."""
    k = len(captions[0])
    flat = tokens.encode([c for options in captions for c in options])
    return flat.view(len(captions), k, tokens.max_length)


def _check_attribute(attribute: str) -> str:
    if attribute not in ATTRIBUTES:
        raise DataError(f"unknown eval_attribute '{attribute}'; choose one of {', '.join(ATTRIBUTES)}")
    return attribute


@data_source(produces={IMAGE, TEXT, INDEX})
def procedural_image_text(
    train_size: int = 4096,
    test_size: int | None = None,
    image_size: int = 32,
    max_length: int = 16,
    vocab_size: int = 256,
    min_frequency: int = 2,
    augment: bool = True,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    eval_attribute: str = "shape",
    eval_train_size: int = 960,
    seed: int = 0,
    cache_dir: str | None = None,
) -> DataBundle:
    """Built-in captioned pictures (:mod:`.captions`, :mod:`.render`); nothing is downloaded.

    ``train_size`` training pictures with attributes drawn uniformly (seeded by ``seed``), each with its
    caption through every template (one drawn per access). Held-out pairs: ``test_size`` pictures (default:
    one per attribute combination, 192) whose combinations are distinct (a seeded permutation of all of
    them, cycled when ``test_size`` is larger), each with one caption (a seeded template), so every
    held-out caption describes exactly one held-out picture and R@1 can reach 1. Held-out pictures are new
    drawings, but their combinations also occur in training: the set measures whether the towers read the
    attributes, not whether they generalise to unseen combinations. Pictures are
    ``image_size`` px, rendered once and cached under ``cache_dir`` (default
    ``$MMSSL_CACHE/procedural_image_text``); the caption tokenizer (WordPiece, ``vocab_size`` an upper
    bound, ``min_frequency``) is trained on the training captions and cached; captions are ``max_length``
    tokens. ``augment``: random resized crop (area ``crop_scale``) + flip of pretraining pictures.

    Evaluation: ``eval_train`` / ``eval_test`` are the first ``eval_train_size`` training pictures / the
    held-out pictures labelled by ``eval_attribute`` (for ``few_shot`` / ``knn`` / ``linear`` on the image
    tower); one :class:`ZeroShotTask` per attribute (``shape``, ``fill``, ``colour``) on the held-out
    pictures, its class names the attribute's words.
    """
    eval_attribute = _check_attribute(eval_attribute)
    if train_size < 2 or (test_size is not None and test_size < 2):
        raise DataError(f"need train_size >= 2 and test_size >= 2, got {train_size}, {test_size}")
    n_test = num_combinations() if test_size is None else test_size
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7170]))  # the set's own draws
    train_attrs = [combination(int(i)) for i in rng.integers(num_combinations(), size=train_size)]
    test_attrs = [combination(int(i)) for i in np.resize(rng.permutation(num_combinations()), n_test)]
    test_templates = rng.integers(len(TEMPLATES), size=n_test)
    common = dict(image_size=image_size, seed=seed, cache_dir=cache_dir)
    train = CaptionedPictures(train_attrs, split="train", **common)  # type: ignore[arg-type]
    test = CaptionedPictures(test_attrs, split="test", **common)  # type: ignore[arg-type]
    train_captions = [all_captions(a) for a in train_attrs]
    test_captions = [[caption(a, int(t))] for a, t in zip(test_attrs, test_templates)]
    tokens, tok_stats = caption_tokenizer(
        [c for options in train_captions for c in options],
        max_length=max_length,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        cache_dir=Path(cache_dir) / "text_tokenizers" if cache_dir else None,
    )
    transform = train_image_transform(image_size, crop_scale) if augment else eval_transform(image_size)
    evaluation = eval_transform(image_size)
    tasks = tuple(
        ZeroShotTask(name, LabelledItems(AttributeLabels(test, name), evaluation), VOCABULARIES[name])
        for name in ATTRIBUTES
    )
    all_text = [c for options in train_captions + test_captions for c in options]
    return DataBundle(
        pretrain=ImageTextItems(train, _encode_all(tokens, train_captions), transform, random_caption=True),
        eval_train=LabelledItems(AttributeLabels(train, eval_attribute, eval_train_size), evaluation),
        eval_test=LabelledItems(AttributeLabels(test, eval_attribute), evaluation),
        num_classes=len(VOCABULARIES[eval_attribute]),
        extras=(
            HeldOutPairs(held_out_items(test, _encode_all(tokens, test_captions), image_size)),
            tokens,
            *tasks,
        ),
        name="procedural_image_text",
        stats={
            "modality": "image_text",
            "image_size": image_size,
            "num_train": train_size,
            "num_test": n_test,
            "num_combinations": num_combinations(),
            "eval_attribute": eval_attribute,
            "class_names": list(VOCABULARIES[eval_attribute]),
            "max_length": max_length,
            "num_truncated_captions": tokens.num_truncated(sorted(set(all_text))),
            **tok_stats,
        },
    )


def _split_pairs(pairs: list, test_every: int) -> tuple[list, list]:
    """Every ``test_every``-th pair (positions ``test_every - 1``, ``2 * test_every - 1`` ...) held out."""
    if test_every < 2:
        raise DataError(f"test_every must be >= 2, got {test_every}")
    test = [p for i, p in enumerate(pairs) if i % test_every == test_every - 1]
    train = [p for i, p in enumerate(pairs) if i % test_every != test_every - 1]
    return train, test


@data_source(produces={IMAGE, TEXT, INDEX}, labelled=lambda options: options["eval"] is not None)
def image_text_pairs(
    pairs: str,
    test_pairs: str | None = None,
    test_every: int = 10,
    image_field: str = "image",
    caption_field: str = "caption",
    image_size: int = 64,
    max_length: int = 32,
    tokenizer: str | None = None,
    vocab_size: int = 4096,
    min_frequency: int = 2,
    lowercase: bool = True,
    augment: bool = True,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    eval: ImageSplits | None = None,
    skip_bad: bool = False,
    cache_dir: str | None = None,
    seed: int = 0,
) -> DataBundle:
    """Real image–caption pairs from a ``.jsonl`` / ``.csv`` file (:mod:`.pair_files`).

    ``pairs``: the training pairs; ``test_pairs``: held-out pairs from another file, else every
    ``test_every``-th pair of ``pairs`` (file order) is held out. ``image_field`` / ``caption_field``: the
    field or column names. Images are ``image_size`` px (shorter side resized, centre crop; pretraining:
    a random resized crop of area ``crop_scale`` and a flip when ``augment``). The caption tokenizer is
    the local folder ``tokenizer``, else a WordPiece one (``vocab_size``, ``min_frequency``,
    ``lowercase``) trained on the training captions and cached; captions are ``max_length`` tokens
    (``stats["num_truncated_captions"]`` counts the longer ones).

    ``eval`` (optional): a labelled image set, the ``splits`` section of ``image_folder`` (``{train: DIR,
    val: ..., test: DIR}``): ``eval_train`` / ``eval_test`` for the image tower, and a zero-shot task
    ``classes`` whose class names are its folder names (write them as words: ``sports_car`` is read as
    one unknown word). ``skip_bad``: leave out bad lines, missing and undecodable images with a warning
    instead of raising.
    """
    skipping = SkipBadFiles(skip_bad)
    fields = dict(image_field=image_field, caption_field=caption_field, skipping=skipping)
    listed = read_pair_file(pairs, **fields)  # type: ignore[arg-type]
    if test_pairs is not None:
        train_pairs, held_out = listed, read_pair_file(test_pairs, **fields)  # type: ignore[arg-type]
    else:
        train_pairs, held_out = _split_pairs(listed, test_every)
    if not train_pairs or len(held_out) < 2:
        raise DataError(
            f"{pairs}: {len(train_pairs)} training and {len(held_out)} held-out pairs; need >= 1 and >= 2"
        )
    tokens, tok_stats = caption_tokenizer(
        [p.caption for p in train_pairs],
        max_length=max_length,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        lowercase=lowercase,
        cache_dir=Path(cache_dir) / "text_tokenizers" if cache_dir else None,
    )
    transform = train_image_transform(image_size, crop_scale) if augment else eval_transform(image_size)
    evaluation = eval_transform(image_size)

    def ids(chosen: list) -> Tensor:
        return _encode_all(tokens, [[p.caption] for p in chosen])

    extras: list[Any] = [
        HeldOutPairs(held_out_items(PairImages(held_out), ids(held_out), image_size)),
        tokens,
    ]
    stats: dict[str, Any] = {
        "modality": "image_text",
        "pairs": str(Path(pairs).expanduser()),
        "test_pairs": str(Path(test_pairs).expanduser()) if test_pairs else f"every {test_every}th pair",
        "image_size": image_size,
        "num_train": len(train_pairs),
        "num_test": len(held_out),
        "max_length": max_length,
        "num_truncated_captions": tokens.num_truncated([p.caption for p in train_pairs + held_out]),
        **tok_stats,
    }
    eval_train = eval_test = None
    num_classes = 0
    splits = as_image_splits(eval, "data.eval")
    if splits is not None:
        resolved = resolve_splits(splits, skip_bad=skip_bad, where="data.eval")
        eval_train = LabelledItems(resolved.train, evaluation)
        eval_test = (
            LabelledItems(resolved.evaluation, evaluation) if resolved.evaluation is not None else None
        )
        num_classes = len(resolved.classes)
        if eval_test is not None:
            extras.append(ZeroShotTask("classes", eval_test, tuple(resolved.classes)))
        stats.update({**resolved.stats(), "class_names": list(resolved.classes)})
    stats.update({"num_skipped": skipping.num_skipped, "bad_files": [str(p) for p in skipping.bad_files]})
    return DataBundle(
        pretrain=ImageTextItems(PairImages(train_pairs), ids(train_pairs), transform),
        eval_train=eval_train,
        eval_test=eval_test,
        num_classes=num_classes,
        extras=tuple(extras),
        name="image_text_pairs",
        stats=stats,
    )
