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
from dataclasses import dataclass
from typing import Annotated, Any

from torch import nn

from mmssl.data import DataBundle
from mmssl.data.extras import LabelledSplits, labelled_splits
from mmssl.errors import ConfigError
from mmssl.eval import few_shot_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.options import FewShotOptions
from mmssl.option_markers import WHOLE_SECTION, Components
from mmssl.options import component_sections
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


@dataclass(frozen=True)
class TowerFewShotOptions(FewShotOptions):
    """``eval.modality_few_shot``: the ``few_shot`` options, plus which ``tower`` (item key) to probe, the
    ``source`` splits (name of a :class:`LabelledSplits` extra; default ``"{tower}_eval"``, an empty
    string skips it) and extra labelled ``datasets`` ``{label: {name: <registered dataset>, ...}}``."""

    tower: str = "audio"
    source: str | None = None
    datasets: Annotated[dict[str, dict[str, Any]] | None, Components("dataset")] = None


def modality_few_shot(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    options: Annotated[TowerFewShotOptions, WHOLE_SECTION] = TowerFewShotOptions(),
) -> dict[str, float]:
    """N-shot linear probe of the ``tower`` encoder, over ``seeds`` draws, on several labelled sets.

    The items of the ``source`` splits and of the extra ``datasets`` must be what the tower takes; the
    probe is the very same as ``few_shot``'s (:class:`~mmssl.eval.options.FewShotOptions`).
    """
    tower = options.tower
    model = select_tower(encoder, ctx.method, tower)
    bundles: list[tuple[str, DataBundle]] = []
    source = f"{tower}_eval" if options.source is None else options.source
    if source:
        bundles.append((f"{tower}_", _labelled_bundle(data, source)))
    datasets = options.datasets
    extra = component_sections(datasets, DATASETS, "eval.modality_few_shot.datasets") if datasets else {}
    for label, spec in extra.items():
        bundles.append((f"{tower}_{label}_", DATASETS.build(spec["name"], **spec["kwargs"])))
    if not bundles:
        raise ValueError("evaluator 'modality_few_shot' has nothing to evaluate: set source or datasets")
    probe = FewShotOptions(**{f.name: getattr(options, f.name) for f in dataclasses.fields(FewShotOptions)})
    results: dict[str, float] = {}
    for prefix, bundle in bundles:
        metrics = few_shot_evaluator(model, bundle, ctx, probe)
        results.update({prefix + k: v for k, v in metrics.items()})
    return results
