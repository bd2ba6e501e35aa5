"""An online kNN monitor: is the encoder learning, while it trains? (as solo-learn's and lightly's)

Every ``every`` optimiser steps the trainer calls the monitor with the method; it encodes a fixed subset
of the labelled training split (the kNN bank) and of the held-out split (the queries) with the current
encoder in eval mode and returns ``{"monitor_knn_top1": accuracy}``, which the trainer logs to
``metrics.jsonl`` and TensorBoard and the loss-curve figure draws beside the loss.

The subsets are drawn once (seeded), so successive values are comparable. The monitor leaves training
untouched: it runs without gradients, restores every submodule's train/eval mode, and restores torch's
CPU random state afterwards (a data loader draws a seed from it), so a run gives bit-identical weights
with or without the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mmssl.data import DataBundle
from mmssl.eval.features import extract_features
from mmssl.eval.knn import knn_accuracy
from mmssl.option_markers import ScoresLabelledSplits


@dataclass(frozen=True)
class MonitorOptions(ScoresLabelledSplits):
    """``eval.monitor`` in a recipe: kNN every ``every`` steps (0: off) on ``bank_size`` labelled training
    samples and ``query_size`` held-out samples; ``k`` neighbours, vote ``temperature`` (as ``knn``)."""

    every: int = 0
    bank_size: int = 2000
    query_size: int = 1000
    k: int = 20
    temperature: float = 0.07
    batch_size: int = 256


def fixed_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """The first ``size`` items of a seeded permutation (the whole set when it is not larger)."""
    n = len(dataset)  # type: ignore[arg-type]
    if size >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
    return Subset(dataset, sorted(order.tolist()))


class KNNMonitor:
    """Callable ``monitor(method) -> {"monitor_knn_top1": float}`` on fixed subsets of a bundle's splits."""

    def __init__(
        self,
        data: DataBundle,
        options: MonitorOptions,
        device: torch.device,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if data.eval_train is None or data.eval_test is None or data.num_classes < 1:
            raise ValueError(
                f"eval.monitor needs a labelled dataset (eval_train, eval_test, num_classes); "
                f"dataset '{data.name or '?'}' has none"
            )
        self.options = options
        self.every = options.every
        self.device = device
        self.channels_last = channels_last  # NHWC inputs, as the trainer gives them (train.channels_last)
        self.num_classes = data.num_classes
        self.bank = fixed_subset(data.eval_train, options.bank_size, seed)
        self.queries = fixed_subset(data.eval_test, options.query_size, seed + 1)

    def __call__(self, method: nn.Module) -> dict[str, float]:
        encoder = method.encoder
        opts = self.options
        cpu_rng = torch.get_rng_state()
        try:
            with torch.no_grad():
                x_bank, y_bank = extract_features(
                    encoder,
                    self.bank,
                    batch_size=opts.batch_size,
                    device=self.device,
                    channels_last=self.channels_last,
                )
                x_query, y_query = extract_features(
                    encoder,
                    self.queries,
                    batch_size=opts.batch_size,
                    device=self.device,
                    channels_last=self.channels_last,
                )
        finally:
            torch.set_rng_state(cpu_rng)
        accuracy = knn_accuracy(
            x_bank, y_bank, x_query, y_query, self.num_classes, k=opts.k, temperature=opts.temperature
        )
        return {"monitor_knn_top1": accuracy}
