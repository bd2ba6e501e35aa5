"""Recall@K on constructed similarities, and the retrieval evaluator in both directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmssl.crossmodal import recall_at_k, retrieval_evaluator, retrieval_ranks
from mmssl.data import DataBundle
from mmssl.data.extras import HeldOutPairs
from mmssl.eval.context import EvalContext
from tests.crossmodal._helpers import ListDataset


def test_identity_similarity_gives_perfect_recall():
    assert recall_at_k(torch.eye(5), ks=(1, 5)) == {1: 1.0, 5: 1.0}


def test_hand_computed_ranks():
    # Row i lists the candidates from best to worst; the correct candidate of row i is column i.
    orders = [[0, 1, 2, 3], [2, 1, 0, 3], [3, 0, 1, 2], [3, 2, 1, 0]]  # ranks 0, 1, 3, 0
    sim = torch.zeros(4, 4)
    for i, order in enumerate(orders):
        for pos, j in enumerate(order):
            sim[i, j] = -pos
    assert retrieval_ranks(sim).tolist() == [0, 1, 3, 0]
    assert recall_at_k(sim, ks=(1, 2, 3, 4)) == {1: 0.5, 2: 0.75, 3: 0.75, 4: 1.0}


def test_ties_count_against_the_query():
    assert recall_at_k(torch.ones(4, 4), ks=(1, 3, 4)) == {1: 0.0, 3: 0.0, 4: 1.0}
    with pytest.raises(ValueError, match="square"):
        retrieval_ranks(torch.zeros(2, 3))


class _IdentityMethod(nn.Module):
    """Two towers that pass their inputs through: the shared-space embedding is the input."""

    tower_keys = ("x", "y")

    def embed(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x


def _bundle(perm: list[int]) -> DataBundle:
    eye = torch.eye(len(perm))
    pairs = ListDataset([{"x": eye[i], "y": eye[perm[i]], "label": 0} for i in range(len(perm))])
    return DataBundle(pretrain=pairs, extras=(HeldOutPairs(pairs),))


def test_evaluator_both_directions_on_a_known_permutation():
    ks = (1, 2, 6)
    ident = retrieval_evaluator(None, _bundle(list(range(6))), EvalContext(method=_IdentityMethod()), ks=ks)
    assert all(ident[f"ret_{d}_r{k}"] == 1.0 for d in ("x2y", "y2x") for k in ks)
    # y_i = e_{perm(i)}: pairs 0 and 5 stay matched, the 4 others point at another item. A moved
    # query scores 0 against its own partner, tied with 4 others: rank 5, found only at K=6.
    perm = [0, 2, 3, 4, 1, 5]
    got = retrieval_evaluator(None, _bundle(perm), EvalContext(method=_IdentityMethod()), ks=ks)
    for direction in ("x2y", "y2x"):
        assert got[f"ret_{direction}_r1"] == pytest.approx(2 / 6)
        assert got[f"ret_{direction}_r2"] == pytest.approx(2 / 6)
        assert got[f"ret_{direction}_r6"] == 1.0
    assert [got[f"ret_chance_r{k}"] for k in ks] == pytest.approx([1 / 6, 2 / 6, 1.0])


def test_directions_rank_rows_and_columns():
    # x_i . y_j: x0 is closest to y0 but y0 is closest to x1, so the two directions rank differently.
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    y = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    pairs = ListDataset([{"x": x[i], "y": y[i]} for i in range(2)])
    got = retrieval_evaluator(
        None,
        DataBundle(pretrain=pairs, extras=(HeldOutPairs(pairs),)),
        EvalContext(method=_IdentityMethod()),
        ks=(1,),
    )
    # sim = [[0.8, 0.0], [0.96, 0.8]]: rows (x->y) ranks [0, 1]; columns (y->x) ranks [1, 0].
    assert got["ret_x2y_r1"] == 0.5 and got["ret_y2x_r1"] == 0.5
    sim = x @ y.T
    assert retrieval_ranks(sim).tolist() == [0, 1] and retrieval_ranks(sim.T).tolist() == [1, 0]


def test_evaluator_errors_name_what_is_missing():
    with pytest.raises(ValueError, match="cross-modal method"):
        retrieval_evaluator(None, _bundle([0, 1]), EvalContext(method=nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="needs HeldOutPairs"):
        retrieval_evaluator(None, DataBundle(pretrain=[]), EvalContext(method=_IdentityMethod()))
