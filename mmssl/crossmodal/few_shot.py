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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

from torch import nn

from mmssl.data import DataBundle
from mmssl.data.extras import LabelledSplits, labelled_splits
from mmssl.errors import ConfigError
from mmssl.eval.context import EvalContext
from mmssl.eval.evaluators import few_shot_metrics, few_shot_preflight
from mmssl.eval.options import FewShotOptions
from mmssl.option_markers import WHOLE_SECTION, Components
from mmssl.options import component_sections
from mmssl.registry import DATASETS

SHOTS_KEY = "eval.modality_few_shot.shots"
_BUILT: OrderedDict[str, DataBundle] = OrderedDict()  # extra datasets built by the preflight, reused
_BUILT_MAX = 2


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
    probe is the very same as ``few_shot``'s (:class:`~mmssl.eval.options.FewShotOptions`), shot counts
    a set cannot supply included (skipped with a warning naming ``eval.modality_few_shot.shots``). Every
    set is found or built first, so a missing source or a dataset that cannot be built (an empty split,
    a wrong root) is reported before any feature is extracted; the runner does the same before
    pretraining (:func:`modality_few_shot_preflight`).
    """
    model = select_tower(encoder, ctx.method, options.tower)
    probe = _probe(options)
    results: dict[str, float] = {}
    for prefix, bundle, where in _bundles(data, options):
        metrics = few_shot_metrics(model, bundle, ctx, probe, key=SHOTS_KEY, where=where)
        results.update({prefix + k: v for k, v in metrics.items()})
    return results


def modality_few_shot_preflight(
    data: DataBundle, options: TowerFewShotOptions = TowerFewShotOptions()
) -> None:
    """Before pretraining (``modality_few_shot.preflight``, called by the runner): find the ``source``
    splits, build the extra ``datasets`` (kept for the evaluation, so they are built once) and check that
    some shot count fits each set, so that none of these fails the run after its pretraining."""
    probe = _probe(options)
    for _, bundle, where in _bundles(data, options):
        few_shot_preflight(bundle, probe, key=SHOTS_KEY, where=where)


modality_few_shot.preflight = modality_few_shot_preflight  # type: ignore[attr-defined]


def _probe(options: TowerFewShotOptions) -> FewShotOptions:
    """The ``few_shot`` options within ``options``."""
    return FewShotOptions(**{f.name: getattr(options, f.name) for f in dataclasses.fields(FewShotOptions)})


def _bundles(data: DataBundle, options: TowerFewShotOptions) -> list[tuple[str, DataBundle, str]]:
    """``(metric prefix, bundle, description of its train split)`` of every set to evaluate on."""
    tower = options.tower
    bundles: list[tuple[str, DataBundle, str]] = []
    source = f"{tower}_eval" if options.source is None else options.source
    if source:
        where = f"the train split of '{source}' (eval.modality_few_shot.source)"
        bundles.append((f"{tower}_", _labelled_bundle(data, source), where))
    datasets = options.datasets
    extra = component_sections(datasets, DATASETS, "eval.modality_few_shot.datasets") if datasets else {}
    for label, spec in extra.items():
        where = f"eval_train of eval.modality_few_shot.datasets.{label} ('{spec['name']}')"
        bundles.append((f"{tower}_{label}_", _build(spec["name"], spec["kwargs"]), where))
    if not bundles:
        raise ValueError("evaluator 'modality_few_shot' has nothing to evaluate: set source or datasets")
    return bundles


def _build(name: str, kwargs: dict[str, Any]) -> DataBundle:
    """``DATASETS.build(name, **kwargs)``, reusing the last few bundles built with the same options."""
    key = repr((name, sorted(kwargs.items())))
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    bundle = DATASETS.build(name, **kwargs)
    _BUILT[key] = bundle
    while len(_BUILT) > _BUILT_MAX:
        _BUILT.popitem(last=False)
    return bundle
