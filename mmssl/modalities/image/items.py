"""Image-specific pretraining items: uint8 images of one size, for augmentation after collation."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from mmssl.data.keys import IMAGES_UINT8, INDEX
from mmssl.modalities.image.folder import fit_square


class ImageBatchItems(Dataset):
    """``base[i] = (img, label)`` -> ``{"images": img, "index": i}`` with ``img`` uint8 ``[3, S, S]``
    (labels withheld), for batched augmentation after collation
    (:class:`~mmssl.modalities.image.batch_views.BatchViews`).

    Images whose size differs from ``S = image_size`` get the evaluation geometry: shorter side
    resized to ``S`` (antialiased), then the central ``S x S`` square, so images of any size stack
    into one batch. The random resized crop of the batched views then samples from that square:
    at most ``S x S`` source pixels, and nothing outside the centre square of a non-square image
    (the per-sample pipelines crop from the full-resolution image).
    """

    def __init__(self, base: Dataset, image_size: int) -> None:
        self.base, self.image_size = base, image_size

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, _ = self.base[index]
        return {IMAGES_UINT8: fit_square(img, self.image_size), INDEX: index}
