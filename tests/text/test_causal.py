"""Next-token LM: labels are shifted by one, padding is ignored, and the loss is transformers' own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmssl.modalities.text.methods import causal_lm_loss
from mmssl.registry import ENCODERS

V = 50


def _one_hot_logits(targets: torch.Tensor, scale: float = 40.0) -> torch.Tensor:
    return scale * F.one_hot(targets, V).float()


def test_a_model_that_predicts_the_next_token_has_zero_loss():
    ids = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(0))
    # "Copy the next token": the logits at t put all their mass on ids[t + 1] (the last position
    # has no target; give it anything).
    next_tokens = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)
    assert causal_lm_loss(_one_hot_logits(next_tokens), ids).item() < 1e-6
    # Predicting the current token instead (no shift) is wrong wherever consecutive tokens differ.
    assert causal_lm_loss(_one_hot_logits(ids), ids).item() > 10.0


def test_padding_targets_are_ignored():
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[1, 6:] = -100  # padded tail
    next_tokens = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)
    logits = _one_hot_logits(next_tokens)
    logits[1, 5:] = torch.randn(5, V)  # garbage where the targets are padding (positions 6..9)
    assert causal_lm_loss(logits, labels).item() < 1e-6
    # The mean is over the 9 + 5 real targets (row 1 keeps tokens 0..5): the sum over that count.
    garbage = torch.randn(2, 10, V)
    total = causal_lm_loss(garbage, labels, reduction="sum")
    assert torch.allclose(causal_lm_loss(garbage, labels), total / 14)


def test_equals_the_loss_transformers_computes_with_labels_equal_to_inputs():
    torch.manual_seed(0)
    encoder = ENCODERS.build(
        "gpt2_small", vocab_size=V, hidden_size=32, num_layers=1, num_heads=2, dropout=0.0
    )
    encoder.eval()
    ids = torch.randint(2, V, (2, 16))
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    ours = causal_lm_loss(encoder.lm_logits(encoder.hidden_states(ids, mask)), labels)
    reference = encoder.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(ours, reference, atol=1e-5)
