"""Recipe names of ``mmssl.crossmodal``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = None

METHODS = {
    "crossmodal_contrastive": "mmssl.crossmodal.method:CrossModalContrastive",
}
EVALUATORS = {
    "modality_few_shot": "mmssl.crossmodal.few_shot:modality_few_shot",
    "retrieval": "mmssl.crossmodal.retrieval:retrieval_evaluator",
}
