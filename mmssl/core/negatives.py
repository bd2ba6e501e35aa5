"""Where InfoNCE's positive keys and negatives come from: MoCo's three mechanisms (He et al. 2020, Fig. 2).

===============  ===============================================  ==========================================
source           positive key of a query                          negatives
===============  ===============================================  ==========================================
``queue``        momentum encoder's projection of the other view  queue of past keys (MoCo, Sec. 3.2)
``batch``        online projection of the other view (with grad)  the other keys of the batch ("end-to-end")
``memory_bank``  the sample's stored feature                      random stored features (Wu et al. 2018)
===============  ===============================================  ==========================================

Every source has the same interface, used by :class:`~mmssl.core.methods.moco.MoCo` in this order:
``key`` for each direction, ``loss`` right after it, and ``store`` once the loss has used the stored
negatives. :data:`NEGATIVE_SOURCES` maps the recipe's ``negatives`` option to the source class.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from mmssl.core.losses import info_nce
from mmssl.core.momentum import MemoryBank, MomentumQueue
from mmssl.core.two_view import TwoViewMethod
from mmssl.data.keys import INDEX


@dataclass(frozen=True)
class SourceSettings:
    """What a source may need: key size, InfoNCE temperature and its own store's size and rate."""

    dim: int
    temperature: float
    queue_size: int
    num_negatives: int
    memory_bank_momentum: float
    num_samples: int | None


class NegativeSource(nn.Module, metaclass=abc.ABCMeta):
    """Positive keys and negatives of InfoNCE for a two-view method (see the module docstring)."""

    #: the method's attribute holding the source: its buffers are saved as ``<checkpoint_name>.*``
    checkpoint_name: ClassVar[str]
    #: keys come from the method's momentum :class:`~mmssl.core.target.TargetNetwork`
    momentum_keys: ClassVar[bool] = False
    #: batch keys the source reads besides the views
    consumes: ClassVar[frozenset[str]] = frozenset()

    temperature: float

    @classmethod
    @abc.abstractmethod
    def create(cls, settings: SourceSettings) -> NegativeSource:
        """The source configured by ``settings``."""

    @abc.abstractmethod
    def key(
        self, method: TwoViewMethod, view: Tensor, index: Tensor | None, projection: Tensor | None = None
    ) -> Tensor:
        """Positive keys [B, dim] for the queries of the other view; ``projection`` is ``method``'s online
        projection of ``view`` when it has been computed already."""

    @abc.abstractmethod
    def loss(self, query: Tensor, key: Tensor) -> Tensor:
        """InfoNCE of ``query`` [B, dim] against ``key`` [B, dim] and this source's negatives."""

    def store(self, keys: Tensor, projections: tuple[Tensor, Tensor | None], index: Tensor | None) -> None:
        """After the loss: store ``keys`` (those of the second view) or the online ``projections`` of the
        first view (and of the second, when the loss was symmetric)."""


class QueueNegatives(MomentumQueue, NegativeSource):
    """MoCo: keys from the momentum encoder; negatives are the queue of the keys of past batches."""

    checkpoint_name = "queue"
    momentum_keys = True

    def __init__(self, dim: int, size: int, temperature: float) -> None:
        super().__init__(dim, size)
        self.temperature = temperature

    @classmethod
    def create(cls, settings: SourceSettings) -> QueueNegatives:
        return cls(settings.dim, settings.queue_size, settings.temperature)

    def key(
        self, method: TwoViewMethod, view: Tensor, index: Tensor | None, projection: Tensor | None = None
    ) -> Tensor:
        return method.teacher(view)

    def loss(self, query: Tensor, key: Tensor) -> Tensor:
        return info_nce(query, key, negatives=self.negatives, temperature=self.temperature)

    def store(self, keys: Tensor, projections: tuple[Tensor, Tensor | None], index: Tensor | None) -> None:
        self.enqueue(keys)


class BatchNegatives(NegativeSource):
    """MoCo's end-to-end variant: keys from the online network with gradient; the batch's other keys are
    the negatives, gathered from all processes with exact gradients."""

    checkpoint_name = "batch_negatives"

    def __init__(self, temperature: float, gather: bool = True) -> None:
        super().__init__()
        self.temperature, self.gather = temperature, gather

    @classmethod
    def create(cls, settings: SourceSettings) -> BatchNegatives:
        return cls(settings.temperature)

    def key(
        self, method: TwoViewMethod, view: Tensor, index: Tensor | None, projection: Tensor | None = None
    ) -> Tensor:
        return projection if projection is not None else method.online(view)[0]

    def loss(self, query: Tensor, key: Tensor) -> Tensor:
        return info_nce(query, key, temperature=self.temperature, gather=self.gather)


class MemoryBankNegatives(MemoryBank, NegativeSource):
    """Wu et al. (2018): the positive is the sample's stored feature, ``num_negatives`` random stored
    features are the negatives; the bank moves towards the online projections after each step."""

    checkpoint_name = "bank"
    consumes = frozenset({INDEX})

    def __init__(
        self, num_samples: int, dim: int, momentum: float, num_negatives: int, temperature: float
    ) -> None:
        super().__init__(num_samples, dim, momentum=momentum)
        self.num_negatives, self.temperature = num_negatives, temperature

    @classmethod
    def create(cls, settings: SourceSettings) -> MemoryBankNegatives:
        if not settings.num_samples:
            raise ValueError("negatives=memory_bank needs the dataset size (num_samples): pass the data")
        return cls(
            settings.num_samples,
            settings.dim,
            settings.memory_bank_momentum,
            settings.num_negatives,
            settings.temperature,
        )

    def key(
        self, method: TwoViewMethod, view: Tensor, index: Tensor | None, projection: Tensor | None = None
    ) -> Tensor:
        return self.features[index].detach()

    def loss(self, query: Tensor, key: Tensor) -> Tensor:
        negatives = self.sample_negatives(self.num_negatives)
        return info_nce(query, key, negatives=negatives, temperature=self.temperature)

    def store(self, keys: Tensor, projections: tuple[Tensor, Tensor | None], index: Tensor | None) -> None:
        z1, z2 = projections
        self.update(index, z1.detach() if z2 is None else 0.5 * (z1.detach() + z2.detach()))


#: the recipe's ``negatives`` option -> source
NEGATIVE_SOURCES: dict[str, type[NegativeSource]] = {
    "batch": BatchNegatives,
    "memory_bank": MemoryBankNegatives,
    "queue": QueueNegatives,
}
