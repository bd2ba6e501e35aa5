"""Image methods that need to know what an image is (importing this registers them)."""

from mmssl.modalities.image.methods import mae

__all__ = ["mae"]
from mmssl.modalities.image.methods import colorization, context, jigsaw, rotation  # noqa: E402

__all__ += ["colorization", "context", "jigsaw", "rotation"]
