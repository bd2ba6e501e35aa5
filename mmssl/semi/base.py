"""What every semi-supervised method shares: a classifier, the OOD guard, and the two families.

A semi-supervised method is a registered METHOD like any other: the one trainer calls
``forward(batch)`` and, after every optimiser step, ``on_train_step_end(step, total_steps)``. The batch
holds a labelled part (``x_l`` [B, ...], ``y_l`` [B]) and an unlabelled part (``u_weak`` /
``u_strong`` [B, mu, ...], ``u_index`` [B, mu] positions in the unlabelled pool), see
:mod:`mmssl.semi.data`. Nothing here depends on the modality: inputs are whatever the encoder takes.

* ``encoder`` (the backbone, saved for downstream use) and ``head`` (``Linear(out_dim, C)``).
* The OOD guard (:mod:`mmssl.semi.ood`): the unlabelled pool (the dataset's
  :class:`~mmssl.semi.pool.UnlabelledPool`) is scored with the evaluation model and the buffer
  ``ood_keep`` [pool] masks every unlabelled loss.
* :class:`OnlineMethod` (FixMatch, Mean Teacher, entropy minimisation): an unlabelled loss at every
  step, targets from the model being trained; ``ema`` (an :class:`~mmssl.core.momentum.EMATeacher`
  of encoder + head) where the method evaluates an averaged model or uses it as a teacher. With the
  guard on, the unlabelled loss waits for the first scoring (at ``ood.start`` of training, then every
  ``ood.every`` steps), so no unvetted sample is ever used.
* :class:`PseudoLabelMethod` (self-training, data distillation): a pseudo-label table for the whole
  pool, recomputed (and the pool scored) at phase boundaries.
* ``unlabelled_weight = 0`` turns every method into plain supervised training on the labelled part
  (no unlabelled forward, no pool scoring, no phase switches): the supervised-only baseline.

Options are typed dataclasses (:mod:`mmssl.semi.options`). State that changes during training (guard
decisions, pseudo-label tables, phase) lives in buffers, so it is saved in checkpoints and restored on
resume.
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
from mmssl.data.device import move_to
from mmssl.eval.features import eval_mode, global_features
from mmssl.semi.keys import U_INDEX, U_WEAK, X_L, Y_L
from mmssl.semi.ood import GuardResult
from mmssl.semi.options import OnlineOptions, PseudoLabelOptions, SemiOptions, view_key
from mmssl.semi.pool import UnlabelledPool
from mmssl.semi.pseudo_label import sigmoid_rampup


def dataset_labels(dataset: Any) -> Tensor:
    """The labels ``[N]`` of a labelled dataset: its ``targets`` list, else read item by item."""
    targets = getattr(dataset, "targets", None)
    if not targets:
        targets = [int(item["label"]) for item in dataset]
    return torch.as_tensor([int(t) for t in targets])


class SemiMethod(Method, metaclass=abc.ABCMeta):
    """Base class; subclasses implement :meth:`semi_loss` and may override :meth:`after_step`.

    Args:
        encoder: backbone with ``out_dim``; ``forward(x)["global"]`` feeds the head.
        data: the run's :class:`~mmssl.data.DataBundle` (given by the runner): ``num_classes`` sizes
            the head; its :class:`~mmssl.semi.pool.UnlabelledPool` extra and ``eval_train`` (labelled)
            are read when the guard scores the pool or pseudo-labels are recomputed.
        options: :class:`~mmssl.semi.options.SemiOptions` (or a family's / method's subclass).
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

    options: SemiOptions
    ood_keep: Tensor
    ood_score: Tensor
    ood_threshold: Tensor
    ood_refreshes: Tensor
    progress: Tensor

    def __init__(self, encoder: nn.Module, data: DataBundle, options: SemiOptions) -> None:
        super().__init__()
        num_classes = data.num_classes
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        if options.unlabelled_weight < 0:
            raise ValueError(f"method.unlabelled_weight must be >= 0, got {options.unlabelled_weight}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)
        self.num_classes = num_classes
        self.options = options
        self.unlabelled_weight = float(options.unlabelled_weight)
        self.guard = options.ood.make_guard()
        self.data = data  # plain attribute: datasets are not part of the module state
        self.ema: EMATeacher | None = None  # an EMA copy of encoder + head, where a method keeps one
        pool = self.pool
        n_pool = len(pool) if pool is not None else 0  # type: ignore[arg-type]
        if self.guard.enabled and self.unlabelled_active and pool is None:
            data.extra(UnlabelledPool, needed_by=f"the OOD guard of {type(self).__name__}")  # raises
        # With the guard on nothing is trusted before it has scored the pool.
        self.register_buffer("ood_keep", torch.full((n_pool,), not self.guard.enabled, dtype=torch.bool))
        self.register_buffer("ood_score", torch.zeros(n_pool))
        self.register_buffer("ood_threshold", torch.tensor(float("nan")))
        self.register_buffer("ood_refreshes", torch.zeros((), dtype=torch.long))
        self.register_buffer("progress", torch.zeros(()))  # step / total_steps, for ramp-ups

    # ------------------------------------------------------------------ data access
    @property
    def pool(self) -> Dataset | None:
        """The unlabelled pool's dataset (``{"input", "index"}`` items), or None."""
        found = self.data.find_extra(UnlabelledPool)
        return found.dataset if found is not None else None

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
            logits_l = self.logits(batch[X_L])
        return F.cross_entropy(logits_l.float(), batch[Y_L].long())

    def joint_forward(self, batch: dict[str, Tensor], *unlabelled: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The labelled inputs and ``unlabelled`` parts through the student in one forward (BatchNorm
        sees them together, as the reference implementations do): ``(labelled loss, [logits of each
        unlabelled part])``."""
        x_l = batch[X_L]
        logits = self.logits(torch.cat([x_l, *unlabelled]))
        start = x_l.shape[0]
        loss_x = self.supervised_loss(batch, logits[:start])
        parts = []
        for u in unlabelled:
            parts.append(logits[start : start + u.shape[0]])
            start += u.shape[0]
        return loss_x, parts

    def ramped_weight(self, rampup: float) -> float:
        """``unlabelled_weight`` times the sigmoid ramp-up over the first ``rampup`` of training."""
        return self.unlabelled_weight * sigmoid_rampup(float(self.progress), rampup)

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
        loader = DataLoader(dataset, batch_size=batch_size or self.options.pool_batch_size, shuffle=False)
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

    # ------------------------------------------------------------------ trainer hook
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Record the progress (for ramp-ups), then the method's own :meth:`after_step`."""
        self.progress.fill_(step / max(total_steps, 1))
        self.after_step(step, total_steps)

    def after_step(self, step: int, total_steps: int) -> None:
        """What the method does after an optimiser step (EMA update, guard scoring, phase switches)."""

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


class OnlineMethod(SemiMethod):
    """A method whose unlabelled targets come from the model being trained, at every step.

    Keeps ``ema``, an EMA copy of encoder + head, when ``options.ema_decay`` is set (the evaluated
    model, or the teacher); after each step updates it, then scores the pool when the guard's schedule
    says so (``options.ood``: :class:`~mmssl.semi.options.ScheduledOODOptions`).
    """

    options: OnlineOptions

    def __init__(self, encoder: nn.Module, data: DataBundle, options: OnlineOptions) -> None:
        super().__init__(encoder, data, options)
        if options.ema_decay is not None:
            self.ema = EMATeacher(self.student())

    def ema_momentum(self, step: int, total_steps: int) -> float:
        """EMA coefficient after ``step``; constant ``ema_decay`` unless a method says otherwise."""
        return float(self.options.ema_decay)  # type: ignore[arg-type]

    def after_step(self, step: int, total_steps: int) -> None:
        """EMA update, then the scheduled guard scoring."""
        if self.ema is not None:
            self.ema.update(self.student(), self.ema_momentum(step, total_steps))
        if self.guard.enabled and self.unlabelled_active and self.options.ood.due(step, total_steps):
            self.refresh_ood_guard()


class PseudoLabelMethod(SemiMethod):
    """A method that trains on a table of pseudo-labels for the whole pool, recomputed at boundaries.

    Buffers ``pseudo_label`` [pool] and ``pseudo_weight`` [pool] (0 = not used) and ``phase`` (0: the
    teacher trains on labelled data only). Subclasses implement :meth:`compute_pseudo_labels` and say
    where the boundaries are (:meth:`boundaries`); the guard scores the pool at each boundary.
    ``options.reinit_student`` restores the encoder and head to their initial weights at each boundary
    (a fresh student); the optimiser state and the learning-rate schedule continue (the trainer owns
    them). The student trains on the unlabelled view ``options.student_view``.
    """

    options: PseudoLabelOptions
    pseudo_label: Tensor
    pseudo_weight: Tensor
    phase: Tensor

    @classmethod
    def unlabelled_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({view_key(str(options.get("student_view", "weak")), "method.student_view")})

    def __init__(self, encoder: nn.Module, data: DataBundle, options: PseudoLabelOptions) -> None:
        super().__init__(encoder, data, options)
        if self.unlabelled_active:
            data.extra(UnlabelledPool, needed_by=f"{type(self).__name__} (it pseudo-labels the pool)")
        n_pool = self.ood_keep.numel()
        self.register_buffer("pseudo_label", torch.zeros(n_pool, dtype=torch.long))
        self.register_buffer("pseudo_weight", torch.zeros(n_pool))
        self.register_buffer("phase", torch.zeros((), dtype=torch.long))
        self.student_view = view_key(options.student_view, "method.student_view")
        # Initial weights of the student (a CPU copy; not module state, rebuilt identically on resume
        # because the runner seeds before building the encoder).
        self._init_state = (
            {k: v.detach().clone().cpu() for k, v in self.student().state_dict().items()}
            if options.reinit_student
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
        u = self.flat_unlabelled(batch, self.student_view)
        idx = batch[U_INDEX].flatten().long()
        w = self.pseudo_weight[idx]
        used = w > 0
        loss_x, (logits_u,) = self.joint_forward(batch, u[used])
        ce_u = F.cross_entropy(logits_u.float(), self.pseudo_label[idx][used], reduction="none")
        loss_u = (ce_u * w[used]).sum() / max(idx.numel(), 1)
        loss = loss_x + self.unlabelled_weight * loss_u
        return {
            "loss": loss,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "used_fraction": used.float().mean(),
        }
