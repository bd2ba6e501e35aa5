"""Zero-shot classification by prompts against a brute-force cosine argmax over prompt-averaged class
embeddings, on a method whose towers are fixed functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.config import ConfigError
from mmssl.crossmodal.image_text.extras import ZeroShotTask
from mmssl.crossmodal.image_text.tokens import CaptionTokenizer, caption_tokenizer
from mmssl.crossmodal.zero_shot import (
    ZeroShotOptions,
    class_embeddings,
    prompt_texts,
    zero_shot_evaluator,
)
from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.options import build_dataclass
from tests.crossmodal._helpers import ListDataset

CLASSES = ("circle", "square", "triangle", "star")
PROMPTS = ("a photo of a {}", "a {} shape", "the {}")
DIM = 12


class BagOfWordsMethod(nn.Module):
    """Image tower: the identity on vectors. Text tower: the sum of fixed random vectors of its real
    (non-pad) tokens, so a prompt's embedding depends on every word of it."""

    tower_keys = ("image", "text")

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("table", torch.randn(vocab_size, DIM, generator=g))
        self.register_buffer("pad", torch.zeros(()))

    def embed(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if key == "image":
            return x
        return (self.table[x] * (x != 0).unsqueeze(-1)).sum(dim=1)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> CaptionTokenizer:
    texts = prompt_texts(PROMPTS, CLASSES) * 2
    tok, _ = caption_tokenizer(
        texts, max_length=12, vocab_size=200, min_frequency=1, cache_dir=tmp_path_factory.mktemp("tok")
    )
    return tok


def brute_force_predictions(method, tokens, images: torch.Tensor) -> list[int]:
    """For each image and class: the mean over prompts of the unit embedding of that one filled-in prompt,
    made unit again; cosine with the image computed from dot products and norms; the best class."""
    class_vectors = []
    for name in CLASSES:
        units = []
        for prompt in PROMPTS:
            text = prompt.replace("{}", name)
            z = method.embed("text", tokens.encode([text]))[0]
            units.append(z / z.norm())
        mean = sum(units) / len(units)
        class_vectors.append(mean / mean.norm())
    predictions = []
    for x in images:
        scores = [float(x @ c) / float(x.norm() * c.norm()) for c in class_vectors]
        predictions.append(max(range(len(CLASSES)), key=lambda c: scores[c]))
    return predictions


def _task_bundle(method, tokens, n: int = 40) -> tuple[DataBundle, torch.Tensor, torch.Tensor]:
    """Images near their class's prompt-averaged embedding plus noise strong enough for some errors."""
    g = torch.Generator().manual_seed(1)
    texts = prompt_texts(PROMPTS, CLASSES)
    centres = class_embeddings(method.embed("text", tokens.encode(texts)), len(CLASSES))
    labels = torch.arange(n) % len(CLASSES)
    images = centres[labels] + 0.35 * torch.randn(n, DIM, generator=g)
    task = ZeroShotTask(
        "shape", ListDataset([{"input": x, "label": int(y)} for x, y in zip(images, labels)]), CLASSES
    )
    bundle = DataBundle(pretrain=ListDataset([]), extras=(tokens, task), name="tiny")
    return bundle, images, labels


def test_prompt_texts_are_class_major():
    assert prompt_texts(("a {}", "the {}"), ("x", "y")) == ["a x", "the x", "a y", "the y"]


def test_evaluator_equals_brute_force_cosine_argmax(tokens):
    method = BagOfWordsMethod(len(tokens.tokenizer))
    bundle, images, labels = _task_bundle(method, tokens)
    expected = brute_force_predictions(method, tokens, images)
    accuracy = sum(p == int(y) for p, y in zip(expected, labels)) / len(labels)
    assert 0.3 < accuracy < 1.0  # informative: neither chance nor perfect
    got = zero_shot_evaluator(None, bundle, EvalContext(method=method), ZeroShotOptions(prompts=PROMPTS))
    assert got["zeroshot_shape_top1"] == pytest.approx(accuracy)
    assert got["zeroshot_shape_chance"] == pytest.approx(1 / len(CLASSES))
    # The prompt average matters here: the first prompt alone classifies differently.
    single = zero_shot_evaluator(
        None, bundle, EvalContext(method=method), ZeroShotOptions(prompts=PROMPTS[:1])
    )
    assert single["zeroshot_shape_top1"] != pytest.approx(accuracy)


def test_class_embeddings_average_unit_prompt_vectors():
    z = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 5.0], [0.0, 2.0]])  # class 0: two prompts, class 1: two
    got = class_embeddings(z, 2)
    torch.testing.assert_close(got, torch.tensor([[1.0, 1.0], [0.0, 2.0]]) / torch.tensor([[2**0.5], [2.0]]))
    assert torch.allclose(got.norm(dim=1), torch.ones(2))
    assert not torch.allclose(
        got[0], F.normalize(z[:2].mean(0), dim=0)
    )  # raw mean would favour class 0's 3.0


def test_class_names_shifted_by_one_turn_every_hit_into_a_miss(tokens):
    method = BagOfWordsMethod(len(tokens.tokenizer))
    bundle, _, _ = _task_bundle(method, tokens)
    (task,) = [e for e in bundle.extras if isinstance(e, ZeroShotTask)]
    shifted = ZeroShotTask("shifted", task.dataset, CLASSES[1:] + CLASSES[:1])
    bundle = DataBundle(pretrain=ListDataset([]), extras=(tokens, task, shifted), name="tiny")
    got = zero_shot_evaluator(
        None, bundle, EvalContext(method=method), ZeroShotOptions(prompts=PROMPTS, tasks=("shape", "shifted"))
    )
    # Shifting the names by one class moves every correct prediction to a wrong label.
    assert got["zeroshot_shifted_top1"] <= 1 - got["zeroshot_shape_top1"] + 1e-9


def test_options_and_missing_pieces_are_named(tokens):
    with pytest.raises(ConfigError, match="exactly one"):
        build_dataclass(ZeroShotOptions, {"prompts": ["a photo"]}, "eval.zero_shot")
    method = BagOfWordsMethod(len(tokens.tokenizer))
    bundle, _, _ = _task_bundle(method, tokens)
    with pytest.raises(ConfigError, match="no task 'colour'.*it has: shape"):
        zero_shot_evaluator(None, bundle, EvalContext(method=method), ZeroShotOptions(tasks=("colour",)))
    with pytest.raises(ConfigError, match="ZeroShotTask"):
        zero_shot_evaluator(
            None, DataBundle(pretrain=ListDataset([]), extras=(tokens,)), EvalContext(method=method)
        )
    with pytest.raises(ConfigError, match="towers 'image' and 'text'"):
        zero_shot_evaluator(None, bundle, EvalContext(method=nn.Linear(2, 2)))
