"""Sine-cosine position tables against the formula written out cell by cell."""

import math

import pytest
import torch

from mmssl.core.transformer import sincos_pos_embed, sincos_pos_embed_2d


def reference(embed_dim: int, grid: tuple[int, ...]) -> torch.Tensor:
    per_axis = embed_dim // (2 * len(grid))
    rows = []
    for cell in range(math.prod(grid)):
        coords, rest = [], cell
        for n in reversed(grid):  # row-major: last axis fastest
            coords.append(rest % n)
            rest //= n
        coords.reverse()
        row = []
        for a in coords:
            freqs = [10000 ** (-k / per_axis) for k in range(per_axis)]
            row += [math.sin(a * w) for w in freqs] + [math.cos(a * w) for w in freqs]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("grid", [(7,), (3, 5), (2, 3, 4)])
def test_table_matches_the_formula(grid):
    dim = 12 * len(grid)
    torch.testing.assert_close(sincos_pos_embed(dim, grid), reference(dim, grid))


def test_2d_table_has_a_zero_cls_row_and_square_or_rectangular_grids():
    square = sincos_pos_embed_2d(16, 4)
    assert square.shape == (17, 16) and torch.all(square[0] == 0)
    torch.testing.assert_close(square[1:], reference(16, (4, 4)))
    torch.testing.assert_close(sincos_pos_embed_2d(16, (2, 6), cls_token=False), reference(16, (2, 6)))


def test_width_not_divisible_is_named():
    with pytest.raises(ValueError, match="divisible by 6"):
        sincos_pos_embed(16, (2, 2, 2))
