"""End-to-end fine-tuning: a copy of the encoder plus a linear head on ``"global"``, trained jointly.

AdamW with a per-step cosine learning rate ``lr_t = lr * (1 + cos(pi * t / T)) / 2``; the head
learns ``head_lr_scale`` times faster than the pretrained encoder so that a random head does not
wreck the features in the first steps. The caller's encoder is never modified (it is deep-copied).
Defaults are small enough for a CPU run on a toy dataset.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmssl.data.device import move_to
from mmssl.eval.features import autocast_for, global_features


class EncoderClassifier(nn.Module):
    """``encoder`` followed by ``Linear(encoder.out_dim, num_classes)`` on its ``"global"`` output."""

    def __init__(
        self, encoder: nn.Module, num_classes: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not isinstance(getattr(encoder, "out_dim", None), int):
            raise TypeError("the encoder must expose an integer attribute 'out_dim'")
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)
        # Small initial logits, as in MAE / DeiT fine-tuning.
        nn.init.trunc_normal_(self.head.weight, std=0.01, generator=generator)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(global_features(self.encoder(x)))


@torch.no_grad()
def classifier_accuracy(
    model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device, num_workers: int = 0
) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` (inputs -> logits) on a labelled dataset."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            with autocast_for(device):
                logits = model(move_to(batch["input"], device))
            labels = torch.as_tensor(batch["label"]).to(device).long()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("accuracy needs at least one test sample")
    return correct / total


def finetune_classifier(
    encoder: nn.Module,
    train_dataset: Dataset,
    test_dataset: Dataset,
    num_classes: int,
    *,
    epochs: int = 5,
    lr: float = 5e-4,
    head_lr_scale: float = 10.0,
    weight_decay: float = 0.05,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    seed: int = 0,
    max_steps: int | None = None,
    num_workers: int = 0,
) -> float:
    """Fine-tune a copy of ``encoder`` with a new linear head; return the test top-1 accuracy.

    Trains for ``epochs`` passes over ``train_dataset`` (or stops after ``max_steps`` optimiser steps,
    whichever comes first; the cosine schedule spans the shorter of the two). ``seed`` fixes the
    head initialisation and the batch order (the global RNG, e.g. for dropout, is left alone).
    bf16 autocast on CUDA.
    """
    device = torch.device(device)
    head_gen = torch.Generator().manual_seed(seed)
    model = EncoderClassifier(copy.deepcopy(encoder), num_classes, generator=head_gen).to(device)
    model.train()
    loader = DataLoader(
        train_dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train_dataset) > batch_size,  # avoid a size-1 batch hitting BatchNorm
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
    )
    total = epochs * len(loader)
    if max_steps is not None:
        total = min(total, max_steps)
    if total < 1:
        raise ValueError(f"fine-tuning needs at least one step (epochs={epochs}, max_steps={max_steps})")

    # No weight decay on biases and normalisation parameters (1-d tensors), the usual AdamW practice.
    groups = []
    for params, scale in ((model.encoder.parameters(), 1.0), (model.head.parameters(), head_lr_scale)):
        params = [p for p in params if p.requires_grad]
        groups.append(
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "scale": scale}
        )
        groups.append({"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "scale": scale})
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)

    step = 0
    while step < total:
        for batch in loader:
            factor = 0.5 * (1.0 + math.cos(math.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"] * factor
            with autocast_for(device):
                logits = model(move_to(batch["input"], device))
            labels = torch.as_tensor(batch["label"]).to(device).long()
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= total:
                break
    return classifier_accuracy(
        model, test_dataset, batch_size=batch_size, device=device, num_workers=num_workers
    )
