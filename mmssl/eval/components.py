"""Components of ``mmssl.eval`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = None

EVALUATORS = {
    "knn": "mmssl.eval.evaluators:knn_evaluator",
    "linear": "mmssl.eval.evaluators:linear_evaluator",
    "few_shot": "mmssl.eval.evaluators:few_shot_evaluator",
    "finetune": "mmssl.eval.evaluators:finetune_evaluator",
}
