"""Token masks for masked modelling, with the index bookkeeping an encoder/decoder pair needs.

A mask over ``N`` tokens splits them into ``K`` visible and ``M = N - K`` masked ones. As in MAE
(He et al. 2022, Sec. 3) the split is stored as a permutation of ``0..N-1``::

    ids_shuffle = cat(ids_keep, ids_masked)     # [B, N], visible first
    ids_restore = argsort(ids_shuffle)          # [B, N], its inverse

The encoder sees ``gather_tokens(x, ids_keep)`` only; the decoder appends one mask token per masked
position and puts every token back in its original place with :func:`unshuffle`
(``cat(visible, mask_tokens)[ids_restore]``), so it sees each index exactly once, in order.

Every sample of a batch masks the same number of tokens ``M = round(ratio * N)``, so the visible
tokens form a rectangular ``[B, K, D]`` tensor without padding. Three layouts:

- :func:`random_mask`: a uniformly random subset per sample, drawn as MAE does: argsort of uniform
  noise, the first ``K`` of the order are kept.
- :func:`block_mask`: one contiguous block on an ``h x w`` token grid (context-encoder inpainting,
  Pathak et al. 2016), at the centre or at a random position per sample; or several smaller
  blocks at random, possibly overlapping positions (Pathak et al.'s "random block", their Sec. 3.3).
- :func:`tube_mask`: one random spatial mask repeated over all ``T`` frames of ``T x S`` tokens
  (VideoMAE's tube masking, Tong et al. 2022), so a masked patch cannot be copied from a
  neighbouring frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MASK_KINDS = ("random", "block", "tube")
BLOCK_POSITIONS = ("center", "random", "blocks")


@dataclass
class TokenMask:
    """Which tokens of each sample are visible and which are masked.

    Attributes:
        ids_keep: [B, K] int64, indices of the visible tokens (the encoder's input order).
        ids_masked: [B, M] int64, indices of the masked tokens.
        ids_restore: [B, N] int64, inverse of ``cat(ids_keep, ids_masked)``.
        mask: [B, N] float, 1 where the token is masked, 0 where visible.

    Invariant: for every sample ``cat(ids_keep, ids_masked)`` is a permutation of ``0..N-1``.
    """

    ids_keep: Tensor
    ids_masked: Tensor
    ids_restore: Tensor
    mask: Tensor

    @property
    def num_tokens(self) -> int:
        return self.ids_restore.shape[1]

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]

    @property
    def num_masked(self) -> int:
        return self.ids_masked.shape[1]

    @property
    def ids_shuffle(self) -> Tensor:
        """[B, N]: the visible indices, then the masked ones."""
        return torch.cat([self.ids_keep, self.ids_masked], dim=1)

    def to(self, device: torch.device | str) -> TokenMask:
        parts = (self.ids_keep, self.ids_masked, self.ids_restore, self.mask)
        return TokenMask(*(t.to(device) for t in parts))

    @classmethod
    def from_order(cls, ids_shuffle: Tensor, num_keep: int) -> TokenMask:
        """A mask from a per-sample order of all tokens ``[B, N]``: the first ``num_keep`` stay visible."""
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep, ids_masked = ids_shuffle[:, :num_keep], ids_shuffle[:, num_keep:]
        mask = torch.ones(ids_shuffle.shape, device=ids_shuffle.device)
        mask.scatter_(1, ids_keep, 0.0)
        return cls(ids_keep, ids_masked, ids_restore, mask)

    @classmethod
    def from_bool(cls, masked: Tensor) -> TokenMask:
        """A mask from a boolean ``[B, N]`` tensor (True = masked), equal counts in every row.

        Visible and masked indices each keep their ascending order.
        """
        counts = masked.sum(dim=1)
        if masked.ndim != 2 or (counts != counts[0]).any():
            raise ValueError("from_bool needs a [B, N] mask with the same number of masked tokens per row")
        # A stable sort on 0/1 puts the visible tokens first, each group in index order.
        ids_shuffle = torch.sort(masked.to(torch.uint8), dim=1, stable=True).indices
        return cls.from_order(ids_shuffle, masked.shape[1] - int(counts[0]))


def num_masked_tokens(num_tokens: int, ratio: float) -> int:
    """``M = round(ratio * N)``: the exact number of tokens every sample masks."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    return min(num_tokens, max(0, int(round(ratio * num_tokens))))


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    # Draw on the generator's own device (a CPU generator cannot fill a CUDA tensor), then move.
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def random_mask(
    batch: int,
    num_tokens: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TokenMask:
    """MAE's per-sample random masking: argsort uniform noise, keep the first ``N - M`` tokens.

    Every subset of size ``M = round(ratio * N)`` is equally likely; the visible tokens come in the
    (random) order of the noise, which a transformer with positional embeddings does not see.
    """
    keep = num_tokens - num_masked_tokens(num_tokens, ratio)
    ids_shuffle = torch.argsort(_uniform((batch, num_tokens), generator, device), dim=1)
    return TokenMask.from_order(ids_shuffle, keep)


def block_shape(grid: tuple[int, int], num_masked: int) -> tuple[int, int]:
    """Bounding box ``(bh, bw)`` of a block of exactly ``num_masked`` tokens on an ``h x w`` grid.

    The box is as close to the grid's aspect ratio as the count allows: ``bh ~ sqrt(M h / w)``,
    ``bw = ceil(M / bh)`` (capped at ``w``), then ``bh = ceil(M / bw)``, so ``bh * bw - M < bw``.
    """
    h, w = grid
    if num_masked <= 0:
        return 0, 0
    bh = min(h, max(1, int(round(math.sqrt(num_masked * h / w)))))
    bw = min(w, math.ceil(num_masked / bh))
    bh = math.ceil(num_masked / bw)
    return bh, bw


def _block_offsets(grid: tuple[int, int], count: int) -> tuple[Tensor, Tensor, int, int]:
    """Row and column offsets ``[count]`` of a block of ``count`` tokens from its top-left corner,
    and its bounding box ``(bh, bw)``: the box of :func:`block_shape` filled row by row, first
    ``count`` cells."""
    bh, bw = block_shape(grid, count)
    offsets = torch.arange(bh * bw)[:count] if count else torch.zeros(0, dtype=torch.long)
    return offsets // max(bw, 1), offsets % max(bw, 1), bh, bw


def _random_corners(
    batch: int, grid: tuple[int, int], box: tuple[int, int], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Top-left corners ``[B, 1]`` (row, column) of a ``bh x bw`` box drawn uniformly inside the grid."""
    (h, w), (bh, bw) = grid, box
    top = (_uniform((batch, 1), generator, "cpu") * (h - bh + 1)).long().clamp(max=h - bh)
    left = (_uniform((batch, 1), generator, "cpu") * (w - bw + 1)).long().clamp(max=w - bw)
    return top, left


def block_mask(
    batch: int,
    grid: tuple[int, int],
    ratio: float,
    position: str = "random",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    block_tokens: int = 4,
) -> TokenMask:
    """Blocks of ``M = round(ratio * h * w)`` tokens in all per sample on an ``h x w`` grid.

    Tokens are numbered row-major (``n = row * w + col``), as a ViT's patch sequence.

    ``position``:

    - ``"center"``: one block in the middle of the grid (Pathak et al.'s central region);
    - ``"random"``: one block whose top-left corner is drawn uniformly per sample;
    - ``"blocks"``: Pathak et al.'s "random block" (Sec. 3.3: a number of smaller, possibly
      overlapping blocks, so that no single large hole's boundary is there to latch onto): blocks
      of ``block_tokens`` tokens are dropped at uniformly drawn corners, all samples at once, until
      their union holds ``M`` tokens. The paper covers "up to" a quarter; here every sample masks
      exactly ``M`` (the encoder's input must be rectangular), so the block that would overshoot
      adds only its first new cells in row-major order.

    How one block's count stays exact: a rectangle ``bh x bw`` rarely holds exactly ``M`` tokens
    (``M`` may be prime), so the block fills its ``bh x bw`` bounding box (see :func:`block_shape`)
    row by row and stops after ``M`` tokens: all rows are full except possibly the last, which holds
    ``M - (bh - 1) * bw >= 1`` tokens from the left. The region is therefore 4-connected and its
    bounding box is ``bh x bw``; when ``M = bh * bw`` (e.g. 16 of 8x8) it is a plain rectangle.
    """
    if position not in BLOCK_POSITIONS:
        raise ValueError(f"block position must be one of {BLOCK_POSITIONS}, got '{position}'")
    h, w = int(grid[0]), int(grid[1])
    m = num_masked_tokens(h * w, ratio)
    if position == "blocks":
        return _scattered_blocks(batch, (h, w), m, block_tokens, generator).to(device)
    rel_r, rel_c, bh, bw = _block_offsets((h, w), m)
    if position == "center":
        top = torch.full((batch, 1), (h - bh) // 2)
        left = torch.full((batch, 1), (w - bw) // 2)
    else:
        top, left = _random_corners(batch, (h, w), (bh, bw), generator)
    cells = (top + rel_r) * w + (left + rel_c)  # [B, m]
    masked = torch.zeros(batch, h * w, dtype=torch.bool)
    masked.scatter_(1, cells, True)
    return TokenMask.from_bool(masked.to(device))


def _scattered_blocks(
    batch: int, grid: tuple[int, int], num_masked: int, block_tokens: int, generator: torch.Generator | None
) -> TokenMask:
    """The ``"blocks"`` layout of :func:`block_mask`, on the CPU."""
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be at least 1, got {block_tokens}")
    h, w = grid
    rel_r, rel_c, bh, bw = _block_offsets(grid, min(block_tokens, h * w))
    masked = torch.zeros(batch, h * w, dtype=torch.bool)
    need = torch.full((batch, 1), num_masked)
    # Every cell lies in some placement of the box, so each round adds a cell to every unfinished
    # sample with positive probability: the loop ends (a few rounds at a quarter of the grid).
    while bool((need > 0).any()):
        top, left = _random_corners(batch, grid, (bh, bw), generator)
        block = torch.zeros_like(masked).scatter_(1, (top + rel_r) * w + (left + rel_c), True)
        new = block & ~masked
        added = new & (new.long().cumsum(dim=1) <= need)  # the first `need` new cells, row-major
        masked |= added
        need -= added.sum(dim=1, keepdim=True)
    return TokenMask.from_bool(masked)


def tube_mask(
    batch: int,
    num_frames: int,
    num_spatial: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TokenMask:
    """The same random spatial mask for every frame of ``T x S`` tokens (frame-major: ``n = t * S + s``).

    ``round(ratio * S)`` spatial positions are masked in every frame, so ``M = T * round(ratio * S)``.
    """
    spatial = random_mask(batch, num_spatial, ratio, generator=generator, device=device)
    masked = spatial.mask.bool().repeat(1, num_frames)  # [B, T * S], frame t is columns t*S .. t*S+S-1
    return TokenMask.from_bool(masked)


@dataclass
class TokenMasker:
    """A masking recipe: ``masker(batch, num_tokens, device, generator)`` -> :class:`TokenMask`.

    ``kind``: ``random`` (MAE), ``block`` (inpainting; needs ``grid``; ``position`` and
    ``block_tokens`` as in :func:`block_mask`) or ``tube`` (video; needs ``num_frames``; the spatial
    size is ``num_tokens // num_frames``).
    """

    kind: str = "random"
    ratio: float = 0.75
    grid: tuple[int, int] | None = None
    position: str = "random"
    block_tokens: int = 4
    num_frames: int = 1

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"mask kind must be one of {MASK_KINDS}, got '{self.kind}'")
        num_masked_tokens(1, self.ratio)  # validates the ratio
        if self.kind == "block" and self.grid is None:
            raise ValueError("a block mask needs the token grid (h, w)")
        if self.block_tokens < 1:
            raise ValueError(f"block_tokens must be at least 1, got {self.block_tokens}")

    def __call__(
        self,
        batch: int,
        num_tokens: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> TokenMask:
        if self.kind == "random":
            return random_mask(batch, num_tokens, self.ratio, generator, device)
        if self.kind == "block":
            h, w = self.grid  # type: ignore[misc]
            if h * w != num_tokens:
                raise ValueError(f"block mask grid {h}x{w} does not match {num_tokens} tokens")
            return block_mask(
                batch, (h, w), self.ratio, self.position, generator, device, block_tokens=self.block_tokens
            )
        if num_tokens % self.num_frames:
            raise ValueError(f"{num_tokens} tokens do not split into {self.num_frames} frames")
        return tube_mask(batch, self.num_frames, num_tokens // self.num_frames, self.ratio, generator, device)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """``x[b, ids[b]]`` for every sample: ``[B, N, *rest]`` and ``[B, K]`` -> ``[B, K, *rest]``."""
    index = ids.reshape(*ids.shape, *([1] * (x.ndim - 2))).expand(*ids.shape, *x.shape[2:])
    return torch.gather(x, 1, index)


def unshuffle(tokens_keep: Tensor, mask_tokens: Tensor, ids_restore: Tensor) -> Tensor:
    """Put visible tokens and mask tokens back in the original order.

    Args:
        tokens_keep: [B, K, D] tokens of the visible positions, in ``ids_keep`` order.
        mask_tokens: [B, M, D], or anything broadcastable to it (e.g. one learned ``[1, 1, D]`` token).
        ids_restore: [B, N] from the :class:`TokenMask` (N = K + M).

    Returns:
        [B, N, D] where position ``n`` holds the token of original index ``n``.
    """
    b, k, d = tokens_keep.shape
    m = ids_restore.shape[1] - k
    full = torch.cat([tokens_keep, mask_tokens.expand(b, m, d).to(tokens_keep.dtype)], dim=1)
    return gather_tokens(full, ids_restore)
