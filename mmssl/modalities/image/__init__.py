"""Image modality adapter: views, encoders and datasets (importing this registers them)."""

from mmssl.modalities.image import data, encoders, views

__all__ = ["data", "encoders", "views"]
