"""Semi-supervised learning on the one trainer: N labels per class plus an unlabelled pool.

Methods (registered in ``METHODS``; each takes ``unlabelled_weight``, 0 = supervised only, and an
optional out-of-domain guard ``ood_guard``): ``self_training``, ``data_distillation``, ``fixmatch``,
``mean_teacher``, ``entropy_min``. Data: ``semi_shapes`` (``DATASETS``). Evaluation:
``classifier_accuracy`` (``EVALUATORS``). Shared, modality-free pieces: :mod:`mmssl.semi.pseudo_label`
(selection variants, masks, entropy, ramp-up), :mod:`mmssl.semi.ood` (the guard),
:mod:`mmssl.semi.base` (classifier, EMA, pool prediction, phases).
"""

from mmssl.semi import data, data_distillation, entropy_min, eval, fixmatch, mean_teacher, self_training
from mmssl.semi.base import PseudoLabelMethod, SemiMethod
from mmssl.semi.data_distillation import (
    DataDistillation,
    TTATransform,
    ensemble_predictions,
    image_transforms,
)
from mmssl.semi.entropy_min import EntropyMinimisation
from mmssl.semi.fixmatch import FixMatch
from mmssl.semi.mean_teacher import MeanTeacher
from mmssl.semi.ood import GUARDS, GuardResult, OODGuard, energy_score, knn_distance_score, max_softmax_score
from mmssl.semi.pseudo_label import (
    balance_to_prior,
    confidence_mask,
    entropy,
    select_pseudo_labels,
    sigmoid_rampup,
    softmax_mse,
)
from mmssl.semi.self_training import SelfTraining

__all__ = [
    "GUARDS",
    "DataDistillation",
    "EntropyMinimisation",
    "FixMatch",
    "GuardResult",
    "MeanTeacher",
    "OODGuard",
    "PseudoLabelMethod",
    "SelfTraining",
    "SemiMethod",
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
