"""MoCo v2 (He et al., CVPR 2020; Chen et al. 2020): InfoNCE between a query and its key, with MoCo's
three sources of keys and negatives.

For a query ``q`` (online projection of one view), its positive key ``k+`` and negatives ``k-``, eq. 1::

    L_q = -log( exp(q.k+ / t) / (exp(q.k+ / t) + sum_{k-} exp(q.k- / t)) )

``negatives`` picks the source (:mod:`mmssl.core.negatives`): ``queue`` (keys from a momentum encoder,
negatives from a queue of past keys; the key encoder's BatchNorm is shuffled across
``shuffle_bn_groups``), ``batch`` (end-to-end: keys from the query encoder with gradient, in-batch
negatives) or ``memory_bank`` (Wu et al. 2018: stored per-sample features; reads each sample's index).
``symmetric`` also swaps the views and averages the two losses (off in MoCo).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmssl.core.negatives import NEGATIVE_SOURCES, NegativeSource, SourceSettings
from mmssl.core.target import TargetNetwork
from mmssl.core.two_view import TwoViewMethod, view_pair
from mmssl.data import DataBundle
from mmssl.data.keys import INDEX

log = logging.getLogger(__name__)

#: queue length without a dataset to size it by (direct use), and the bounds of the rule
DEFAULT_QUEUE_SIZE, MIN_QUEUE_SIZE, MAX_QUEUE_SIZE = 4096, 256, 65536


def queue_size_for(num_samples: int | None) -> int:
    """The queue length for a pretraining set of ``num_samples``: the largest power of two not above a
    tenth of it, within [256, 65536].

    A key enqueued at step t is a negative until it is pushed out; if the queue holds a large share of the
    set, a sample's own key from an earlier epoch is among its negatives (a stale positive). MoCo's
    65,536 keys are 5% of ImageNet's 1.28M images (He et al. 2020, Sec. 4.1); a tenth keeps small sets in
    the same regime: 1.28M -> 65,536, CIFAR-10's 45,000 training images -> 4,096, 5,000 -> 256.
    """
    if not num_samples:
        return DEFAULT_QUEUE_SIZE
    size = 2 ** int(math.floor(math.log2(max(num_samples // 10, 1))))
    return max(MIN_QUEUE_SIZE, min(MAX_QUEUE_SIZE, size))


class MoCo(TwoViewMethod):
    """MoCo: 2-layer MLP projector, InfoNCE at ``temperature`` against the chosen negative source.

    ``momentum`` is the key encoder's constant EMA coefficient (queue only); ``queue_size`` the queue's
    length, by default :func:`queue_size_for` the pretraining set; ``num_negatives`` and
    ``memory_bank_momentum`` the memory bank's negatives per step and update rate; the bank has one entry
    per sample of ``data.pretrain``.
    """

    @classmethod
    def consumed_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        source = NEGATIVE_SOURCES.get(options.get("negatives", "queue"))
        return cls.consumes | (source.consumes if source is not None else frozenset())

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        negatives: str = "queue",
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int | None = None,
        num_negatives: int = 4096,
        memory_bank_momentum: float = 0.5,
        projector_hidden: int = 512,
        projector_dim: int = 128,
        symmetric: bool = False,
        shuffle_bn_groups: int = 2,
    ) -> None:
        if negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"method.negatives must be one of {tuple(NEGATIVE_SOURCES)}, got '{negatives}'")
        super().__init__(encoder, projector_hidden=projector_hidden, projector_dim=projector_dim)
        source_class = NEGATIVE_SOURCES[negatives]
        if source_class.momentum_keys:
            self.teacher = TargetNetwork(
                encoder,
                self.projector,
                momentum_base=momentum,
                momentum_final=momentum,
                shuffle_bn_groups=shuffle_bn_groups,
            )
        num_samples = len(data.pretrain) if data is not None else None
        if queue_size is None:
            queue_size = queue_size_for(num_samples)
        elif source_class.momentum_keys and num_samples and queue_size > num_samples // 10:
            log.warning(
                "method.queue_size=%d is more than a tenth of the %d pretraining samples: the queue will "
                "hold stale keys of the very samples it is asked to tell apart (queue_size_for gives %d)",
                queue_size,
                num_samples,
                queue_size_for(num_samples),
            )
        settings = SourceSettings(
            dim=projector_dim,
            temperature=temperature,
            queue_size=queue_size,
            num_negatives=num_negatives,
            memory_bank_momentum=memory_bank_momentum,
            num_samples=num_samples,
        )
        source = source_class.create(settings)
        # Registered under the source's own name: checkpoints hold queue.* or bank.*.
        self.add_module(source.checkpoint_name, source)
        self.source_name = source.checkpoint_name
        self.symmetric = symmetric

    @property
    def negatives(self) -> NegativeSource:
        """The source of keys and negatives."""
        return self.get_submodule(self.source_name)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x1, x2 = view_pair(batch, type(self).__name__)
        index = batch.get(INDEX)
        source = self.negatives
        q1, _ = self.online(x1)
        k2 = source.key(self, x2, index)
        loss = source.loss(q1, k2)
        q2 = None
        if self.symmetric:
            q2, _ = self.online(x2)
            loss = 0.5 * (loss + source.loss(q2, source.key(self, x1, index, projection=q1)))
        # The stored negatives change only after the loss has used them.
        source.store(k2, (q1, q2), index)
        return {"loss": loss}
