"""N-shot evaluation of any one tower of a method, on labelled sets other than the bundle's own.

The standard ``few_shot`` evaluator measures ``method.encoder`` on ``data.eval_train/eval_test``.
A cross-modal method has a second encoder (e.g. the audio tower of an image-audio model) whose
labelled sets live elsewhere: in a :class:`~mmssl.data.extras.LabelledSplits` extra of the bundle,
picked by name (``source``, e.g. ``"audio_eval"``), or in another registered dataset (e.g. spoken
digits, FSDD). This evaluator
picks the tower by item key and runs the very same few-shot protocol
(:func:`mmssl.eval.few_shot_evaluator`) on each of those sets::

    eval:
      modality_few_shot:
        tower: audio                                  # method.tower("audio")
        datasets: {fsdd: {name: fsdd, root: /data/fsdd}}   # optional extra labelled sets

Metrics: ``{tower}_fewshot_{n}_mean/_std`` on the ``source`` splits and
``{tower}_{label}_fewshot_{n}_mean/_std`` on each extra dataset ``label``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any

from torch import nn

from mmssl.data import DataBundle
from mmssl.data.extras import LabelledSplits, labelled_splits
from mmssl.errors import ConfigError
from mmssl.eval import few_shot_evaluator
from mmssl.eval.context import EvalContext
from mmssl.options import Components, component_sections
from mmssl.registry import DATASETS


def select_tower(encoder: nn.Module, method: nn.Module | None, tower: str) -> nn.Module:
    """``method.tower(tower)`` for a multi-tower method, else the method's single ``encoder``."""
    if method is not None and hasattr(method, "tower"):
        try:
            return method.tower(tower)
        except KeyError as err:
            raise ValueError(f"'eval.modality_few_shot.tower': {err.args[0]}") from None
    return encoder


def _labelled_bundle(data: DataBundle, source: str) -> DataBundle:
    """``data`` with its labelled splits replaced by its :class:`LabelledSplits` called ``source``."""
    split = labelled_splits(data.extras, source)
    if split is None:
        have = [e.name for e in data.extras if isinstance(e, LabelledSplits)]
        raise ConfigError(
            f"evaluator 'modality_few_shot' reads the LabelledSplits '{source}' (eval.modality_few_shot."
            f"source), which dataset '{data.name or '?'}' does not provide (it has: "
            f"{', '.join(repr(n) for n in have) or 'none'})"
        )
    return dataclasses.replace(
        data, eval_train=split.train, eval_test=split.test, num_classes=int(split.num_classes)
    )


def modality_few_shot(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    tower: str = "audio",
    source: str | None = None,
    datasets: Annotated[dict[str, dict[str, Any]] | None, Components("dataset")] = None,
    shots: Sequence[int] = (1, 5, 10),
    seeds: int = 5,
    epochs: int = 200,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    normalize: bool = True,
    num_workers: int = 0,
    cache: bool = True,
) -> dict[str, float]:
    """N-shot linear probe of the ``tower`` encoder, over ``seeds`` draws, on several labelled sets.

    ``source``: name of the bundle's ``LabelledSplits`` extra to evaluate on (default ``"{tower}_eval"``;
    an empty string skips it). ``datasets``: extra sets ``{label: {name: <registered dataset>,
    ...kwargs}}`` whose ``eval_train`` / ``eval_test`` are used; their items must be what the tower
    takes. The remaining options are those of ``few_shot``.
    """
    method = ctx.method
    model = select_tower(encoder, method, tower)
    bundles: list[tuple[str, DataBundle]] = []
    source = f"{tower}_eval" if source is None else source
    if source:
        bundles.append((f"{tower}_", _labelled_bundle(data, source)))
    extra = component_sections(datasets, DATASETS, "eval.modality_few_shot.datasets") if datasets else {}
    for label, spec in extra.items():
        bundles.append((f"{tower}_{label}_", DATASETS.build(spec["name"], **spec["kwargs"])))
    if not bundles:
        raise ValueError("evaluator 'modality_few_shot' has nothing to evaluate: set source or datasets")
    results: dict[str, float] = {}
    for prefix, bundle in bundles:
        metrics = few_shot_evaluator(
            model,
            bundle,
            ctx,
            shots=shots,
            seeds=seeds,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            normalize=normalize,
            num_workers=num_workers,
            cache=cache,
        )
        results.update({prefix + k: v for k, v in metrics.items()})
    return results
