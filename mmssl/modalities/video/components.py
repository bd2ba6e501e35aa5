"""Recipe names of ``mmssl.modalities.video``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = "video"

METHODS = {
    "crw": "mmssl.modalities.video.crw:ContrastiveRandomWalk",
    "dpc": "mmssl.modalities.video.dpc:DensePredictiveCoding",
    "future_cvae": "mmssl.modalities.video.future_cvae:FutureCVAE",
    "videomae": "mmssl.modalities.video.videomae:videomae",
}
ENCODERS = {
    "video_resnet18": "mmssl.modalities.video.encoders:video_resnet18",
    "video_cnn": "mmssl.modalities.video.encoders:video_cnn",
    "video_vit": "mmssl.modalities.video.vit:video_vit",
}
DATASETS = {
    "procedural_videos": "mmssl.modalities.video.datasets:procedural_videos",
    "video_folder": "mmssl.modalities.video.datasets:video_folder",
    "davis": "mmssl.modalities.video.datasets:davis",
}
EVALUATORS = {
    "label_propagation": "mmssl.modalities.video.eval:label_propagation",
}
