"""Text encoders: the toolkit contract, padding-invariant pooling, the LM head is the model's own."""

from __future__ import annotations

import pytest
import torch

from mmssl.registry import ENCODERS

TINY = {
    "vocab_size": 64,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "max_length": 16,
    "dropout": 0.0,
}


@pytest.mark.parametrize("name, pad", [("bert_small", 0), ("gpt2_small", 1)])
def test_contract_and_padding_does_not_change_the_pooled_feature(name, pad):
    torch.manual_seed(0)
    encoder = ENCODERS.build(name, **TINY).eval()
    assert encoder.out_dim == 32 and encoder.pad_token_id == pad
    ids = torch.randint(5, 64, (3, 10))
    out = encoder(ids)
    assert out["global"].shape == (3, 32) and out["tokens"].shape == (3, 10, 32)
    # The same sequences right-padded to 16: the pad tokens are inferred from pad_token_id and
    # neither attended to nor pooled, so the feature does not move.
    padded = torch.cat([ids, torch.full((3, 6), pad)], dim=1)
    assert torch.allclose(encoder(padded)["global"], out["global"], atol=1e-5)
    assert torch.allclose(encoder(padded)["tokens"][:, :10], out["tokens"], atol=1e-5)
    # The pooled feature is the mean of the token features.
    assert torch.allclose(out["global"], out["tokens"].mean(dim=1), atol=1e-6)
    # lm_logits is the exported model's head: identical to the full model's logits.
    assert torch.allclose(encoder.lm_logits(out["tokens"]), encoder.model(input_ids=ids).logits, atol=1e-5)
    with pytest.raises(ValueError, match="max_length"):
        encoder(torch.randint(5, 64, (1, 17)))


def test_attention_direction():
    torch.manual_seed(0)
    ids = torch.randint(5, 64, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1 - 5) % 59 + 5  # another non-special token at the last position
    for name, causal in (("gpt2_small", True), ("bert_small", False)):
        encoder = ENCODERS.build(name, **TINY).eval()
        assert encoder.causal is causal
        a, b = encoder(ids)["tokens"][0, 0], encoder(changed)["tokens"][0, 0]
        # The first token sees the last one only in the bidirectional encoder.
        assert torch.allclose(a, b, atol=1e-6) is causal
