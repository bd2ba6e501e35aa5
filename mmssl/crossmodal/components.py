"""Components of ``mmssl.crossmodal`` by name.

Read by :mod:`mmssl.registry` without importing them.

Each entry maps a recipe name to ``"module:attribute"``; the module is imported only when the name
is looked up. An entry given as ``(target, modality)`` overrides the table's ``MODALITY``.
"""

MODALITY = None

METHODS = {
    "crossmodal_contrastive": "mmssl.crossmodal.method:CrossModalContrastive",
}
EVALUATORS = {
    "modality_few_shot": "mmssl.crossmodal.few_shot:modality_few_shot",
    "retrieval": "mmssl.crossmodal.retrieval:retrieval_evaluator",
}
