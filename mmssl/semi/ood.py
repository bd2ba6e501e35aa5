"""Out-of-domain guard for unlabelled data: score every sample, drop those beyond a threshold.

Unlabelled data drawn from another distribution hurts semi-supervised learning (Oliver et al. 2018,
"Realistic evaluation"): its pseudo-labels are wrong by construction. The guard scores each unlabelled
sample so that *larger means more out-of-domain*:

* ``max_softmax``: ``1 - max_c softmax(z)_c`` (Hendrycks & Gimpel 2017 baseline, negated);
* ``energy``: ``E(x) = -T logsumexp(z / T)`` (Liu et al. 2020); in-domain inputs get low energy;
* ``knn``: cosine distance from the L2-normalised feature to its k-th nearest labelled feature
  (Sun et al. 2022).

The threshold is either absolute or the ``quantile`` of the same score on the labelled data
(for ``knn`` each labelled sample's neighbours exclude itself). Samples scoring above it are dropped.
Nothing here knows the modality: it takes logits and features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

GUARDS = ("none", "max_softmax", "energy", "knn")


def max_softmax_score(logits: Tensor) -> Tensor:
    """``1 - max_c softmax(logits)_c`` [N]: 0 for a certain prediction, ``1 - 1/C`` for a uniform one."""
    return 1.0 - F.softmax(logits.float(), dim=1).max(dim=1).values


def energy_score(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Free energy ``-T logsumexp(logits / T)`` [N]; higher for inputs unlike the training data."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def knn_distance_score(
    features: Tensor, reference: Tensor, k: int = 5, exclude_self: bool = False, chunk: int = 4096
) -> Tensor:
    """Cosine distance ``1 - cos`` from each row of ``features`` to its k-th nearest row of ``reference``.

    ``exclude_self``: ``features`` *is* ``reference`` (same order); a sample is not its own neighbour.
    """
    ref = F.normalize(reference.float(), dim=1)
    k_eff = min(k, ref.shape[0] - (1 if exclude_self else 0))
    if k_eff < 1:
        raise ValueError("the kNN guard needs more labelled samples than k (and at least 2)")
    out = []
    for start in range(0, features.shape[0], chunk):
        q = F.normalize(features[start : start + chunk].float(), dim=1)
        sim = q @ ref.T
        if exclude_self:
            rows = torch.arange(q.shape[0], device=sim.device)
            sim[rows, rows + start] = -float("inf")
        out.append(1.0 - sim.topk(k_eff, dim=1).values[:, -1])
    return torch.cat(out)


@dataclass
class GuardResult:
    """What the guard decided about a pool: ``keep`` (bool [N]), ``scores`` [N], ``threshold``."""

    keep: Tensor
    scores: Tensor
    threshold: float

    @property
    def num_dropped(self) -> int:
        return int((~self.keep).sum())


class OODGuard:
    """Scores unlabelled samples and keeps those no more out-of-domain than the labelled data.

    Args:
        kind: ``none`` | ``max_softmax`` | ``energy`` | ``knn``.
        threshold: absolute score threshold; None uses ``quantile`` of the labelled scores.
        quantile: quantile of the labelled-data scores used as the threshold (e.g. 0.95 keeps an
            unlabelled sample if it scores no worse than 95% of the labelled ones).
        k: neighbours for ``knn``. temperature: ``T`` of ``energy``.
    """

    def __init__(
        self,
        kind: str = "none",
        threshold: float | None = None,
        quantile: float = 0.95,
        k: int = 5,
        temperature: float = 1.0,
    ) -> None:
        if kind not in GUARDS:
            raise ValueError(f"ood_guard must be one of {', '.join(GUARDS)}, got '{kind}'")
        if threshold is None and not 0.0 < quantile <= 1.0:
            raise ValueError(f"ood_quantile must be in (0, 1], got {quantile}")
        self.kind, self.threshold, self.quantile = kind, threshold, quantile
        self.k, self.temperature = k, temperature

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def needs_features(self) -> bool:
        return self.kind == "knn"

    def score(
        self,
        logits: Tensor | None = None,
        features: Tensor | None = None,
        labelled_features: Tensor | None = None,
        is_labelled: bool = False,
    ) -> Tensor:
        """Scores (larger = more out-of-domain) of one set; ``is_labelled``: it is the reference set."""
        if self.kind == "max_softmax":
            return max_softmax_score(_need(logits, "logits"))
        if self.kind == "energy":
            return energy_score(_need(logits, "logits"), self.temperature)
        if self.kind == "knn":
            ref = _need(labelled_features, "labelled features")
            return knn_distance_score(_need(features, "features"), ref, self.k, exclude_self=is_labelled)
        raise ValueError("the 'none' guard does not score")

    def __call__(
        self,
        unlabelled_logits: Tensor | None = None,
        unlabelled_features: Tensor | None = None,
        labelled_logits: Tensor | None = None,
        labelled_features: Tensor | None = None,
    ) -> GuardResult:
        """Decide which unlabelled samples to keep; returns a :class:`GuardResult`."""
        n = (unlabelled_logits if unlabelled_logits is not None else unlabelled_features).shape[0]
        if not self.enabled:
            return GuardResult(torch.ones(n, dtype=torch.bool), torch.zeros(n), float("inf"))
        scores = self.score(unlabelled_logits, unlabelled_features, labelled_features)
        if self.threshold is not None:
            threshold = float(self.threshold)
        else:
            ref = self.score(labelled_logits, labelled_features, labelled_features, is_labelled=True)
            threshold = float(torch.quantile(ref.float(), self.quantile))
        return GuardResult(scores <= threshold, scores, threshold)


def _need(x: Tensor | None, what: str) -> Tensor:
    if x is None:
        raise ValueError(f"this OOD guard needs the {what}")
    return x
