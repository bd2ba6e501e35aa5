"""The options of the modality-free evaluators, declared once (a recipe's ``eval.<name>`` keys).

Each evaluator takes its section as one dataclass (``WHOLE_SECTION`` in :mod:`mmssl.options`); the ones
that share a protocol share fields by inheritance, so ``batch_size`` or the probe's ``lr`` is written in
one place: :class:`FeatureOptions` (how frozen features are extracted) -> :class:`KNNOptions`,
:class:`ProbeOptions` (a linear probe on them) -> :class:`FewShotOptions` (the probe over N-shot draws).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmssl.option_markers import ScoresLabelledSplits


@dataclass(frozen=True)
class FeatureOptions(ScoresLabelledSplits):
    """Frozen-feature extraction: ``batch_size`` images per encoder call, data-loader ``num_workers``;
    ``cache``: share one extraction per (encoder state, dataset) with the other evaluators."""

    batch_size: int = 256
    num_workers: int = 0
    cache: bool = True


@dataclass(frozen=True)
class KNNOptions(FeatureOptions):
    """Weighted kNN (Wu et al. 2018): ``k`` nearest by cosine, votes ``exp(sim / temperature)``."""

    k: int = 200
    temperature: float = 0.07


@dataclass(frozen=True)
class ProbeOptions(FeatureOptions):
    """A linear probe on frozen, standardised (``normalize``) features: Adam for ``epochs`` at ``lr``
    with a cosine schedule and L2 ``weight_decay``; ``batch_size`` also batches the probe."""

    epochs: int = 100
    lr: float = 1e-2
    weight_decay: float = 1e-4
    normalize: bool = True


@dataclass(frozen=True)
class FewShotOptions(ProbeOptions):
    """The probe trained on ``n`` labelled samples per class for each ``n`` in ``shots``, over ``seeds``
    draws (run seed, run seed + 1, ...)."""

    shots: tuple[int, ...] = (1, 5, 10)
    seeds: int = 5
    epochs: int = 200

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"few_shot needs seeds >= 1, got {self.seeds}")


@dataclass(frozen=True)
class FinetuneOptions(ScoresLabelledSplits):
    """Fine-tuning a copy of the encoder with a linear head: AdamW for ``epochs`` (or at most
    ``max_steps``) at ``lr`` (the head at ``lr * head_lr_scale``), cosine schedule."""

    epochs: int = 5
    lr: float = 5e-4
    head_lr_scale: float = 10.0
    weight_decay: float = 0.05
    batch_size: int = 64
    max_steps: int | None = None
    num_workers: int = 0
