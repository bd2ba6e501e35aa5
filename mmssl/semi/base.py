"""What every semi-supervised method shares: a classifier, an optional EMA copy, the OOD guard.

A semi-supervised method is a registered METHOD like any other: the one trainer calls
``forward(batch)`` and, after every optimiser step, ``on_train_step_end(step, total_steps)``. The batch
holds a labelled part (``x_l`` [B, ...], ``y_l`` [B]) and an unlabelled part (``u_weak`` /
``u_strong`` [B, mu, ...], ``u_index`` [B, mu] positions in the unlabelled pool), see
:mod:`mmssl.semi.data`. Nothing here depends on the modality: inputs are whatever the encoder takes.

* ``encoder`` (the backbone, saved for downstream use) and ``head`` (``Linear(out_dim, C)``).
* ``ema``: an :class:`~mmssl.core.momentum.EMATeacher` of encoder + head where the method evaluates
  an averaged model (FixMatch) or uses it as a teacher (Mean Teacher).
* The OOD guard (:mod:`mmssl.semi.ood`): the unlabelled pool is scored with the evaluation model and
  the buffer ``ood_keep`` [pool] masks every unlabelled loss. With the guard on, the unlabelled loss
  waits for the first scoring (at ``ood_start`` of training, then every ``ood_every`` steps), so no
  unvetted sample is ever used; multi-phase methods score at their phase boundaries instead.
* ``unlabelled_weight = 0`` turns every method into plain supervised training on the labelled part
  (no unlabelled forward, no pool scoring, no phase switches): the supervised-only baseline.

State that changes during training (guard decisions, pseudo-label tables, phase) lives in buffers,
so it is saved in checkpoints and restored on resume.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mmssl.core.method import Method
from mmssl.core.momentum import EMATeacher
from mmssl.data import DataBundle
from mmssl.eval.features import eval_mode, global_features, move_to
from mmssl.semi.keys import U_INDEX, U_WEAK, X_L, Y_L
from mmssl.semi.ood import GuardResult, OODGuard


class SemiMethod(Method, metaclass=abc.ABCMeta):
    """Base class; subclasses implement :meth:`semi_loss` and may override :meth:`after_step`.

    Args:
        encoder: backbone with ``out_dim``; ``forward(x)["global"]`` feeds the head.
        num_classes: classifier outputs.
        data: the run's :class:`~mmssl.data.DataBundle` (given by the runner); its
            ``info["unlabelled_pool"]`` (items ``{"input", "index"}``) and ``eval_train`` (labelled) are
            read when the guard scores the pool or pseudo-labels are recomputed.
        unlabelled_weight: weight of the unlabelled term (lambda_u); 0 = supervised only.
        guard: the OOD guard (``OODGuard("none")`` disables it).
        ood_start / ood_every: first guard scoring at this fraction of training; then every this many
            steps (0: once). Ignored by methods that score at phase boundaries.
        ema_decay: keep an EMA copy of encoder + head with this decay (None: no copy).
        pool_batch_size: batch size when predicting on the whole pool.
    """

    consumes = frozenset({X_L, Y_L})

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """The unlabelled views :meth:`semi_loss` reads (besides ``u_index``)."""
        return frozenset({U_WEAK})

    @classmethod
    def consumed_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        # unlabelled_weight = 0 is plain supervised training: no unlabelled input is read.
        if options.get("unlabelled_weight", 1.0) == 0:
            return cls.consumes
        return cls.consumes | {U_INDEX} | cls.unlabelled_keys(options)

    #: multi-phase methods (self-training, data distillation) score the pool at their boundaries
    guard_at_boundaries = False

    ood_keep: Tensor
    ood_score: Tensor
    ood_threshold: Tensor
    ood_refreshes: Tensor
    progress: Tensor

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        data: DataBundle | None = None,
        *,
        unlabelled_weight: float = 1.0,
        guard: OODGuard | None = None,
        ood_start: float = 0.2,
        ood_every: int = 0,
        ema_decay: float | None = None,
        pool_batch_size: int = 256,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if unlabelled_weight < 0:
            raise ValueError(f"method.unlabelled_weight must be >= 0, got {unlabelled_weight}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)
        self.num_classes = num_classes
        self.unlabelled_weight = float(unlabelled_weight)
        self.guard = guard or OODGuard("none")
        self.ood_start, self.ood_every = ood_start, ood_every
        self.pool_batch_size = pool_batch_size
        self.data = data  # plain attribute: datasets are not part of the module state
        self.ema_decay = ema_decay
        self.ema = EMATeacher(self.student()) if ema_decay is not None else None
        pool = self.pool
        n_pool = len(pool) if pool is not None else 0  # type: ignore[arg-type]
        if self.guard.enabled and self.unlabelled_active and pool is None:
            raise ValueError("the OOD guard needs the unlabelled pool (data.info['unlabelled_pool'])")
        # With the guard on nothing is trusted before it has scored the pool.
        self.register_buffer("ood_keep", torch.full((n_pool,), not self.guard.enabled, dtype=torch.bool))
        self.register_buffer("ood_score", torch.zeros(n_pool))
        self.register_buffer("ood_threshold", torch.tensor(float("nan")))
        self.register_buffer("ood_refreshes", torch.zeros((), dtype=torch.long))
        self.register_buffer("progress", torch.zeros(()))  # step / total_steps, for ramp-ups

    # ------------------------------------------------------------------ data access
    @property
    def pool(self) -> Dataset | None:
        return self.data.info.get("unlabelled_pool") if self.data is not None else None

    @property
    def labelled(self) -> Dataset | None:
        return self.data.eval_train if self.data is not None else None

    @property
    def unlabelled_active(self) -> bool:
        return self.unlabelled_weight > 0

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # ------------------------------------------------------------------ models
    def student(self) -> nn.ModuleDict:
        """The trained classifier as one module (shares parameters with ``encoder`` / ``head``)."""
        return nn.ModuleDict({"encoder": self.encoder, "head": self.head})

    def eval_model(self) -> nn.ModuleDict:
        """The classifier that is evaluated: the EMA copy where the method keeps one."""
        return self.ema.module if self.ema is not None else self.student()

    @staticmethod
    def classify(model: nn.ModuleDict, x: Tensor, with_features: bool = False) -> Any:
        """Logits ``[B, C]`` of ``model`` (and the encoder's global features when asked)."""
        feats = global_features(model["encoder"](x))
        logits = model["head"](feats)
        return (logits, feats) if with_features else logits

    def logits(self, x: Tensor) -> Tensor:
        """Student logits."""
        return self.classify(self.student(), x)

    def supervised_loss(self, batch: dict[str, Tensor], logits_l: Tensor | None = None) -> Tensor:
        if logits_l is None:
            logits_l = self.logits(batch["x_l"])
        return F.cross_entropy(logits_l.float(), batch["y_l"].long())

    @staticmethod
    def flat_unlabelled(batch: dict[str, Tensor], key: str) -> Tensor:
        """``[B, mu, ...] -> [B * mu, ...]`` of an unlabelled view, with a clear error when missing."""
        if key not in batch:
            raise KeyError(
                f"this method needs '{key}' in the batch; with semi_shapes set data.strong to "
                "'randaugment' (FixMatch) or 'weak' (Mean Teacher)"
            )
        return batch[key].flatten(0, 1)

    def keep_weights(self, u_index: Tensor) -> Tensor:
        """1 for unlabelled samples the OOD guard keeps, 0 for the rest ``[B * mu]``."""
        return self.ood_keep[u_index.flatten().long()].float()

    # ------------------------------------------------------------------ whole-pool prediction
    @torch.no_grad()
    def predict(
        self,
        dataset: Dataset,
        model: nn.Module | None = None,
        with_features: bool = False,
        batch_size: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(logits [N, C], features [N, D] or None)`` of ``{"input": ...}`` items, in eval mode.

        ``model``: default the evaluation model; ``batch_size``: default ``pool_batch_size``.
        """
        model = model if model is not None else self.eval_model()
        logits, feats = [], []
        loader = DataLoader(dataset, batch_size=batch_size or self.pool_batch_size, shuffle=False)
        with eval_mode(model):
            for batch in loader:
                out = self.classify(model, move_to(batch["input"], self.device), with_features=True)
                logits.append(out[0].float())
                if with_features:
                    feats.append(out[1].float())
        return torch.cat(logits), (torch.cat(feats) if with_features else None)

    def refresh_ood_guard(self, model: nn.Module | None = None) -> GuardResult | None:
        """Score the pool and the labelled set with ``model`` (default: the evaluation model); update
        ``ood_keep``. Returns the decision (None when the guard is off)."""
        if not self.guard.enabled:
            return None
        feats = self.guard.needs_features
        u_logits, u_feats = self.predict(self.pool, model, with_features=feats)
        l_logits, l_feats = self.predict(self.labelled, model, with_features=feats)
        result = self.guard(u_logits, u_feats, l_logits, l_feats)
        self.ood_keep.copy_(result.keep.to(self.ood_keep.device))
        self.ood_score.copy_(result.scores.to(self.ood_score.device))
        self.ood_threshold.fill_(result.threshold)
        self.ood_refreshes += 1
        return result

    def _guard_due(self, step: int, total_steps: int) -> bool:
        if self.guard_at_boundaries or not self.guard.enabled or not self.unlabelled_active:
            return False
        first = max(1, round(self.ood_start * total_steps))
        if step == first:
            return True
        return self.ood_every > 0 and step > first and (step - first) % self.ood_every == 0

    # ------------------------------------------------------------------ trainer hook
    def ema_momentum(self, step: int, total_steps: int) -> float:
        """EMA coefficient after ``step``; constant ``ema_decay`` unless a method says otherwise."""
        return float(self.ema_decay)  # type: ignore[arg-type]

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA update, scheduled guard scoring, then the method's own :meth:`after_step`."""
        self.progress.fill_(step / max(total_steps, 1))
        if self.ema is not None:
            self.ema.update(self.student(), self.ema_momentum(step, total_steps))
        if self._guard_due(step, total_steps):
            self.refresh_ood_guard()
        self.after_step(step, total_steps)

    def after_step(self, step: int, total_steps: int) -> None:
        """Phase switches of multi-phase methods (nothing by default)."""

    # ------------------------------------------------------------------ loss
    def supervised_only(self) -> bool:
        """True while the step trains on the labelled part alone (the baseline, or a teacher phase)."""
        return not self.unlabelled_active

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Cross-entropy on the labelled part while :meth:`supervised_only`, else :meth:`semi_loss`."""
        if self.supervised_only():
            loss = self.supervised_loss(batch)
            return {"loss": loss, "loss_x": loss.detach()}
        return self.semi_loss(batch)

    @abc.abstractmethod
    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The method's loss on a labelled + unlabelled batch: ``{"loss", "loss_x", ...logs}``."""


class PseudoLabelMethod(SemiMethod):
    """A method that trains on a table of pseudo-labels for the whole pool, recomputed at boundaries.

    Buffers ``pseudo_label`` [pool] and ``pseudo_weight`` [pool] (0 = not used) and ``phase`` (0: the
    teacher trains on labelled data only). Subclasses implement :meth:`compute_pseudo_labels` and say
    where the boundaries are (:meth:`boundaries`). ``reinit_student`` restores the encoder and head to
    their initial weights at each boundary (a fresh student); the optimiser state and the learning-rate
    schedule continue (the trainer owns them).
    """

    guard_at_boundaries = True
    pseudo_label: Tensor
    pseudo_weight: Tensor
    phase: Tensor

    def __init__(self, *args: Any, reinit_student: bool = False, student_view: str = "u_weak", **kw: Any):
        super().__init__(*args, **kw)
        n_pool = self.ood_keep.numel()
        self.register_buffer("pseudo_label", torch.zeros(n_pool, dtype=torch.long))
        self.register_buffer("pseudo_weight", torch.zeros(n_pool))
        self.register_buffer("phase", torch.zeros((), dtype=torch.long))
        self.reinit_student = reinit_student
        self.student_view = student_view
        # Initial weights of the student (a CPU copy; not module state, rebuilt identically on resume
        # because the runner seeds before building the encoder).
        self._init_state = (
            {k: v.detach().clone().cpu() for k, v in self.student().state_dict().items()}
            if reinit_student
            else None
        )

    @abc.abstractmethod
    def boundaries(self, total_steps: int) -> list[int]:
        """Steps at which the pseudo-labels are recomputed (round or phase boundaries)."""

    @abc.abstractmethod
    def compute_pseudo_labels(self) -> tuple[Tensor, Tensor]:
        """``(labels [pool], weights [pool])`` from the current model; the guard mask is applied after."""

    def after_step(self, step: int, total_steps: int) -> None:
        if not self.unlabelled_active or step not in self.boundaries(total_steps):
            return
        if self.guard.enabled:
            self.refresh_ood_guard()
        labels, weights = self.compute_pseudo_labels()
        self.pseudo_label.copy_(labels.to(self.pseudo_label.device))
        self.pseudo_weight.copy_(weights.to(self.pseudo_weight.device) * self.ood_keep.float())
        self.phase += 1
        if self._init_state is not None:
            self.student().load_state_dict(self._init_state)

    def supervised_only(self) -> bool:
        return super().supervised_only() or int(self.phase) == 0  # phase 0: the teacher trains

    def semi_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``CE(labelled) + lambda_u * mean_u w_u CE(f(u), yhat_u)`` over the ``B * mu`` unlabelled samples.

        Only samples with ``w_u > 0`` are forwarded (the others contribute 0); the sum is still divided
        by ``B * mu`` so that ``w_u`` acts as a weight, as in FixMatch's masked mean.
        """
        x_l = batch["x_l"]
        u = self.flat_unlabelled(batch, self.student_view)
        idx = batch["u_index"].flatten().long()
        w = self.pseudo_weight[idx]
        used = w > 0
        logits = self.logits(torch.cat([x_l, u[used]]))
        loss_x = self.supervised_loss(batch, logits[: x_l.shape[0]])
        ce_u = F.cross_entropy(logits[x_l.shape[0] :].float(), self.pseudo_label[idx][used], reduction="none")
        loss_u = (ce_u * w[used]).sum() / max(idx.numel(), 1)
        loss = loss_x + self.unlabelled_weight * loss_u
        return {
            "loss": loss,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "used_fraction": used.float().mean(),
        }
