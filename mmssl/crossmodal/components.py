"""Recipe names of ``mmssl.crossmodal``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = None

METHODS = {
    "crossmodal_contrastive": "mmssl.crossmodal.method:CrossModalContrastive",
}
DATASETS = {
    "procedural_image_text": ("mmssl.crossmodal.image_text.datasets:procedural_image_text", "image_text"),
    "image_text_pairs": ("mmssl.crossmodal.image_text.datasets:image_text_pairs", "image_text"),
}
EVALUATORS = {
    "modality_few_shot": "mmssl.crossmodal.few_shot:modality_few_shot",
    "retrieval": "mmssl.crossmodal.retrieval:retrieval_evaluator",
    "zero_shot": "mmssl.crossmodal.zero_shot:zero_shot_evaluator",
}
