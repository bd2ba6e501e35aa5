"""Captions name the true attributes; pictures show them; the procedural bundle keeps captions, labels and
held-out pairs aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmssl.crossmodal.image_text.captions import (
    COLOURS,
    FILLS,
    SHAPES,
    TEMPLATES,
    VOCABULARIES,
    Attributes,
    caption,
    combination,
    num_combinations,
)
from mmssl.crossmodal.image_text.datasets import procedural_image_text
from mmssl.crossmodal.image_text.extras import zero_shot_tasks
from mmssl.crossmodal.image_text.render import DARK_SHADE, picture_rng, render_picture
from mmssl.crossmodal.image_text.tokens import CaptionTokenizer
from mmssl.data.extras import HeldOutPairs

VOCAB_WORDS = {word: key for key, vocab in VOCABULARIES.items() for word in vocab}


def named_attributes(text: str) -> dict[str, list[str]]:
    """Which vocabulary words a caption contains, by attribute (word by word, independent of templates)."""
    found: dict[str, list[str]] = {key: [] for key in VOCABULARIES}
    for word in text.replace(",", " ").split():
        if word in VOCAB_WORDS:
            found[VOCAB_WORDS[word]].append(word)
    return found


def test_combinations_enumerate_every_attribute_triple_once():
    seen = {combination(i).as_tuple() for i in range(num_combinations())}
    expected = {(s, f, c) for s in range(len(SHAPES)) for f in range(len(FILLS)) for c in range(len(COLOURS))}
    assert seen == expected and len(expected) == num_combinations()
    assert combination(num_combinations() + 5) == combination(5)


@pytest.mark.parametrize("template", range(len(TEMPLATES)))
def test_every_caption_names_exactly_the_true_attributes(template):
    for i in range(num_combinations()):
        attrs = combination(i)
        words = named_attributes(caption(attrs, template))
        assert words == {key: [name] for key, name in attrs.names().items()}, caption(attrs, template)


def test_article_agrees_with_the_next_word():
    assert caption(Attributes(SHAPES.index("ring"), FILLS.index("plain"), list(COLOURS).index("orange"))) == (
        "an orange plain ring"
    )
    for i in range(num_combinations()):
        for t in range(len(TEMPLATES)):
            words = caption(combination(i), t).split()
            for article, nxt in zip(words, words[1:]):
                if article in ("a", "an"):
                    assert (article == "an") == (nxt[0] in "aeiou"), words


def test_picture_shows_the_named_colour_and_its_fill():
    """The most saturated pixels average closest to the named colour (of all named colours); a patterned
    fill also has many pixels at the dark shade of that colour, a plain one (almost) none."""
    palette = np.array(list(COLOURS.values()), dtype=float)
    for i in range(0, num_combinations(), 3):
        attrs = combination(i)
        image = render_picture(attrs, picture_rng(3, "train", i), 48).reshape(3, -1).T.astype(float)
        saturation = image.max(axis=1) - image.min(axis=1)
        # The light pixels of the shape: at least 70 % of the top saturation (the dark shade has 45 %).
        bright = image[saturation >= 0.7 * np.quantile(saturation, 0.99)].mean(axis=0)
        assert np.argmin(np.linalg.norm(palette - bright, axis=1)) == attrs.colour, attrs
        # Of the saturated pixels (the grey background is not) near the colour or near its dark shade, the
        # share near the dark shade.
        image = image[saturation > 40]
        near_light = (np.linalg.norm(image - palette[attrs.colour], axis=1) < 40).sum()
        near_dark = (np.linalg.norm(image - DARK_SHADE * palette[attrs.colour], axis=1) < 40).sum()
        dark_share = near_dark / (near_light + near_dark)
        if FILLS[attrs.fill] == "plain":
            assert dark_share < 0.03, attrs
        else:
            assert dark_share > 0.05, attrs


def test_pictures_are_a_function_of_seed_split_and_index():
    attrs = combination(11)
    a = render_picture(attrs, picture_rng(0, "train", 4))
    assert np.array_equal(a, render_picture(attrs, picture_rng(0, "train", 4)))
    assert not np.array_equal(a, render_picture(attrs, picture_rng(0, "test", 4)))


@pytest.fixture()
def bundle(tmp_path):
    return procedural_image_text(train_size=48, test_size=30, image_size=16, seed=0, cache_dir=str(tmp_path))


def test_bundle_items_and_held_out_captions_match_their_labels(bundle):
    item = bundle.pretrain[0]
    assert set(item) == {"image", "text", "index"} == set(bundle.produces)
    assert item["image"].shape == (3, 16, 16) and item["text"].dtype == torch.long
    tokens = bundle.find_extra(CaptionTokenizer)
    pairs = bundle.find_extra(HeldOutPairs).dataset
    tasks = {t.name: t for t in zero_shot_tasks(bundle.extras)}
    assert set(tasks) == {"shape", "fill", "colour"} and len(pairs) == 30
    combos = set()
    for i in range(len(pairs)):
        text = tokens.tokenizer.decode(pairs[i]["text"], skip_special_tokens=True)
        truth = {name: task.class_names[int(task.dataset[i]["label"])] for name, task in tasks.items()}
        assert named_attributes(text) == {k: [v] for k, v in truth.items()}, (text, truth)
        torch.testing.assert_close(pairs[i]["image"], tasks["shape"].dataset[i]["input"])
        combos.add(tuple(truth.values()))
    assert len(combos) == 30  # held-out pictures have distinct attribute combinations


def test_training_captions_vary_over_templates_but_keep_the_attributes(bundle):
    tokens = bundle.find_extra(CaptionTokenizer)
    torch.manual_seed(0)
    texts = {tokens.tokenizer.decode(bundle.pretrain[3]["text"], skip_special_tokens=True) for _ in range(40)}
    assert len(texts) > 1
    assert len({tuple(map(tuple, named_attributes(t).values())) for t in texts}) == 1
    assert bundle.stats["num_truncated_captions"] == 0 and bundle.stats["vocab_size"] == len(tokens.tokenizer)


def test_rendering_and_tokenizer_are_cached(tmp_path):
    first = procedural_image_text(train_size=12, test_size=6, image_size=16, cache_dir=str(tmp_path))
    again = procedural_image_text(train_size=12, test_size=6, image_size=16, cache_dir=str(tmp_path))
    assert not first.stats["tokenizer_cache_hit"] and again.stats["tokenizer_cache_hit"]
    assert first.stats["tokenizer_dir"] == again.stats["tokenizer_dir"]
    assert len(list(tmp_path.glob("*.npz"))) == 2  # train and held-out pictures, rendered once
    torch.testing.assert_close(first.pretrain.pictures.images, again.pretrain.pictures.images)
