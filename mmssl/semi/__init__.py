"""Semi-supervised learning on the one trainer: N labels per class plus an unlabelled pool.

Methods (registered in ``METHODS``; each takes ``unlabelled_weight``, 0 = supervised only, and an
optional out-of-domain guard, the nested section ``ood: {guard: ...}``): ``self_training``,
``data_distillation``, ``fixmatch``, ``mean_teacher``, ``entropy_min``. Data (``DATASETS``):
``semi_shapes`` (procedural) and ``semi_folder`` (real image folders, :mod:`mmssl.semi.folders`), whose
bundles carry the :class:`~mmssl.semi.pool.UnlabelledPool`. Evaluation:
``classifier_accuracy`` (``EVALUATORS``). Shared, modality-free pieces: :mod:`mmssl.semi.options`
(typed recipe options), :mod:`mmssl.semi.pseudo_label` (selection variants, masks, entropy, ramp-up),
:mod:`mmssl.semi.ood` (the guard), :mod:`mmssl.semi.base` (classifier, EMA, pool prediction, phases).
"""

from mmssl.semi import data, data_distillation, entropy_min, eval, fixmatch, mean_teacher, self_training
from mmssl.semi.base import OnlineMethod, PseudoLabelMethod, SemiMethod
from mmssl.semi.data_distillation import (
    DataDistillation,
    DataDistillationOptions,
    TTATransform,
    ensemble_predictions,
    image_transforms,
)
from mmssl.semi.entropy_min import EntropyMinimisation, EntropyMinOptions
from mmssl.semi.fixmatch import FixMatch, FixMatchOptions
from mmssl.semi.mean_teacher import MeanTeacher, MeanTeacherOptions
from mmssl.semi.ood import GUARDS, GuardResult, OODGuard, energy_score, knn_distance_score, max_softmax_score
from mmssl.semi.options import (
    OnlineOptions,
    OODOptions,
    PseudoLabelOptions,
    ScheduledOODOptions,
    SemiOptions,
)
from mmssl.semi.pool import UnlabelledPool
from mmssl.semi.pseudo_label import (
    balance_to_prior,
    confidence_mask,
    entropy,
    select_pseudo_labels,
    sigmoid_rampup,
    softmax_mse,
)
from mmssl.semi.self_training import SelfTraining, SelfTrainingOptions

__all__ = [
    "GUARDS",
    "DataDistillation",
    "DataDistillationOptions",
    "EntropyMinOptions",
    "EntropyMinimisation",
    "FixMatch",
    "FixMatchOptions",
    "GuardResult",
    "MeanTeacher",
    "MeanTeacherOptions",
    "OODGuard",
    "OODOptions",
    "OnlineMethod",
    "OnlineOptions",
    "PseudoLabelMethod",
    "PseudoLabelOptions",
    "ScheduledOODOptions",
    "SelfTraining",
    "SelfTrainingOptions",
    "SemiMethod",
    "SemiOptions",
    "UnlabelledPool",
    "TTATransform",
    "balance_to_prior",
    "confidence_mask",
    "data",
    "data_distillation",
    "energy_score",
    "ensemble_predictions",
    "entropy",
    "entropy_min",
    "eval",
    "fixmatch",
    "image_transforms",
    "knn_distance_score",
    "max_softmax_score",
    "mean_teacher",
    "select_pseudo_labels",
    "self_training",
    "sigmoid_rampup",
    "softmax_mse",
]
