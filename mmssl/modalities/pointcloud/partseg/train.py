"""Fitting a part segmenter on K labelled shapes per category (Gadelha et al., ECCV 2020, Sec. 4):
fine-tuning the encoder with a linear head (optionally jointly with the ACD loss on unlabelled shapes),
or a linear probe on the frozen encoder's per-point tokens."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from mmssl.eval.features import eval_mode
from mmssl.eval.linear import flush_denormals, train_linear_probe
from mmssl.modalities.pointcloud.acd_pretext import acd_loss, augment_points, encoder_input
from mmssl.modalities.pointcloud.keys import ACD_LABELS, NORMALS, POINTS
from mmssl.modalities.pointcloud.partseg.model import PartSegmenter
from mmssl.modalities.pointcloud.partseg.splits import to_device


def finetune_segmenter(
    encoder: nn.Module,
    support: Mapping[str, Tensor],
    num_parts: int,
    *,
    steps: int = 200,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    acd_data: Dataset | None = None,
    acd_weight: float = 0.0,
    acd_loss_points: int = 256,
    head_init: nn.Linear | None = None,
) -> PartSegmenter:
    """Fine-tune a copy of ``encoder`` plus a linear per-point head on the ``support`` shapes.

    Adam (``lr``, L2 ``weight_decay``, as the paper) with a cosine decay over ``steps``; each step
    takes ``batch_size`` support shapes (all of them when there are fewer) in a seeded shuffled
    order, scale + shift augmented, and minimises the per-point cross-entropy over all parts. With
    ``acd_weight > 0`` each step also adds ``acd_weight`` x the ACD loss on a random batch of
    ``acd_data`` (unlabelled shapes with ``"acd"`` component ids): the paper's joint training, here
    summed into one step rather than alternated. ``head_init``: start from this head (e.g. a linear
    probe on the frozen features, the reference code's ``--init_cls``) instead of a small random one.
    ``encoder`` itself is left untouched.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = PartSegmenter(copy.deepcopy(encoder), num_parts, generator=generator).to(device)
    if head_init is not None:
        model.head.load_state_dict(head_init.state_dict())
    support = to_device(support, device)
    n = support["points"].shape[0]
    batch_size = min(batch_size, n)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    order, cursor = torch.randperm(n, generator=generator), 0
    model.train()
    # Dropout draws from the global RNG: fix it per seed without disturbing the caller's stream.
    with torch.random.fork_rng(devices=[]), flush_denormals():
        torch.manual_seed(seed)
        for step in range(steps):
            if cursor + batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor : cursor + batch_size].to(device)
            cursor += batch_size
            points, normals = support["points"][idx], support["normals"][idx]
            if augment:
                points, normals = augment_points(points, normals, generator=generator)
            logits = model(points, normals)
            loss = F.cross_entropy(logits.reshape(-1, num_parts), support["parts"][idx].reshape(-1))
            if acd_weight > 0 and acd_data is not None:
                loss = loss + acd_weight * _acd_step_loss(
                    model, acd_data, batch_size, generator, device, acd_loss_points
                )
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / max(1, steps)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def _acd_step_loss(
    model: PartSegmenter,
    acd_data: Dataset,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    loss_points: int,
) -> Tensor:
    idx = torch.randint(len(acd_data), (min(batch_size, len(acd_data)),), generator=generator).tolist()
    items = [acd_data[i] for i in idx]
    points = torch.stack([torch.as_tensor(it[POINTS]) for it in items]).to(device)
    normals = torch.stack([torch.as_tensor(it[NORMALS]) for it in items]).to(device)
    components = torch.stack([torch.as_tensor(it[ACD_LABELS]) for it in items]).to(device).long()
    points, normals = augment_points(points, normals, generator=generator)
    return acd_loss(model.tokens(points, normals), components, loss_points=loss_points, generator=generator)


@torch.no_grad()
def _tokens(encoder: nn.Module, split: Mapping[str, Tensor], batch_size: int, device: torch.device) -> Tensor:
    """Frozen per-point features ``[S, N, D]`` (CPU), computed in eval mode."""
    in_channels = int(getattr(encoder, "in_channels", 3))
    out = []
    with eval_mode(encoder.to(device)):
        for start in range(0, split["points"].shape[0], batch_size):
            sl = slice(start, start + batch_size)
            x = encoder_input(split["points"][sl].to(device), split["normals"][sl].to(device), in_channels)
            out.append(encoder(x)["tokens"].float().cpu())
    return torch.cat(out)


def linear_segmenter(
    encoder: nn.Module,
    support: Mapping[str, Tensor],
    num_parts: int,
    *,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 4096,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> PartSegmenter:
    """A frozen ``encoder`` with a per-point linear classifier trained on the support tokens
    (:func:`mmssl.eval.linear.train_linear_probe`: standardised features, Adam, cosine)."""
    device = torch.device(device)
    feats = _tokens(encoder, support, batch_size=16, device=device)
    layer = train_linear_probe(
        feats.reshape(-1, feats.shape[-1]).to(device),
        support["parts"].reshape(-1).to(device),
        num_parts,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )
    model = PartSegmenter(encoder, num_parts).to(device)
    model.head.load_state_dict(layer.state_dict())
    return model.eval()
