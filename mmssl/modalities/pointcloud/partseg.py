"""Few-shot part segmentation (ShapeNetPart protocol), evaluator ``part_segmentation``.

Protocol (Gadelha et al., ECCV 2020, Sec. 4; the standard ShapeNetPart evaluation):

* K in ``shots`` labelled shapes **per category** are drawn from ``eval_train`` with each seed
  (:func:`sample_k_shot`); the whole ``eval_test`` split is segmented.
* ``ft``: the encoder and a per-point linear classifier over all parts are fine-tuned together
  (the paper's variant: Adam, lr 1e-3, weight decay 1e-4, scale + shift augmentation, per-point
  cross-entropy), optionally jointly with the ACD loss on unlabelled shapes (``acd_weight``; the
  paper uses 10). ``linear``: the encoder is frozen and only a per-point linear classifier is
  trained on its tokens.
* A shape's prediction is the argmax over the parts of **its category only** (the category is
  known at test time). Its IoU is the mean over those parts of ``|pred & true| / |pred | true|``,
  where a part absent from both prediction and ground truth counts as 1.
* ``instance_miou``: mean over all test shapes; ``class_miou``: mean over categories of the mean of
  their shapes. Each is reported as the mean over seeds (``fewshot{K}_{ft|linear}_{class|instance}_miou``)
  and the population std (``..._std``).

Data: ``eval_train`` / ``eval_test`` items ``{"points" [N, 3], "normals" [N, 3], "parts" [N]
(global part ids), "category": int}`` and ``data.info["part_seg"] = {"categories": [names],
"parts_per_category": {category: [global part ids]}, "num_parts": int}``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmssl.data import DataBundle
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.eval.features import eval_mode
from mmssl.eval.few_shot import sample_n_shot
from mmssl.eval.linear import flush_denormals, train_linear_probe
from mmssl.modalities.pointcloud.acd_pretext import acd_loss, augment_points, encoder_input

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ metrics


def category_part_mask(parts_per_category: Mapping[int, Sequence[int]], num_parts: int) -> Tensor:
    """``[num_categories, num_parts]`` bool: which global part ids belong to each category."""
    num_categories = max(int(c) for c in parts_per_category) + 1
    mask = torch.zeros(num_categories, num_parts, dtype=torch.bool)
    for cat, parts in parts_per_category.items():
        mask[int(cat), list(parts)] = True
    return mask


def restricted_argmax(logits: Tensor, categories: Tensor, mask: Tensor) -> Tensor:
    """Per-point argmax of ``logits [B, N, P]`` over the parts of each shape's category only."""
    allowed = mask.to(logits.device)[categories.long()].unsqueeze(1)  # [B, 1, P]
    return logits.float().masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def shape_iou(pred: Tensor, target: Tensor, parts: Sequence[int]) -> float:
    """Mean IoU of one shape over ``parts`` (its category's part ids); absent-in-both parts count 1."""
    ious = []
    for part in parts:
        p, t = pred == part, target == part
        union = (p | t).sum().item()
        ious.append(1.0 if union == 0 else (p & t).sum().item() / union)
    return sum(ious) / len(ious)


def miou_summary(ious: Tensor, categories: Tensor) -> dict[str, float]:
    """``instance_miou`` (mean over shapes) and ``class_miou`` (mean over categories present of
    their shapes' mean) from per-shape IoUs."""
    ious, categories = ious.double(), categories.long()
    per_class = [ious[categories == c].mean() for c in torch.unique(categories)]
    return {"class_miou": torch.stack(per_class).mean().item(), "instance_miou": ious.mean().item()}


def sample_k_shot(categories: Tensor, k: int, seed: int) -> Tensor:
    """Indices of exactly ``k`` shapes of every category present, drawn with ``seed`` (deterministic)."""
    return sample_n_shot(categories, k, seed)


# ---------------------------------------------------------------------------------- the model


