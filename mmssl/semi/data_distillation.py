"""Data distillation (Radosavovic et al., CVPR 2018): one model, many transforms, ensembled labels.

1. Train a teacher on the labelled data (the first ``teacher_fraction`` of training).
2. Run the teacher on several transforms of every unlabelled input (flips, scales), map each prediction
   back to the original frame where that matters (dense outputs are un-flipped / resized; class
   scores are invariant), and average the probabilities: ``p(y|u) = 1/T sum_t T_t^{-1} f(T_t(u))``.
3. Keep pseudo-labels whose ensembled confidence is >= ``threshold``; with ``balance`` the kept set is
   further cut so its class proportions match the labelled set's ("statistically like the labelled
   data", the paper's criterion for its threshold).
4. Retrain a student (from its initial weights with ``reinit_student``) on labelled + pseudo-labelled.

:func:`ensemble_predictions` and :class:`TTATransform` are generic over ``[B, C]`` and ``[B, C, H, W]``
outputs; :func:`image_transforms` builds the flip x scale set for image inputs ``[B, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mmssl.data import DataBundle
from mmssl.data.device import move_to
from mmssl.errors import ConfigError
from mmssl.eval.features import eval_mode
from mmssl.option_markers import WHOLE_SECTION
from mmssl.semi.base import PseudoLabelMethod, dataset_labels
from mmssl.semi.options import PseudoLabelOptions
from mmssl.semi.pseudo_label import balance_to_prior


@dataclass(frozen=True)
class TTATransform:
    """One test-time transform of an image batch and the map of its prediction back.

    ``flip``: horizontal flip; ``scale``: bilinear resize factor. ``apply`` transforms the input;
    ``invert`` maps an output back: class scores ``[B, C]`` are returned unchanged, dense outputs
    ``[B, C, h, w]`` are un-flipped and resized to ``out_size`` (the un-transformed output's size).
    """

    flip: bool = False
    scale: float = 1.0

    def apply(self, x: Tensor) -> Tensor:
        if self.scale != 1.0:
            size = [max(1, round(s * self.scale)) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.scale < 1)
        return x.flip(-1) if self.flip else x

    def invert(self, y: Tensor, out_size: Sequence[int] | None = None) -> Tensor:
        if y.ndim < 4:
            return y  # class scores: flips and scales do not move them
        if self.flip:
            y = y.flip(-1)
        if out_size is not None and tuple(y.shape[-2:]) != tuple(out_size):
            y = F.interpolate(y, size=list(out_size), mode="bilinear", align_corners=False)
        return y


def image_transforms(flips: bool = True, scales: Sequence[float] = (1.0,)) -> list[TTATransform]:
    """Every (scale, flip) combination: ``len(scales) * (2 if flips else 1)`` transforms."""
    return [
        TTATransform(flip=f, scale=float(s)) for s in scales for f in ((False, True) if flips else (False,))
    ]


@torch.no_grad()
def ensemble_predictions(
    predict: Callable[[Tensor], Tensor], x: Tensor, transforms: Sequence[TTATransform]
) -> Tensor:
    """Average of ``softmax`` over the class dimension (dim 1) of ``predict(T(x))`` mapped back by ``T^{-1}``.

    Works for class logits ``[B, C]`` and dense logits ``[B, C, H, W]`` (the output size of the first
    transform whose scale is 1, else of the first transform, is the reference frame).
    """
    if not transforms:
        raise ValueError("data distillation needs at least one transform")
    ref = next((t for t in transforms if t.scale == 1.0), transforms[0])
    ref_out = predict(ref.apply(x))
    out_size = ref_out.shape[-2:] if ref_out.ndim >= 4 else None
    total = torch.zeros_like(ref_out, dtype=torch.float32)
    for t in transforms:
        y = ref_out if t is ref else predict(t.apply(x))
        total += F.softmax(t.invert(y, out_size).float(), dim=1)
    return total / len(transforms)


@dataclass(frozen=True)
class DataDistillationOptions(PseudoLabelOptions):
    """Data distillation's ``method`` keys: a teacher on labelled data for ``teacher_fraction`` of
    training, then a student.

    Pseudo-labels: the teacher's softmax averaged over ``scales`` x (identity, horizontal flip if
    ``flips``); kept if the ensembled confidence is >= ``threshold``; ``balance`` matches the kept
    set's class proportions to the labelled set's. ``reinit_student``: the student starts from the
    initial weights (as the paper retrains). ``student_view``: ``weak`` or ``strong``.
    ``unlabelled_weight``: lambda_u (0 = supervised only). ``ood``: as self-training's.
    """

    teacher_fraction: float = 0.4
    flips: bool = True
    scales: list[float] = field(default_factory=lambda: [0.75, 1.0, 1.25])
    threshold: float = 0.5
    balance: bool = True
    reinit_student: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.teacher_fraction < 1.0:
            raise ConfigError(f"teacher_fraction must be in (0, 1), got {self.teacher_fraction}")


class DataDistillation(PseudoLabelMethod):
    """Data distillation; see the module docstring. Options: :class:`DataDistillationOptions`; the
    teacher's transforms are :func:`image_transforms` of its ``flips`` and ``scales``."""

    options: DataDistillationOptions

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle,
        options: Annotated[DataDistillationOptions, WHOLE_SECTION] = DataDistillationOptions(),
    ) -> None:
        super().__init__(encoder, data, options)
        self.transforms = image_transforms(options.flips, options.scales)

    def boundaries(self, total_steps: int) -> list[int]:
        b = max(1, round(self.options.teacher_fraction * total_steps))
        return [b] if b < total_steps else []

    def labelled_prior(self) -> Tensor:
        return torch.bincount(dataset_labels(self.labelled), minlength=self.num_classes).float()

    @torch.no_grad()
    def compute_pseudo_labels(self) -> tuple[Tensor, Tensor]:
        teacher = self.student()
        probs = []
        with eval_mode(teacher):
            for batch in DataLoader(self.pool, batch_size=self.options.pool_batch_size, shuffle=False):
                x = move_to(batch["input"], self.device)
                probs.append(ensemble_predictions(lambda z: self.classify(teacher, z), x, self.transforms))
        p = torch.cat(probs).cpu()
        confidence, labels = p.max(dim=1)
        keep = confidence >= self.options.threshold
        keep &= self.ood_keep.cpu()  # balance among what the guard lets through
        if self.options.balance:
            keep = balance_to_prior(labels, confidence, keep, self.labelled_prior())
        return labels, keep.float()
