"""Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018): by how much was this image turned?

Every image of the batch is shown in all four rotations, ``rot(x, k * 90°)`` for ``k = 0..3``, in
the same batch (the paper found this better than one random rotation per image), and a classifier
on the encoder's global features predicts ``k``::

    L = -1/(4B) sum_i sum_k log softmax(h(f(rot(x_i, k))))_k

Recognising the rotation requires knowing where objects' tops, bottoms and typical poses are,
which is what makes the features useful. ``rot(x, k)`` is ``torch.rot90(x, k, dims=(-2, -1))``
(counter-clockwise as displayed); label ``k`` means that rotation. The encoder is evaluated
downstream; the classifier ``head`` (an MLP, Linear-BN-ReLU-Linear by default) is dropped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE
from mmssl.modalities.image.methods.pretext import classification_outputs

NUM_ROTATIONS = 4


def rotate_batch(images: Tensor) -> tuple[Tensor, Tensor]:
    """``[B, C, S, S]`` -> all four rotations ``[4B, C, S, S]`` and labels ``[4B]``.

    Row ``k * B + i`` is ``torch.rot90(images[i], k, dims=(-2, -1))`` with label ``k``.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(images.shape[-2:])}")
    rotated = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


class RotationPrediction(Method):
    """RotNet (Gidaris et al. 2018): 4-way rotation prediction over all four rotations of each image
    in the batch (the effective batch is 4x ``train.batch_size``; see the module docstring).
    Registered as ``rotation``.

    Args:
        encoder: backbone returning ``{"global": [N, D]}``.
        data: the run's data bundle (unused).
        head_hidden: hidden width of the rotation classifier on the encoder's global features.
        head_layers: 1 = linear classifier, 2+ = MLP.
    """

    consumes = frozenset({IMAGE})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        head_hidden: int = 256,
        head_layers: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.out_dim, head_hidden, NUM_ROTATIONS, num_layers=head_layers)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images, labels = rotate_batch(batch[IMAGE])
        logits = self.head(self.encoder(images)["global"])
        return classification_outputs(logits, labels)
