"""Recipe names of ``mmssl.modalities.image``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = "image"

METHODS = {
    "colorization": "mmssl.modalities.image.methods.colorization:Colorization",
    "context": "mmssl.modalities.image.methods.context:ContextPrediction",
    "jigsaw": "mmssl.modalities.image.methods.jigsaw:Jigsaw",
    "mae": "mmssl.modalities.image.methods.mae:mae",
    "inpainting": "mmssl.modalities.image.methods.mae:inpainting",
    "rotation": "mmssl.modalities.image.methods.rotation:RotationPrediction",
}
ENCODERS = {
    "resnet18": "mmssl.modalities.image.encoders:resnet18",
    "resnet50": "mmssl.modalities.image.encoders:resnet50",
    "small_cnn": "mmssl.modalities.image.encoders:small_cnn",
    "timm": "mmssl.modalities.image.timm_encoder:timm_encoder",
    "vit_tiny": "mmssl.modalities.image.encoders:vit_tiny",
    "vit_small": "mmssl.modalities.image.encoders:vit_small",
    "vit_base": "mmssl.modalities.image.encoders:vit_base",
    "wide_resnet": "mmssl.modalities.image.wide_resnet:wide_resnet",
}
DATASETS = {
    "procedural_shapes": "mmssl.modalities.image.datasets:procedural_shapes",
    "image_folder": "mmssl.modalities.image.datasets:image_folder",
    "image_files": "mmssl.modalities.image.datasets:image_files",
}
