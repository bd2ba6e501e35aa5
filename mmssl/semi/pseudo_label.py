"""Pseudo-label selection and the small loss terms of semi-supervised learning (modality-free).

Everything here works on class logits / probabilities ``[N, C]`` and knows nothing about the data:

* :func:`select_pseudo_labels`: self-training's three variants (Yarowsky 1995; Lee 2013 "pseudo-label";
  Oliver et al. 2018): add only the most confident, add all with weight 1, add all weighted by confidence.
* :func:`balance_to_prior`: data distillation's rule that the kept pseudo-labelled set should look like
  the labelled one (Radosavovic et al. 2018), here: the same class proportions.
* :func:`confidence_mask`: FixMatch's ``1[max_c p_c >= tau]`` (Sohn et al. 2020, eq. 4).
* :func:`entropy`: ``H(p) = -sum_c p_c log p_c`` (Grandvalet & Bengio 2005).
* :func:`softmax_mse`: Mean Teacher's consistency cost between softmaxes (Tarvainen & Valpola 2017).
* :func:`sigmoid_rampup`: ``exp(-5 (1 - t)^2)`` (Laine & Aila 2017; Mean Teacher).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SELECTIONS = ("confident", "all", "weighted")


def select_pseudo_labels(
    probs: Tensor,
    selection: str = "confident",
    threshold: float = 0.0,
    top_fraction: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Hard pseudo-labels ``argmax_c p_c`` and a per-sample weight for the unlabelled loss.

    ``selection``:

    * ``confident``: weight 1 for samples whose confidence ``max_c p_c >= threshold`` *and* that are
      among the ``top_fraction`` most confident of the pool; weight 0 for the rest.
    * ``all``: every sample, weight 1.
    * ``weighted``: every sample, weight = its confidence ``max_c p_c``.

    Args:
        probs: class probabilities ``[N, C]`` (rows sum to 1).

    Returns:
        ``(labels [N] int64, weights [N] float32)``.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got '{selection}'")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    confidence, labels = probs.max(dim=1)
    if selection == "all":
        return labels, torch.ones_like(confidence, dtype=torch.float32)
    if selection == "weighted":
        return labels, confidence.float()
    keep = confidence >= threshold
    if top_fraction < 1.0 and probs.shape[0] > 0:
        k = max(1, math.ceil(top_fraction * probs.shape[0]))
        top = torch.zeros_like(keep)
        top[confidence.topk(k).indices] = True
        keep &= top
    return labels, keep.float()


def balance_to_prior(labels: Tensor, confidence: Tensor, keep: Tensor, prior: Tensor) -> Tensor:
    """Subsample a kept pseudo-labelled set so its class histogram is proportional to ``prior``.

    For every class the most confident kept samples survive. The largest set with class counts
    ``n_c = floor(s * prior_c)`` that fits inside what was kept is chosen (``s`` as large as possible),
    so a class the teacher over-predicts cannot dominate the student's training data.

    Args:
        labels: pseudo-labels ``[N]``; confidence: ``[N]``; keep: bool ``[N]`` (candidates).
        prior: class proportions ``[C]`` of the labelled set (need not be normalised).

    Returns:
        bool ``[N]``, a subset of ``keep``.
    """
    prior = prior.float() / prior.float().sum()
    num_classes = prior.numel()
    counts = torch.bincount(labels[keep], minlength=num_classes).float()
    present = prior > 0
    if not keep.any() or not present.any():
        return torch.zeros_like(keep)
    # The scale s is limited by the class with the fewest candidates relative to its prior share.
    scale = (counts[present] / prior[present]).min()
    quota = torch.floor(scale * prior + 1e-6).long()
    out = torch.zeros_like(keep)
    for c in range(num_classes):
        idx = torch.nonzero(keep & (labels == c)).flatten()
        if quota[c] > 0 and idx.numel() > 0:
            best = idx[confidence[idx].argsort(descending=True)[: int(quota[c])]]
            out[best] = True
    return out


def confidence_mask(probs: Tensor, threshold: float) -> Tensor:
    """FixMatch's mask ``1[max_c p_c >= threshold]`` as float ``[N]``."""
    return (probs.max(dim=1).values >= threshold).float()


def entropy(logits: Tensor) -> Tensor:
    """Per-sample Shannon entropy ``-sum_c p_c log p_c`` [N] of ``softmax(logits)`` (nats).

    Computed from ``log_softmax`` so that ``p log p`` is 0, not NaN, for underflowing classes.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def softmax_mse(student_logits: Tensor, teacher_logits: Tensor, reduction: str = "mean") -> Tensor:
    """Mean Teacher consistency ``mean_{b,c} (softmax(s)_bc - softmax(t)_bc)^2``; no gradient to the teacher.

    The reference code sums over classes and divides by C and the batch size: the same mean.
    ``reduction="none"`` returns the per-sample mean over classes ``[B]``.
    """
    p_s = F.softmax(student_logits.float(), dim=1)
    p_t = F.softmax(teacher_logits.detach().float(), dim=1)
    per_sample = (p_s - p_t).pow(2).mean(dim=1)
    return per_sample if reduction == "none" else per_sample.mean()


def sigmoid_rampup(progress: float, rampup: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(progress / rampup, 0, 1)``; 1 when ``rampup <= 0``.

    ``progress`` and ``rampup`` share a unit (steps, or fractions of training).
    """
    if rampup <= 0:
        return 1.0
    t = min(max(progress / rampup, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
