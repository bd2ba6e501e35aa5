"""Recipe names of ``mmssl.modalities.audio``'s components (the table format: :mod:`mmssl.registry`)."""

MODALITY = "audio"

METHODS = {
    "ambient_sound": ("mmssl.modalities.audio.methods:ambient_sound", "audiovisual"),
    "audio_mae": "mmssl.modalities.audio.mae:audio_mae",
}
ENCODERS = {
    "audio_cnn": "mmssl.modalities.audio.encoders:AudioCNN",
    "audio_vit": "mmssl.modalities.audio.vit:AudioViT",
    "texture_stats": "mmssl.modalities.audio.texture_encoder:TextureStatsEncoder",
}
DATASETS = {
    "audio_folder_csv": "mmssl.modalities.audio.esc50:audio_folder_csv",
    "fsdd": "mmssl.modalities.audio.fsdd:fsdd",
    "procedural_audio": "mmssl.modalities.audio.procedural_clips:procedural_audio",
    "procedural_audio_visual": ("mmssl.modalities.audio.paired:procedural_audio_visual", "audiovisual"),
    "paired_video_audio": ("mmssl.modalities.audio.paired:paired_video_audio", "audiovisual"),
}
EVALUATORS = {
    "ambient_targets": ("mmssl.modalities.audio.methods:ambient_targets_evaluator", "audiovisual"),
}
