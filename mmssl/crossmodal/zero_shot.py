"""Zero-shot classification by prompts (CLIP, Radford et al. 2021, Sec. 3.1.2 and 3.1.4).

Each class name is written into every prompt (``"a photo of a {}"`` -> ``"a photo of a triangle"``), the
prompts go through the text tower and its head, and the class embedding is the mean of the L2-normalised
prompt embeddings, normalised again (CLIP's prompt ensembling in embedding space)::

    t_c = normalize( 1/P sum_p normalize(g_t(f_t(prompt_p(c)))) )
    y_hat(x) = argmax_c  normalize(g_i(f_i(x))) . t_c            (cosine similarity)

No image label is used to build the classifier; the labels only score it (top-1 accuracy, with chance
``1 / C``). The labelled images come from the bundle's
:class:`~mmssl.crossmodal.image_text.extras.ZeroShotTask` extras (the procedural image–text set has one
per attribute: ``shape``, ``fill``, ``colour``; real pairs with ``data.eval`` one called ``classes``), and
the prompts are encoded with its :class:`~mmssl.crossmodal.image_text.tokens.CaptionTokenizer`::

    eval:
      zero_shot: {prompts: ["a photo of a {}", "a {}"], tasks: [shape, colour]}

Metrics: ``zeroshot_<task>_top1`` and ``zeroshot_<task>_chance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.crossmodal.image_text.extras import ZeroShotTask, zero_shot_tasks
from mmssl.crossmodal.image_text.tokens import CaptionTokenizer
from mmssl.crossmodal.retrieval import embed_labelled
from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.eval.context import EvalContext
from mmssl.option_markers import WHOLE_SECTION


@dataclass(frozen=True)
class ZeroShotOptions:
    """``eval.zero_shot``: ``prompts``, each with one ``{}`` for the class name (averaged per class);
    ``tasks``: which :class:`ZeroShotTask` s of the bundle to score (None: all); ``image_key`` /
    ``text_key``: the method's towers for the pictures and for the prompts; ``batch_size`` /
    ``num_workers``: feature extraction."""

    prompts: tuple[str, ...] = ("a photo of a {}",)
    tasks: tuple[str, ...] | None = None
    image_key: str = "image"
    text_key: str = "text"
    batch_size: int = 256
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("zero_shot needs at least one prompt")
        for prompt in self.prompts:
            if prompt.count("{}") != 1:
                raise ValueError(
                    f"each zero_shot prompt needs exactly one '{{}}' for the class name, got {prompt!r}"
                )


def prompt_texts(prompts: Sequence[str], class_names: Sequence[str]) -> list[str]:
    """Every prompt filled with every class name, class-major: ``[c0p0, c0p1, ..., c1p0, ...]``."""
    return [p.replace("{}", name) for name in class_names for p in prompts]


def class_embeddings(prompt_embeddings: Tensor, num_classes: int) -> Tensor:
    """``[C, D]`` unit class vectors from class-major prompt embeddings ``[C * P, D]`` (each normalised,
    averaged over the ``P`` prompts of a class, normalised again)."""
    per_class = F.normalize(prompt_embeddings, dim=-1).view(num_classes, -1, prompt_embeddings.shape[-1])
    return F.normalize(per_class.mean(dim=1), dim=-1)


def zero_shot_predict(image_embeddings: Tensor, class_vectors: Tensor) -> Tensor:
    """``[N]`` class of highest cosine similarity for each image embedding ``[N, D]``."""
    return (F.normalize(image_embeddings, dim=-1) @ class_vectors.T).argmax(dim=1)


@torch.no_grad()
def embed_texts(
    method: nn.Module,
    tokens: CaptionTokenizer,
    texts: Sequence[str],
    key: str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> Tensor:
    """Shared-space embeddings ``[N, D]`` (not normalised) of ``texts`` through the tower reading ``key``."""
    ids = tokens.encode(texts)
    rows = [{"input": row, "label": 0} for row in ids]
    feats, _ = embed_labelled(method, rows, key, device=device, batch_size=batch_size)  # type: ignore[arg-type]
    return feats


def _tasks(data: DataBundle, names: Sequence[str] | None) -> list[ZeroShotTask]:
    available = zero_shot_tasks(data.extras)
    if not available:
        raise ConfigError(
            f"evaluator 'zero_shot' needs ZeroShotTask extras (labelled images with class names), which "
            f"dataset '{data.name or '?'}' does not provide (procedural_image_text does; image_text_pairs "
            "with data.eval)"
        )
    if names is None:
        return available
    by_name = {t.name: t for t in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            f"'eval.zero_shot.tasks': no task {', '.join(map(repr, unknown))} in dataset "
            f"'{data.name or '?'}' (it has: {', '.join(by_name)})"
        )
    return [by_name[n] for n in names]


def zero_shot_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[ZeroShotOptions, WHOLE_SECTION] = ZeroShotOptions(),
) -> dict[str, float]:
    """Top-1 zero-shot accuracy of a cross-modal method (image and text towers) on each task (see the
    module docstring). ``encoder`` is unused: the method's towers and heads are evaluated."""
    method = ctx.require_method("zero_shot")
    keys = tuple(getattr(method, "tower_keys", ()))
    if not hasattr(method, "embed") or options.image_key not in keys or options.text_key not in keys:
        raise ConfigError(
            f"evaluator 'zero_shot' needs a cross-modal method with towers '{options.image_key}' and "
            f"'{options.text_key}' (eval.zero_shot.image_key / text_key), got {type(method).__name__} "
            f"with towers {', '.join(keys) or 'none'}"
        )
    tokens = data.extra(CaptionTokenizer, needed_by="evaluator 'zero_shot'")
    results: dict[str, float] = {}
    for task in _tasks(data, options.tasks):
        texts = prompt_texts(options.prompts, task.class_names)
        prompts = embed_texts(
            method, tokens, texts, options.text_key, device=ctx.device, batch_size=options.batch_size
        )
        classes = class_embeddings(prompts, len(task.class_names))
        images, labels = embed_labelled(
            method,
            task.dataset,
            options.image_key,
            device=ctx.device,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
        )
        predicted = zero_shot_predict(images, classes)
        results[f"zeroshot_{task.name}_top1"] = (predicted == labels).double().mean().item()
        results[f"zeroshot_{task.name}_chance"] = 1.0 / len(task.class_names)
    return results
