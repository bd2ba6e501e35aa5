"""Image modality adapter: views, encoders, datasets and image pretext methods.

Components are listed in :mod:`mmssl.modalities.image.components` and imported on first lookup.
"""
