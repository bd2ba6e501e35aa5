"""Image methods that need to know what an image is (importing this registers them)."""

from mmssl.modalities.image.methods import mae

__all__ = ["mae"]
