"""Retrieval R@K for image–text pairs: recall on constructed similarity matrices against a brute-force count,
and the evaluator on the procedural held-out pairs against the same count in both directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmssl.crossmodal import recall_at_k, retrieval_evaluator
from mmssl.crossmodal.image_text.datasets import procedural_image_text
from mmssl.data.extras import HeldOutPairs
from mmssl.eval.context import EvalContext


def brute_force_recall(sim: list[list[float]], k: int) -> float:
    """Share of rows whose own column is among the top k, counting every tied or better other column."""
    hits = 0
    for i, row in enumerate(sim):
        better_or_tied = sum(1 for j, s in enumerate(row) if j != i and s >= row[i])
        hits += better_or_tied < k
    return hits / len(sim)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_brute_force_on_random_matrices_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    sim = torch.randint(0, 6, (15, 15), generator=g).float()  # few values: many ties
    ks = (1, 3, 5, 15)
    got_rows, got_cols = recall_at_k(sim, ks), recall_at_k(sim.T, ks)
    for k in ks:
        assert got_rows[k] == pytest.approx(brute_force_recall(sim.tolist(), k))
        assert got_cols[k] == pytest.approx(brute_force_recall(sim.T.tolist(), k))


def test_planted_ranks():
    # Row i's own column is beaten by exactly ranks[i] others (distinct values: no ties).
    ranks = [0, 2, 5, 1, 0, 7, 3, 4]
    n = len(ranks)
    sim = torch.zeros(n, n)
    for i, r in enumerate(ranks):
        others = [j for j in range(n) if j != i]
        for pos, j in enumerate(others):
            sim[i, j] = 100.0 - pos
        sim[i, i] = 100.0 - r + 0.5  # above exactly r of the others
    got = recall_at_k(sim, (1, 2, 5, 8))
    assert got == {k: pytest.approx(sum(r < k for r in ranks) / n) for k in (1, 2, 5, 8)}


class RandomTowers(nn.Module):
    """Image: a fixed random projection of the pixels; text: a fixed random bag of its real tokens."""

    tower_keys = ("image", "text")

    def __init__(self, pixels: int, vocab: int, dim: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(pixels, dim, generator=g))
        self.register_buffer("table", torch.randn(vocab, dim, generator=g))

    def embed(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if key == "image":
            return x.flatten(1) @ self.proj
        return (self.table[x] * (x != 0).unsqueeze(-1)).sum(dim=1)


def test_evaluator_on_held_out_image_text_pairs_matches_brute_force(tmp_path):
    bundle = procedural_image_text(train_size=8, test_size=20, image_size=16, cache_dir=str(tmp_path))
    pairs = bundle.find_extra(HeldOutPairs).dataset
    method = RandomTowers(3 * 16 * 16, int(bundle.stats["vocab_size"]))
    got = retrieval_evaluator(None, bundle, EvalContext(method=method), ks=(1, 5, 10))
    img = torch.stack([method.embed("image", pairs[i]["image"][None])[0] for i in range(len(pairs))])
    txt = torch.stack([method.embed("text", pairs[i]["text"][None])[0] for i in range(len(pairs))])
    cos = [[float(a @ b / (a.norm() * b.norm())) for b in txt] for a in img]
    cos_t = [list(col) for col in zip(*cos)]
    for k in (1, 5, 10):
        assert got[f"ret_image2text_r{k}"] == pytest.approx(brute_force_recall(cos, k), abs=1e-9)
        assert got[f"ret_text2image_r{k}"] == pytest.approx(brute_force_recall(cos_t, k), abs=1e-9)
        assert got[f"ret_chance_r{k}"] == pytest.approx(k / 20)
