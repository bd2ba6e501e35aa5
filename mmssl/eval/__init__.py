"""Modality-free evaluation: kNN, linear probe, N-shot linear probe, fine-tuning.

The registered evaluators are in :mod:`mmssl.eval.evaluators`; the plain functions are exported here for
direct use.
"""

from __future__ import annotations

from mmssl.eval.evaluators import few_shot_evaluator, finetune_evaluator, knn_evaluator, linear_evaluator
from mmssl.eval.features import cached_features, clear_feature_cache, extract_features
from mmssl.eval.few_shot import few_shot_linear, sample_n_shot
from mmssl.eval.finetune import finetune_classifier
from mmssl.eval.knn import knn_accuracy, knn_classify
from mmssl.eval.linear import linear_accuracy, linear_probe_accuracy, train_linear_probe

__all__ = [
    "cached_features",
    "clear_feature_cache",
    "extract_features",
    "few_shot_evaluator",
    "few_shot_linear",
    "finetune_classifier",
    "finetune_evaluator",
    "knn_accuracy",
    "knn_classify",
    "knn_evaluator",
    "linear_accuracy",
    "linear_evaluator",
    "linear_probe_accuracy",
    "sample_n_shot",
    "train_linear_probe",
]