class PartSegmenter(nn.Module):
    """``encoder`` tokens ``[B, N, D]`` -> per-point part logits ``[B, N, num_parts]`` (a linear head)."""

    def __init__(self, encoder: nn.Module, num_parts: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.in_channels = int(getattr(encoder, "in_channels", 3))
        self.head = nn.Linear(encoder.out_dim, num_parts)
        nn.init.trunc_normal_(self.head.weight, std=0.01, generator=generator)
        nn.init.zeros_(self.head.bias)

    def tokens(self, points: Tensor, normals: Tensor | None) -> Tensor:
        return self.encoder(encoder_input(points, normals, self.in_channels))["tokens"]

    def forward(self, points: Tensor, normals: Tensor | None = None) -> Tensor:
        return self.head(self.tokens(points, normals))


# ------------------------------------------------------------------------------------ data


def load_split(dataset: Dataset, batch_size: int = 32) -> dict[str, Tensor]:
    """Every item of a part-segmentation split stacked: points, normals, parts [S, N], category [S]."""
    if dataset is None or len(dataset) == 0:
        raise DataError("part_segmentation needs non-empty eval_train / eval_test splits")
    out: dict[str, list[Tensor]] = {"points": [], "normals": [], "parts": [], "category": []}
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            for key in out:
                out[key].append(torch.as_tensor(batch[key]))
    except KeyError as err:
        raise DataError(
            f"part_segmentation items need keys points, normals, parts, category; missing {err}"
        ) from None
    except RuntimeError as err:  # default collate of clouds with different point counts
        raise DataError(f"part_segmentation needs a fixed number of points per shape: {err}") from None
    split = {k: torch.cat(v) for k, v in out.items()}
    split["parts"], split["category"] = split["parts"].long(), split["category"].long()
    return split


def _subset(split: Mapping[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in split.items()}


def _to(split: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in split.items()}


# --------------------------------------------------------------------------------- training


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
    takes ``batch_size`` support shapes in a seeded shuffled order, scale + shift augmented, and
    minimises the per-point cross-entropy over all parts. With ``acd_weight > 0`` each step also
    adds ``acd_weight`` x the ACD loss on a random batch of ``acd_data`` (unlabelled shapes with
    ``"acd"`` component ids): the paper's joint training, here summed into one step rather than
    alternated. ``head_init``: start from this head (e.g. a linear probe on the frozen features,
    the reference code's ``--init_cls``) instead of a small random one. ``encoder`` itself is left
    untouched.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = PartSegmenter(copy.deepcopy(encoder), num_parts, generator=generator).to(device)
    if head_init is not None:
        model.head.load_state_dict(head_init.state_dict())
    support = _to(support, device)
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
    points = torch.stack([torch.as_tensor(it["points"]) for it in items]).to(device)
    normals = torch.stack([torch.as_tensor(it["normals"]) for it in items]).to(device)
    components = torch.stack([torch.as_tensor(it["acd"]) for it in items]).to(device).long()
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


@torch.no_grad()
def predict_parts(
    model: PartSegmenter, split: Mapping[str, Tensor], mask: Tensor, batch_size: int = 16
) -> Tensor:
    """Category-restricted part predictions ``[S, N]`` for every shape of ``split`` (eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    preds = []
    for start in range(0, split["points"].shape[0], batch_size):
        sl = slice(start, start + batch_size)
        logits = model(split["points"][sl].to(device), split["normals"][sl].to(device))
        preds.append(restricted_argmax(logits, split["category"][sl].to(device), mask).cpu())
    return torch.cat(preds)


def segmentation_scores(
    pred: Tensor, split: Mapping[str, Tensor], parts_per_category: Mapping[int, Sequence[int]]
) -> tuple[Tensor, dict[str, float]]:
    """Per-shape IoUs ``[S]`` and their class / instance averages."""
    cats = split["category"]
    ious = torch.tensor(
        [shape_iou(pred[i], split["parts"][i], parts_per_category[int(cats[i])]) for i in range(len(cats))]
    )
    return ious, miou_summary(ious, cats)


# -------------------------------------------------------------------------------- evaluator


def _part_seg_info(data: DataBundle) -> tuple[list[str], dict[int, list[int]], int]:
    info = (data.info or {}).get("part_seg")
    if not info:
        raise DataError(
            "evaluator 'part_segmentation' needs data.info['part_seg'] (categories, parts_per_category, "
            "num_parts): use a part-annotated point-cloud dataset (procedural_parts, shapenetpart)"
        )
    parts = {int(c): [int(p) for p in ps] for c, ps in info["parts_per_category"].items()}
    return list(info["categories"]), parts, int(info["num_parts"])


def _render(
    path: Path,
    model: PartSegmenter,
    test: Mapping[str, Tensor],
    mask: Tensor,
    names: list[str],
    num_renders: int,
    up_axis: int,
) -> None:
    from mmssl.modalities.pointcloud.render import render_part_predictions

    # One shape per category first (the first of each), then more in test order.
    firsts = [int((test["category"] == c).nonzero()[0]) for c in torch.unique(test["category"])]
    rest = [i for i in range(len(test["category"])) if i not in firsts]
    idx = torch.tensor((firsts + rest)[:num_renders])
    shown = _subset(test, idx)
    pred = predict_parts(model, shown, mask)
    labels = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in shown["category"]]
    render_part_predictions(
        list(shown["points"]), list(pred), list(shown["parts"]), path, names=labels, up_axis=up_axis
    )


def part_segmentation_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
    *,
    shots: Sequence[int] = (1, 5, 10),
    seeds: int = 3,
    finetune: bool = True,
    linear: bool = True,
    supervised: bool = False,
    linear_init: bool = False,
    steps: int = 200,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment: bool = True,
    acd_weight: float = 0.0,
    linear_epochs: int = 30,
    linear_lr: float = 1e-2,
    linear_batch_size: int = 4096,
    eval_batch_size: int = 16,
    num_renders: int = 4,
    up_axis: int = 1,
) -> dict[str, float]:
    """K-shot part segmentation, fine-tuned (``ft``) and frozen-linear (``linear``), over ``seeds`` draws.

    For each K in ``shots`` and seeds ``seed .. seed + seeds - 1``: K shapes per category from
    ``eval_train``; the whole ``eval_test`` split is scored. Returns
    ``fewshot{K}_{ft,linear}_{class,instance}_miou`` (mean over seeds) and ``..._std`` (population
    std). ``supervised``: also fine-tune on every labelled training shape (one run) ->
    ``supervised_ft_{class,instance}_miou``.

    Fine-tuning: ``steps`` Adam steps of ``batch_size`` shapes at ``lr`` / ``weight_decay`` (cosine),
    scale+shift ``augment``; ``acd_weight > 0`` adds the ACD loss on ``data.pretrain`` at every
    step (the paper's joint training; it uses 10); ``linear_init``: start from the linear probe's
    head instead of a random one (the reference code's ``--init_cls``). Linear probe:
    ``linear_epochs`` / ``linear_lr`` / ``linear_batch_size`` (points per step). ``figures_dir``:
    PNG renders (true vs predicted parts) of ``num_renders`` test shapes for the largest K, first
    seed (``up_axis`` drawn vertically).
    """
    device, seed, figures_dir = ctx.device, ctx.seed, ctx.figures_dir
    if seeds < 1:
        raise ValueError(f"part_segmentation needs seeds >= 1, got {seeds}")
    if not (finetune or linear or supervised):
        raise ValueError("part_segmentation: enable at least one of finetune, linear, supervised")
    device = torch.device(device)
    names, parts_per_category, num_parts = _part_seg_info(data)
    mask = category_part_mask(parts_per_category, num_parts)
    train, test = load_split(data.eval_train), load_split(data.eval_test)

    def fit(variant: str, support: Mapping[str, Tensor], s: int) -> PartSegmenter:
        if variant == "linear" or linear_init:
            probe = linear_segmenter(
                encoder,
                support,
                num_parts,
                epochs=linear_epochs,
                lr=linear_lr,
                weight_decay=weight_decay,
                batch_size=linear_batch_size,
                seed=s,
                device=device,
            )
            if variant == "linear":
                return probe
        return finetune_segmenter(
            encoder,
            support,
            num_parts,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            augment=augment,
            seed=s,
            device=device,
            acd_data=data.pretrain if acd_weight > 0 else None,
            acd_weight=acd_weight,
            head_init=probe.head if linear_init else None,
        )

    def score(model: PartSegmenter) -> dict[str, float]:
        pred = predict_parts(model, test, mask, eval_batch_size)
        return segmentation_scores(pred, test, parts_per_category)[1]

    variants = [v for v, on in (("ft", finetune), ("linear", linear)) if on]
    shots = sorted({int(k) for k in shots})
    results: dict[str, float] = {}
    was_training = encoder.training  # the linear variant runs the caller's encoder in eval mode
    try:
        for k in shots:
            for variant in variants:
                t0, runs = time.perf_counter(), []
                for s in range(seed, seed + seeds):
                    model = fit(variant, _subset(train, _draw_support(train["category"], k, s, names)), s)
                    runs.append(score(model))
                    if figures_dir is not None and num_renders > 0 and k == shots[-1] and s == seed:
                        path = Path(figures_dir) / f"partseg_{k}shot_{variant}.png"
                        _render(path, model, test, mask, names, num_renders, up_axis)
                for key in runs[0]:
                    v = torch.tensor([run[key] for run in runs], dtype=torch.float64)
                    results[f"fewshot{k}_{variant}_{key}"] = v.mean().item()
                    results[f"fewshot{k}_{variant}_{key}_std"] = v.std(unbiased=False).item()
                log.info("part_segmentation %d-shot %s: %.1fs", k, variant, time.perf_counter() - t0)
        if supervised:
            results.update({f"supervised_ft_{key}": v for key, v in score(fit("ft", train, seed)).items()})
    finally:
        encoder.train(was_training)
    return results


def _draw_support(categories: Tensor, k: int, seed: int, names: list[str]) -> Tensor:
    try:
        return sample_k_shot(categories, k, seed)
    except ValueError as err:
        raise DataError(
            f"part_segmentation: cannot draw {k} labelled shapes per category ({err}); "
            f"lower eval.part_segmentation.shots (categories: {names})"
        ) from None
