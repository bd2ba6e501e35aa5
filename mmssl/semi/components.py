"""Recipe names of ``mmssl.semi``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = "image"

METHODS = {
    "data_distillation": "mmssl.semi.data_distillation:DataDistillation",
    "entropy_min": "mmssl.semi.entropy_min:EntropyMinimisation",
    "fixmatch": "mmssl.semi.fixmatch:FixMatch",
    "mean_teacher": "mmssl.semi.mean_teacher:MeanTeacher",
    "self_training": "mmssl.semi.self_training:SelfTraining",
}
DATASETS = {
    "semi_folder": "mmssl.semi.folders:semi_folder",
    "semi_shapes": "mmssl.semi.data:semi_shapes",
}
EVALUATORS = {
    "classifier_accuracy": ("mmssl.semi.eval:classifier_accuracy", None),
}
