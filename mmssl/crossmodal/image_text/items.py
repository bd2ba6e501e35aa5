"""Pretraining and held-out items of image–caption pairs, and the image transforms.

Items: ``{"image": float32 [3, S, S] (IMAGENET-normalised), "text": long [L] caption ids, "index": i}``
(no label: pairs are the only supervision). CLIP (Radford et al. 2021, Sec. 2.5) augments images with a
random square crop only; here a random resized crop (area ``crop_scale``, default 0.6-1: the shape must
stay in the picture for its caption to stay true) and a horizontal flip (no caption says left or right).
A picture with several captions (the procedural set writes one per template) shows a random one at each
access during pretraining -- a text-side augmentation -- and always the first on held-out pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mmssl.crossmodal.image_text.keys import TEXT
from mmssl.data.keys import IMAGE, INDEX
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD, eval_transform


def train_image_transform(size: int, crop_scale: Sequence[float] = (0.6, 1.0)) -> v2.Compose:
    """Random resized crop (area ``crop_scale``) + horizontal flip, then scale and IMAGENET normalisation."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(float(crop_scale[0]), float(crop_scale[1])), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
            v2.ToPureTensor(),
        ]
    )


class ImageTextItems(Dataset):
    """``pictures[i] = (uint8 [3, H, W], label)`` with caption ids ``captions[i]`` (long ``[K, L]``: ``K``
    alternatives) -> ``{"image", "text", "index"}``.

    ``transform``: the image transform (:func:`train_image_transform` or the evaluation one);
    ``random_caption``: draw one of the ``K`` captions at each access (else the first).
    """

    def __init__(
        self,
        pictures: Dataset,
        captions: Tensor,
        transform: Callable[[Tensor], Tensor],
        *,
        random_caption: bool = False,
    ) -> None:
        if captions.ndim != 3 or len(captions) != len(pictures):  # type: ignore[arg-type]
            raise ValueError(
                f"captions must be [N, K, L] with N = {len(pictures)} pictures, got {tuple(captions.shape)}"  # type: ignore[arg-type]
            )
        self.pictures, self.captions, self.transform = pictures, captions, transform
        self.random_caption = random_caption

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, _ = self.pictures[index]
        options = self.captions[index]
        k = int(torch.randint(len(options), (1,))) if self.random_caption and len(options) > 1 else 0
        return {IMAGE: self.transform(image), TEXT: options[k], INDEX: index}


def held_out_items(pictures: Dataset, captions: Tensor, image_size: int) -> ImageTextItems:
    """Deterministic pairs (evaluation transform, first caption) for retrieval."""
    return ImageTextItems(pictures, captions, eval_transform(image_size))
