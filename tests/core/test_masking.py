"""Token masks: exact counts, permutation bookkeeping, block / tube layouts, unshuffle order."""

from __future__ import annotations

import pytest
import torch

from mmssl.core.masking import (
    TokenMask,
    TokenMasker,
    block_mask,
    block_shape,
    gather_tokens,
    random_mask,
    tube_mask,
    unshuffle,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _all_masks() -> list[tuple[str, TokenMask]]:
    return [
        ("random", random_mask(5, 64, 0.75, generator=_gen())),
        ("random_odd", random_mask(5, 10, 0.7, generator=_gen())),
        ("block_center", block_mask(5, (8, 8), 0.25, position="center")),
        ("block_random", block_mask(5, (6, 9), 0.4, position="random", generator=_gen())),
        ("tube", tube_mask(5, 3, 16, 0.5, generator=_gen())),
    ]


def _check_consistent(m: TokenMask) -> None:
    """keep ∪ masked is a permutation, ``mask`` agrees with the index lists, ids_restore inverts."""
    b, n = m.mask.shape
    arange = torch.arange(n).expand(b, n)
    assert torch.equal(torch.sort(m.ids_shuffle, dim=1).values, arange)  # disjoint and covering
    assert torch.equal(m.ids_shuffle.gather(1, m.ids_restore), arange)  # restore o shuffle = id
    assert torch.equal(m.ids_restore.gather(1, m.ids_shuffle), arange)
    assert (m.mask.gather(1, m.ids_masked) == 1).all() and (m.mask.gather(1, m.ids_keep) == 0).all()
    assert m.num_keep + m.num_masked == n


@pytest.mark.parametrize(
    ("n", "ratio", "expected"), [(64, 0.75, 48), (10, 0.7, 7), (16, 0.5, 8), (7, 0.0, 0), (49, 0.9, 44)]
)
def test_random_mask_keeps_exact_ratio_per_sample(n, ratio, expected):
    m = random_mask(6, n, ratio, generator=_gen(1))
    assert m.ids_keep.shape == (6, n - expected) and m.ids_masked.shape == (6, expected)
    assert m.mask.sum(dim=1).tolist() == [float(expected)] * 6
    _check_consistent(m)


@pytest.mark.parametrize(("name", "m"), _all_masks())
def test_every_mask_kind_is_a_consistent_permutation(name, m):
    _check_consistent(m)
    assert (m.mask.sum(dim=1) == m.num_masked).all(), name


def test_ids_restore_inverts_the_shuffle_of_token_values():
    m = random_mask(3, 12, 0.5, generator=_gen(2))
    x = torch.randn(3, 12, 4)
    shuffled = gather_tokens(x, m.ids_shuffle)
    assert torch.equal(gather_tokens(shuffled, m.ids_restore), x)
    # gather_tokens against an explicit per-sample loop.
    for b in range(3):
        assert torch.equal(gather_tokens(x, m.ids_keep)[b], x[b, m.ids_keep[b]])


def test_random_mask_is_uniform_over_positions_and_reproducible():
    m = random_mask(4000, 16, 0.75, generator=_gen(3))
    freq = m.mask.mean(dim=0)  # each position is masked with probability 0.75
    assert torch.allclose(freq, torch.full((16,), 0.75), atol=0.03)
    assert not torch.equal(m.mask[0], m.mask[1]) or not torch.equal(m.mask[1], m.mask[2])
    again = random_mask(4000, 16, 0.75, generator=_gen(3))
    assert torch.equal(m.ids_keep, again.ids_keep)


def test_unshuffle_gives_every_index_once_in_original_order():
    """What the decoder sees: visible tokens + mask tokens put back in place."""
    for _, m in _all_masks():
        b, n = m.mask.shape
        index_tokens = torch.arange(n, dtype=torch.float32).expand(b, n).unsqueeze(-1)  # value = index
        visible = gather_tokens(index_tokens, m.ids_keep)
        masked = gather_tokens(index_tokens, m.ids_masked)
        full = unshuffle(visible, masked, m.ids_restore)
        assert torch.equal(full, index_tokens)
        # With one shared mask token, masked places hold it and visible ones their own index.
        with_token = unshuffle(visible, torch.full((1, 1, 1), -1.0), m.ids_restore)[..., 0]
        expected = torch.where(m.mask.bool(), torch.tensor(-1.0), index_tokens[..., 0])
        assert torch.equal(with_token, expected)


def _is_4_connected(cells: set[tuple[int, int]]) -> bool:
    start = next(iter(cells))
    seen, stack = {start}, [start]
    while stack:
        r, c = stack.pop()
        for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if nb in cells and nb not in seen:
                seen.add(nb)
                stack.append(nb)
    return seen == cells


@pytest.mark.parametrize(("grid", "ratio"), [((8, 8), 0.25), ((8, 8), 0.3), ((8, 8), 0.75), ((4, 10), 0.45)])
@pytest.mark.parametrize("position", ["center", "random"])
def test_block_mask_is_one_contiguous_block_of_exact_size(grid, ratio, position):
    h, w = grid
    m = block_mask(20, grid, ratio, position=position, generator=_gen(4))
    count = round(ratio * h * w)
    assert m.num_masked == count
    for b in range(20):
        cells = {(int(i) // w, int(i) % w) for i in m.ids_masked[b]}
        assert len(cells) == count and _is_4_connected(cells)
        rows = sorted({r for r, _ in cells})
        cols = sorted({c for _, c in cells})
        assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
        # At most the last row of the bounding box is partial.
        box_w = len(cols)
        assert len(rows) * box_w - count < box_w
        assert all(sum(1 for r, _ in cells if r == row) == box_w for row in rows[:-1])


def test_central_block_is_the_middle_quarter():
    m = block_mask(2, (8, 8), 0.25, position="center")
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1  # Pathak et al.'s central region: half the side, a quarter of the area
    assert torch.equal(m.mask[0].view(8, 8), expected) and torch.equal(m.mask[1], m.mask[0])


def test_random_block_moves_between_samples():
    m = block_mask(50, (8, 8), 0.25, position="random", generator=_gen(5))
    assert len({tuple(row.tolist()) for row in m.mask}) > 5
    assert block_shape((8, 8), 16) == (4, 4) and block_shape((8, 8), 48) == (7, 7)


def _cells_outside_full_windows(mask: torch.Tensor, grid: tuple[int, int], box: tuple[int, int]) -> int:
    """Masked cells of one sample that no fully masked ``box`` window contains (computed by brute force)."""
    (h, w), (bh, bw) = grid, box
    cells = mask.view(h, w).bool()
    covered = torch.zeros_like(cells)
    for r in range(h - bh + 1):
        for c in range(w - bw + 1):
            if cells[r : r + bh, c : c + bw].all():
                covered[r : r + bh, c : c + bw] = True
    return int((cells & ~covered).sum())


@pytest.mark.parametrize(
    ("grid", "ratio", "block_tokens", "box"), [((8, 8), 0.25, 4, (2, 2)), ((6, 9), 0.4, 6, (2, 3))]
)
def test_scattered_blocks_are_a_union_of_small_blocks_of_exact_size(grid, ratio, block_tokens, box):
    h, w = grid
    m = block_mask(200, grid, ratio, position="blocks", block_tokens=block_tokens, generator=_gen(7))
    count = round(ratio * h * w)
    assert m.num_masked == count and (m.mask.sum(dim=1) == count).all()
    pieces = []
    for b in range(200):
        # Whole blocks only, except the one that would overshoot the count (trimmed to its first new cells).
        assert _cells_outside_full_windows(m.mask[b], grid, box) < block_tokens
        cells = {(int(i) // w, int(i) % w) for i in m.ids_masked[b]}
        pieces.append(not _is_4_connected(cells))
    # Several holes, not one: most samples' masked cells fall apart into more than one region, and the
    # layout moves between samples.
    assert sum(pieces) > 100
    assert len({tuple(row.tolist()) for row in m.mask}) > 150


def test_one_scattered_block_of_the_whole_count_is_the_random_block():
    # With blocks as large as the hole, the first block covers it: the same draws give the same mask.
    one = block_mask(30, (8, 8), 0.25, position="random", generator=_gen(8))
    scattered = block_mask(30, (8, 8), 0.25, position="blocks", block_tokens=16, generator=_gen(8))
    assert torch.equal(one.mask, scattered.mask)


def test_tube_mask_is_identical_across_frames():
    t, s = 4, 16
    m = tube_mask(6, t, s, 0.75, generator=_gen(6))
    frames = m.mask.view(6, t, s)
    assert torch.equal(frames, frames[:, :1].expand(6, t, s))
    assert (frames.sum(dim=2) == 12).all() and m.num_masked == t * 12
    assert not torch.equal(frames[0, 0], frames[1, 0])  # but differs between samples


def test_token_masker_dispatches_and_validates():
    assert TokenMasker("random", 0.5)(3, 10).num_masked == 5
    assert TokenMasker("block", 0.25, grid=(4, 4), position="center")(2, 16).num_masked == 4
    assert TokenMasker("tube", 0.5, num_frames=2)(2, 8).mask.view(2, 2, 4)[:, 0].sum() == 4
    with pytest.raises(ValueError, match="mask ratio"):
        TokenMasker("random", 1.5)
    with pytest.raises(ValueError, match="grid"):
        TokenMasker("block", 0.5)
    with pytest.raises(ValueError, match="block_tokens"):
        TokenMasker("block", 0.5, grid=(4, 4), block_tokens=0)
    assert TokenMasker("block", 0.5, grid=(4, 4), position="blocks", block_tokens=2)(3, 16).num_masked == 8
    with pytest.raises(ValueError, match="does not match"):
        TokenMasker("block", 0.5, grid=(4, 4))(2, 10)
