"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016): which permutation shuffled these 9 tiles?

The image is cut into a 3x3 grid of cells; a tile is a random sub-crop of each cell, so tiles are
separated by a gap (no edge or texture continuation gives the answer away) and wander a little
inside their cell. The tiles are shuffled by one permutation out of a fixed set of ``P``; a shared
trunk embeds each tile (the paper's fc6 per tile), the 9 embeddings are concatenated in shuffled
order, and an MLP predicts the permutation's index (P-way cross-entropy).

The permutation set (:func:`max_hamming_permutations`) is built greedily so that permutations are
far apart: starting from a random permutation, each next one is the permutation of ``S_9`` whose
*minimum* Hamming distance to those already chosen is largest (ties broken at random). Its minimum
pairwise distance is the distance at the last pick (the greedy sequence of picked distances never
increases). The paper uses P = 1000 (out of 9! = 362,880) and an average-distance criterion in its
code; min-distance is the farthest-point version of the same idea and guarantees the minimum.

Shortcut counter-measures, as the paper: tiles never touch (``min_gap`` pixels at least between
neighbours), each colour channel of a tile is cut with its own small spatial jitter (up to
``channel_jitter`` px, against chromatic aberration), some whole puzzles are turned grayscale
(``grayscale_prob``), and every tile is normalised on its own (per channel: zero mean, unit
standard deviation), so that low-level statistics shared by neighbours do not help.

Sizes: on the 64-px procedural images the grid covers 63 px (cells of 21 px, the grid placed at a
random offset of 0-1 px); tiles are 14 px (the paper: 64-px tiles in 75-px cells), so with a minimum
gap of 2 px and channel jitter of 1 px each tile still moves over 4 positions per axis.

The tile trunk IS the method's ``encoder``; downstream it is evaluated on whole images.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE
from mmssl.modalities.image.batch_views import grayscale
from mmssl.modalities.image.color import to_unit_rgb
from mmssl.modalities.image.methods.pretext import (
    classification_outputs,
    crop_patches,
    patch_embedding,
    patch_set_logits,
)


def all_permutations(n: int) -> Tensor:
    """Every permutation of ``0..n-1`` in lexicographic order, ``[n!, n]`` (int8)."""
    flat = np.fromiter(itertools.chain.from_iterable(itertools.permutations(range(n))), dtype=np.int8)
    return torch.from_numpy(flat.reshape(-1, n))


@functools.lru_cache(maxsize=8)
def _greedy_permutations(count: int, num_tiles: int, seed: int) -> tuple[Tensor, int]:
    candidates = all_permutations(num_tiles)
    if not 1 <= count <= len(candidates):
        raise ValueError(
            f"can choose between 1 and {len(candidates)} permutations of {num_tiles}, not {count}"
        )
    # A random order of the candidates: argmax returns the first maximum, so ties are broken at
    # random, and candidate 0 is a random first permutation.
    generator = torch.Generator().manual_seed(seed)
    candidates = candidates[torch.randperm(len(candidates), generator=generator)]
    # holds[i][v][c] = 1 where candidate c has tile v at position i: the number of positions where
    # every candidate agrees with permutation p is sum_i holds[i][p_i] (9 vector additions instead
    # of a 9! x 9 comparison per step).
    values = torch.arange(num_tiles, dtype=candidates.dtype)
    holds = (candidates.unsqueeze(-1) == values).permute(1, 2, 0).to(torch.uint8).contiguous()

    def distance_to(index: int) -> Tensor:  # Hamming distance of every candidate to candidates[index]
        agree = torch.zeros(len(candidates), dtype=torch.uint8)
        for position, tile in enumerate(candidates[index].tolist()):
            agree += holds[position, tile]
        return num_tiles - agree

    chosen = [0]
    # dmin[c]: Hamming distance of candidate c to its nearest chosen permutation (0 once chosen).
    dmin = distance_to(0)
    min_distance = num_tiles
    for _ in range(count - 1):
        pick = int(dmin.argmax())
        min_distance = int(dmin[pick])
        chosen.append(pick)
        dmin = torch.minimum(dmin, distance_to(pick))
    return candidates[chosen].long(), min_distance


def max_hamming_permutations(count: int, num_tiles: int = 9, seed: int = 0) -> tuple[Tensor, int]:
    """``count`` permutations of ``num_tiles`` tiles chosen greedily for large Hamming distance.

    Returns ``(permutations [count, num_tiles] long, min_distance)``, where ``min_distance`` is the
    smallest Hamming distance between two chosen permutations (``num_tiles`` for a single one), as
    guaranteed by the greedy max-min construction (see the module docstring). Deterministic in
    ``seed``; cached (a fresh copy is returned).
    """
    perms, min_distance = _greedy_permutations(int(count), int(num_tiles), int(seed))
    return perms.clone(), min_distance


def sample_tile_corners(
    batch_size: int,
    image_size: int,
    grid: int,
    tile_size: int,
    min_gap: int,
    channel_jitter: int,
    channels: int = 3,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Top-left corners ``[B, grid^2, C]`` (rows, columns) of every tile's colour channels.

    Tiles are in row-major cell order. Within its cell of side ``c = image_size // grid`` a tile's
    corner is uniform in ``[g0 + J, c - t - g1 - J]`` (``g0 = min_gap // 2``, ``g1 = min_gap - g0``),
    and each channel moves by its own uniform ``[-J, J]`` per axis; so every channel of a tile stays
    in ``[g0, c - g1)`` of its cell and neighbouring tiles are at least ``min_gap`` px apart. The
    whole grid (``grid * c`` px) sits at a random offset inside the image.
    """
    cell = image_size // grid
    g0, g1, j = min_gap // 2, min_gap - min_gap // 2, channel_jitter
    lo, hi = g0 + j, cell - tile_size - g1 - j
    if hi < lo:
        raise ValueError(
            f"tiles of {tile_size} px with gap {min_gap} and channel jitter {j} do not fit {cell}-px cells "
            f"({image_size}-px images, {grid}x{grid} grid)"
        )
    n = grid * grid
    cells = torch.arange(n, device=device)
    cell_origin = torch.stack([cells // grid, cells % grid], dim=-1) * cell  # [n, 2] (row, col)
    shift = torch.randint(0, image_size - grid * cell + 1, (batch_size, 1, 2), device=device)
    inside = torch.randint(lo, hi + 1, (batch_size, n, 2), device=device)
    corner = cell_origin + shift + inside  # [B, n, 2]
    per_channel = corner.unsqueeze(2) + torch.randint(-j, j + 1, (batch_size, n, channels, 2), device=device)
    return per_channel[..., 0], per_channel[..., 1]


def normalise_tiles(tiles: Tensor, eps: float = 1.0 / 255.0) -> Tensor:
    """Each channel of each tile ``[..., C, t, t]`` to zero mean and unit standard deviation."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / std.clamp_min(eps)


def shuffle_tiles(tiles: Tensor, order: Tensor) -> Tensor:
    """Reorder tiles ``[B, n, ...]`` so that position ``i`` of puzzle ``b`` holds tile ``order[b, i]``."""
    index = order.view(*order.shape, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    return tiles.gather(1, index)


class Jigsaw(Method):
    """Jigsaw puzzles (Noroozi & Favaro 2016): classify which of ``num_permutations`` maximally
    Hamming-distant permutations shuffled the ``grid x grid`` tiles (see the module docstring).
    Registered as ``jigsaw``.

    Args:
        encoder: the shared tile trunk (returns ``{"global": [N, D]}``); evaluated downstream.
        data: the run's data bundle (unused).
        num_permutations: size P of the permutation set (the classes; 1000 in the paper).
        grid: tiles per side (2 or 3: the permutation search enumerates all of S_n).
        tile_size, min_gap (least distance between neighbouring tiles), channel_jitter (per-channel
            spatial shift): in pixels; the defaults fit 64-px images.
        grayscale_prob: share of puzzles made grayscale (the paper's shortcut counter-measure).
        tile_dim: per-tile embedding (Linear-BN-ReLU, shared: fc6).
        hidden_dim: hidden width of the classifier over the concatenated tiles (fc7 -> fc8).
        permutation_seed: seed of the greedy permutation set.
    """

    consumes = frozenset({IMAGE})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        num_permutations: int = 100,
        grid: int = 3,
        tile_size: int = 14,
        min_gap: int = 2,
        channel_jitter: int = 1,
        grayscale_prob: float = 0.3,
        tile_dim: int = 256,
        hidden_dim: int = 1024,
        permutation_seed: int = 0,
    ) -> None:
        if not 2 <= grid <= 3:
            raise ValueError(
                f"method.grid must be 2 or 3 (the permutation search enumerates all of S_n), got {grid}"
            )
        if math.factorial(grid * grid) < num_permutations:
            raise ValueError(f"only {math.factorial(grid * grid)} permutations of {grid * grid} tiles exist")
        super().__init__()
        self.encoder = encoder
        self.grid, self.tile_size, self.min_gap = grid, tile_size, min_gap
        self.channel_jitter, self.grayscale_prob = channel_jitter, grayscale_prob
        perms, self.min_hamming = max_hamming_permutations(num_permutations, grid * grid, permutation_seed)
        self.register_buffer("permutations", perms)
        self.tile_fc = patch_embedding(encoder.out_dim, tile_dim)
        self.classifier = ProjectionHead(grid * grid * tile_dim, hidden_dim, num_permutations, num_layers=2)

    def make_puzzles(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised images ``[B, 3, S, S]`` -> shuffled normalised tiles ``[B, n, 3, t, t]`` and the
        permutation indices ``[B]``: position ``i`` holds tile ``permutations[label, i]``."""
        b, c, h, w = images.shape
        if h != w:
            raise ValueError(f"jigsaw expects square images, got {h}x{w}")
        rgb = to_unit_rgb(images)
        if self.grayscale_prob > 0:
            rgb = grayscale(rgb, torch.rand(b, device=rgb.device) < self.grayscale_prob)
        top, left = sample_tile_corners(
            b, h, self.grid, self.tile_size, self.min_gap, self.channel_jitter, c, rgb.device
        )
        tiles = normalise_tiles(crop_patches(rgb, top, left, self.tile_size))  # [B, n, C, t, t]
        labels = torch.randint(len(self.permutations), (b,), device=rgb.device)
        return shuffle_tiles(tiles, self.permutations[labels]), labels

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        tiles, labels = self.make_puzzles(batch[IMAGE])
        logits = patch_set_logits(self.encoder, self.tile_fc, self.classifier, tiles)
        return {**classification_outputs(logits, labels), "chance": 1.0 / len(self.permutations)}
