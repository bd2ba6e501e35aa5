"""What every evaluator receives besides the encoder and the data: one typed context.

An evaluator is a registered function::

    fn(encoder, data: DataBundle, ctx: EvalContext, **options) -> dict[str, float]

``options`` are the recipe's ``eval.<name>`` section; everything the runner provides is in ``ctx``, so
no evaluator is handed values by guessing its parameter names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmssl.errors import ConfigError


@dataclass(frozen=True)
class EvalContext:
    """``device`` to evaluate on; ``seed`` of the run (probes and draws derive theirs from it); ``method``:
    the trained method (or the baseline's), for evaluators of a method's own outputs (a classifier head,
    a language-model head, cross-modal towers); ``figures_dir``: where PNG figures may go (None: none);
    ``split_over_ranks``: every process of a torchrun launch runs this evaluation together, so frozen
    features may be extracted a part per rank (evaluators that declare ``splits_over_ranks``);
    ``channels_last``: the recipe trains in NHWC memory format (``train.channels_last``); the
    frozen-feature evaluators (knn, linear, few_shot and the modalities' few-shot) extract features from
    NHWC inputs then, as the online monitor does. The others give their inputs as the data come."""

    device: torch.device = torch.device("cpu")
    seed: int = 0
    method: Any = None
    figures_dir: Path | None = None
    split_over_ranks: bool = False
    channels_last: bool = False

    @classmethod
    def on(cls, device: torch.device | str = "cpu", **kwargs: Any) -> EvalContext:
        return cls(device=torch.device(device), **kwargs)

    def require_method(self, evaluator: str) -> Any:
        if self.method is None:
            raise ConfigError(
                f"evaluator '{evaluator}' evaluates a method's own outputs; give EvalContext.method"
            )
        return self.method
