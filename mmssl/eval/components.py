"""Recipe names of ``mmssl.eval``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = None

EVALUATORS = {
    "knn": "mmssl.eval.evaluators:knn_evaluator",
    "linear": "mmssl.eval.evaluators:linear_evaluator",
    "few_shot": "mmssl.eval.evaluators:few_shot_evaluator",
    "finetune": "mmssl.eval.evaluators:finetune_evaluator",
}
