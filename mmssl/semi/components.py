"""Components of ``mmssl.semi`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = "image"

METHODS = {
    "data_distillation": "mmssl.semi.data_distillation:data_distillation",
    "entropy_min": "mmssl.semi.entropy_min:entropy_min",
    "fixmatch": "mmssl.semi.fixmatch:fixmatch",
    "mean_teacher": "mmssl.semi.mean_teacher:mean_teacher",
    "self_training": "mmssl.semi.self_training:self_training",
}
DATASETS = {
    "semi_shapes": "mmssl.semi.data:semi_shapes",
}
EVALUATORS = {
    "classifier_accuracy": ("mmssl.semi.eval:classifier_accuracy", None),
}
