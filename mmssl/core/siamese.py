"""One generic two-view (Siamese) method; SimCLR, MoCo v2 and BYOL are configurations of it.

Two augmented views ``x1, x2`` of each sample pass through an encoder ``f`` and a projector ``g``.
What differs between the classic methods is only where the *keys* come from and how the two sides
are compared:

============  ==================  ==========================  =================================
method        key network         negatives                   objective
============  ==================  ==========================  =================================
SimCLR        same network        other views in the batch    NT-Xent (Chen et al. 2020, eq. 1)
MoCo (e2e)    same network        other keys in the batch     InfoNCE (He et al. 2020, eq. 1)
MoCo (bank)   stored features     random memory-bank entries  InfoNCE with a memory bank (Wu et al.)
MoCo (queue)  momentum encoder    queue of past keys          InfoNCE
BYOL          momentum encoder    none                        2 - 2 cos(q(z1), z'2) (Grill et al. eq. 2)
============  ==================  ==========================  =================================

The representation used downstream is the encoder's ``global`` output, before the projector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmssl.core.heads import PredictionHead, ProjectionHead
from mmssl.core.losses import byol_regression, info_nce, nt_xent
from mmssl.core.method import Method
from mmssl.core.momentum import EMATeacher, MemoryBank, MomentumQueue, cosine_momentum
from mmssl.data import DataBundle
from mmssl.data.keys import INDEX, VIEWS

NEGATIVE_SOURCES = ("batch", "memory_bank", "queue")
OBJECTIVES = ("nt_xent", "info_nce", "regression")


class SiameseMethod(Method):
    """Generic two-view self-supervised method.

    Args:
        encoder: backbone returning ``{"global": [B, D]}``; its ``out_dim`` sizes the projector.
        objective: ``nt_xent`` (SimCLR), ``info_nce`` (MoCo) or ``regression`` (BYOL).
        negatives: for ``info_nce``: ``batch`` (end-to-end), ``memory_bank`` or ``queue``.
        momentum_encoder: keys from an EMA copy of encoder + projector (MoCo queue, BYOL).
        momentum_base / momentum_final: EMA coefficient, moved from base to final along a cosine
            schedule over training (BYOL); equal values give MoCo's constant momentum.
        predictor: add a prediction MLP on the online side (BYOL).
        symmetric: also swap the views and average the two losses.
        temperature: softmax temperature of NT-Xent / InfoNCE.
        queue_size: length of the momentum queue. memory_bank_momentum: bank update rate.
        num_negatives: memory-bank negatives drawn per step.
        shuffle_bn_groups: key-encoder BatchNorm sees the batch shuffled into this many groups so a
            query and its key never share BN statistics (MoCo's shuffling BN, done within a process).
        gather: gather keys across processes for in-batch negatives (exact gradients).
        num_samples: dataset size (memory bank only; given by the runner).
    """

    consumes = frozenset({VIEWS})

    @classmethod
    def consumed_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        # The memory bank stores one feature per sample: it reads each sample's index.
        extra = {INDEX} if options.get("negatives") == "memory_bank" else set()
        return cls.consumes | extra

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        objective: str = "nt_xent",
        negatives: str = "batch",
        momentum_encoder: bool = False,
        momentum_base: float = 0.99,
        momentum_final: float = 0.99,
        predictor: bool = False,
        symmetric: bool = True,
        temperature: float = 0.5,
        projector_hidden: int = 512,
        projector_dim: int = 128,
        projector_layers: int = 2,
        predictor_hidden: int = 512,
        queue_size: int = 4096,
        memory_bank_momentum: float = 0.5,
        num_negatives: int = 4096,
        shuffle_bn_groups: int = 1,
        gather: bool = True,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        if num_samples is None and data is not None:
            num_samples = len(data.pretrain)
        if objective not in OBJECTIVES:
            raise ValueError(f"method.objective must be one of {OBJECTIVES}, got '{objective}'")
        if negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"method.negatives must be one of {NEGATIVE_SOURCES}, got '{negatives}'")
        if objective == "regression" and not momentum_encoder:
            raise ValueError("method.objective=regression needs method.momentum_encoder=true (BYOL target)")
        if negatives == "queue" and not momentum_encoder:
            raise ValueError("method.negatives=queue needs method.momentum_encoder=true (MoCo keys)")
        self.encoder = encoder
        self.projector = ProjectionHead(
            encoder.out_dim, projector_hidden, projector_dim, num_layers=projector_layers
        )
        self.predictor = PredictionHead(projector_dim, predictor_hidden, projector_dim) if predictor else None
        self.objective, self.negatives = objective, negatives
        self.symmetric, self.temperature, self.gather = symmetric, temperature, gather
        self.momentum_base, self.momentum_final = momentum_base, momentum_final
        self.shuffle_bn_groups = shuffle_bn_groups
        self.num_negatives = num_negatives
        # The teacher is encoder + projector (never the predictor: BYOL sec. 3.1).
        self.teacher = (
            EMATeacher(nn.ModuleDict({"encoder": encoder, "projector": self.projector}))
            if momentum_encoder
            else None
        )
        self.queue = (
            MomentumQueue(projector_dim, queue_size)
            if objective == "info_nce" and negatives == "queue"
            else None
        )
        self.bank = None
        if objective == "info_nce" and negatives == "memory_bank":
            if not num_samples:
                raise ValueError("the memory bank needs the dataset size (num_samples)")
            self.bank = MemoryBank(num_samples, projector_dim, momentum=memory_bank_momentum)

    # ------------------------------------------------------------------ pieces
    def online(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(projection z, prediction p or z) of the online network."""
        z = self.projector(self.encoder(x)["global"])
        return z, (self.predictor(z) if self.predictor is not None else z)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Projections from the momentum network, with BatchNorm shuffled across groups."""
        teacher = self.teacher.module
        groups = self.shuffle_bn_groups if x.shape[0] >= 2 * self.shuffle_bn_groups else 1
        if groups > 1:
            perm = torch.randperm(x.shape[0], device=x.device)
            chunks = [teacher["projector"](teacher["encoder"](c)["global"]) for c in x[perm].chunk(groups)]
            out = torch.empty_like(torch.cat(chunks))
            out[perm] = torch.cat(chunks)
            return out
        return teacher["projector"](teacher["encoder"](x)["global"])

    def _contrast(self, q: torch.Tensor, k: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if self.objective == "regression":
            return byol_regression(q, k)
        if self.negatives == "queue":
            return info_nce(
                q, k, negatives=self.queue.negatives.clone().detach(), temperature=self.temperature
            )
        if self.negatives == "memory_bank":
            pos = self.bank.features[index].detach()
            negs = self.bank.sample_negatives(self.num_negatives)
            return info_nce(q, pos, negatives=negs, temperature=self.temperature)
        return info_nce(q, k, temperature=self.temperature, gather=self.gather)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x1, x2 = batch["views"]
        index = batch.get("index")
        if self.objective == "nt_xent":
            z1, _ = self.online(x1)
            z2, _ = self.online(x2)
            return {"loss": nt_xent(z1, z2, temperature=self.temperature, gather=self.gather)}

        z1, p1 = self.online(x1)
        uses_keys = self.teacher is not None
        if uses_keys:
            k2 = self.keys(x2)
        elif self.negatives == "batch":
            k2, _ = self.online(x2)  # MoCo end-to-end: keys from the same network, with gradient
        else:
            k2 = None
        loss = self._contrast(p1, k2, index)
        if self.symmetric:
            z2, p2 = self.online(x2)
            k1 = self.keys(x1) if uses_keys else (z1 if self.negatives == "batch" else None)
            loss = 0.5 * (loss + self._contrast(p2, k1, index))
        else:
            z2 = None
        # Update stored negatives after the loss used the old ones.
        if self.queue is not None:
            self.queue.enqueue(k2)
        if self.bank is not None:
            feats = z1.detach() if z2 is None else 0.5 * (z1.detach() + z2.detach())
            self.bank.update(index, feats)
        return {"loss": loss}

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        if self.teacher is not None:
            m = cosine_momentum(step, total_steps, base=self.momentum_base, final=self.momentum_final)
            self.teacher.update(nn.ModuleDict({"encoder": self.encoder, "projector": self.projector}), m)




def simclr(
    encoder: nn.Module,
    data: DataBundle | None = None,
    temperature: float = 0.5,
    projector_hidden: int = 512,
    projector_dim: int = 128,
    projector_layers: int = 2,
    gather: bool = True,
) -> SiameseMethod:
    """SimCLR (Chen et al., ICML 2020): NT-Xent between two views, negatives from the batch."""
    return SiameseMethod(
        encoder,
        objective="nt_xent",
        temperature=temperature,
        projector_hidden=projector_hidden,
        projector_dim=projector_dim,
        projector_layers=projector_layers,
        gather=gather,
    )


def moco(
    encoder: nn.Module,
    data: DataBundle | None = None,
    negatives: str = "queue",
    temperature: float = 0.2,
    momentum: float = 0.99,
    queue_size: int = 4096,
    num_negatives: int = 4096,
    memory_bank_momentum: float = 0.5,
    projector_hidden: int = 512,
    projector_dim: int = 128,
    symmetric: bool = False,
    shuffle_bn_groups: int = 2,
) -> SiameseMethod:
    """MoCo v2 (He et al. 2020; Chen et al. 2020) with MoCo's three negative sources.

    ``negatives=queue``: momentum key encoder + queue (MoCo). ``batch``: end-to-end, keys from the
    query encoder with gradients. ``memory_bank``: keys are stored features (Wu et al. 2018).
    """
    return SiameseMethod(
        encoder,
        objective="info_nce",
        negatives=negatives,
        momentum_encoder=negatives == "queue",
        momentum_base=momentum,
        momentum_final=momentum,
        temperature=temperature,
        queue_size=queue_size,
        num_negatives=num_negatives,
        memory_bank_momentum=memory_bank_momentum,
        projector_hidden=projector_hidden,
        projector_dim=projector_dim,
        symmetric=symmetric,
        shuffle_bn_groups=shuffle_bn_groups,
        num_samples=len(data.pretrain) if data is not None else None,
    )


def byol(
    encoder: nn.Module,
    data: DataBundle | None = None,
    momentum_base: float = 0.996,
    projector_hidden: int = 1024,
    projector_dim: int = 256,
    predictor_hidden: int = 1024,
) -> SiameseMethod:
    """BYOL (Grill et al., NeurIPS 2020): predict the EMA target's projection of the other view."""
    return SiameseMethod(
        encoder,
        objective="regression",
        momentum_encoder=True,
        momentum_base=momentum_base,
        momentum_final=1.0,
        predictor=True,
        projector_hidden=projector_hidden,
        projector_dim=projector_dim,
        predictor_hidden=predictor_hidden,
        symmetric=True,
    )
