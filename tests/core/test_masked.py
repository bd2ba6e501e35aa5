"""Generic masked model: loss on masked tokens only, normalised targets, what encoder/decoder see."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmssl.core.masked import MaskedDecoder, MaskedModel
from mmssl.core.masking import TokenMasker, block_mask, gather_tokens, random_mask

N, F, D = 10, 6, 8


class ToyEncoder(nn.Module):
    """Tokens are rows of x; a CLS prefix; records what it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(F, D)
        self.pos = nn.Parameter(torch.randn(1, N, D))
        self.cls = nn.Parameter(torch.randn(1, 1, D))
        self.mix = nn.Linear(D, D)
        self.out_dim = D
        self.seen: list[torch.Tensor] = []

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x) + self.pos

    def encode_visible(self, tokens: torch.Tensor) -> torch.Tensor:
        self.seen.append(tokens.detach().clone())
        return self.mix(torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1))


def _model(masker: TokenMasker, norm_target: bool = False) -> MaskedModel:
    encoder = ToyEncoder()
    decoder = MaskedDecoder(D, F, N, embed_dim=16, depth=1, num_heads=2, num_prefix_tokens=1)
    return MaskedModel(
        encoder,
        tokenize=encoder.tokenize,
        encode_visible=encoder.encode_visible,
        targets=lambda x: x,
        decoder=decoder,
        masker=masker,
        norm_target=norm_target,
        input_key="input",
    )


def _manual_loss(pred, target, mask, norm=False, eps=1e-6):
    """Loop over samples and tokens in float64: mean over masked tokens of the per-token MSE."""
    pred, target = pred.detach().double(), target.double()
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if mask[b, n] == 1:
                t = target[b, n]
                if norm:
                    t = (t - t.mean()) / torch.sqrt(t.var(unbiased=True) + eps)
                total += float(((pred[b, n] - t) ** 2).mean())
                count += 1
    return total / count


def test_forward_loss_is_mse_on_masked_tokens_only():
    torch.manual_seed(0)
    model = _model(TokenMasker("block", 0.4, grid=(2, 5), position="center"))
    x = torch.randn(3, N, F)
    loss = model({"input": x})["loss"]
    mask = block_mask(3, (2, 5), 0.4, position="center")  # deterministic: the same mask
    pred, _ = model.reconstruct(x, mask)
    assert loss.item() == pytest.approx(_manual_loss(pred, x, mask.mask), rel=1e-5)
    # Predictions at visible tokens do not matter: no gradient reaches them.
    pred = pred.detach().requires_grad_(True)
    model.loss(pred, x, mask).backward()
    visible = mask.mask == 0
    assert (pred.grad[visible] == 0).all() and (pred.grad[~visible].abs().sum(-1) > 0).all()
    changed = pred.detach().clone()
    changed[visible] += 100.0
    assert model.loss(changed, x, mask).item() == pytest.approx(model.loss(pred.detach(), x, mask).item())


def test_normalised_targets_match_a_per_token_reference_and_ignore_affine_changes():
    torch.manual_seed(1)
    model = _model(TokenMasker("random", 0.6), norm_target=True)
    x = torch.randn(4, N, F)
    mask = random_mask(4, N, 0.6, generator=torch.Generator().manual_seed(0))
    pred, _ = model.reconstruct(x, mask)
    pred = pred.detach()
    assert model.loss(pred, x, mask).item() == pytest.approx(
        _manual_loss(pred, x, mask.mask, norm=True), rel=1e-5
    )
    # Per-token normalisation removes each target token's own offset and (positive) scale.
    scale, shift = torch.rand(4, N, 1) * 5 + 0.5, torch.randn(4, N, 1) * 3
    assert model.loss(pred, x * scale + shift, mask).item() == pytest.approx(
        model.loss(pred, x, mask).item(), rel=1e-3
    )
    model.norm_target = False
    assert model.loss(pred, x * scale + shift, mask).item() != pytest.approx(model.loss(pred, x, mask).item())


def test_encoder_sees_only_the_visible_tokens():
    model = _model(TokenMasker("random", 0.7))
    x = torch.randn(2, N, F)
    mask = random_mask(2, N, 0.7, generator=torch.Generator().manual_seed(3))
    model.reconstruct(x, mask)
    seen = model.encoder.seen[-1]
    assert seen.shape == (2, N - 7, D)
    assert torch.allclose(seen, gather_tokens(model.tokenize(x), mask.ids_keep).detach())


def test_decoder_input_has_every_position_once_with_mask_tokens_and_positions():
    pos = torch.randn(N, D)
    dec = MaskedDecoder(D, F, N, embed_dim=D, depth=1, num_heads=1, pos_embed=pos, num_prefix_tokens=1)
    with torch.no_grad():
        dec.embed.weight.copy_(torch.eye(D))
        dec.embed.bias.zero_()
        dec.mask_token.fill_(7.0)
    captured = {}
    dec.blocks[0].register_forward_pre_hook(lambda mod, args: captured.setdefault("x", args[0].detach()))
    tokens = torch.randn(3, N, D)  # what each original position would hold
    mask = random_mask(3, N, 0.6, generator=torch.Generator().manual_seed(4))
    prefix = torch.randn(3, 1, D)
    out = dec(torch.cat([prefix, gather_tokens(tokens, mask.ids_keep)], dim=1), mask)
    assert out.shape == (3, N, F)
    x = captured["x"]
    assert torch.allclose(x[:, :1], prefix)  # the prefix gets no position
    expected = torch.where(mask.mask.bool().unsqueeze(-1), torch.full_like(tokens, 7.0), tokens) + pos
    assert torch.allclose(x[:, 1:], expected, atol=1e-6)


def test_fixed_positions_are_a_buffer_and_learned_ones_train():
    fixed = MaskedDecoder(D, F, N, embed_dim=8, depth=1, num_heads=2, pos_embed=torch.zeros(N, 8))
    assert "pos_embed" not in dict(fixed.named_parameters()) and "pos_embed" not in fixed.state_dict()
    learned = MaskedDecoder(D, F, N, embed_dim=8, depth=1, num_heads=2)
    assert dict(learned.named_parameters())["pos_embed"].shape == (1, N, 8)
    with pytest.raises(ValueError, match="pos_embed"):
        MaskedDecoder(D, F, N, embed_dim=8, depth=1, num_heads=2, pos_embed=torch.zeros(N + 1, 8))
    with pytest.raises(ValueError, match="prefix"):
        learned(torch.randn(2, 3, D), random_mask(2, N, 0.5))


def test_gradients_reach_encoder_and_mask_token():
    model = _model(TokenMasker("random", 0.5))
    model({"input": torch.randn(4, N, F)})["loss"].backward()
    assert model.encoder.embed.weight.grad.abs().sum() > 0
    assert model.decoder.mask_token.grad.abs().sum() > 0
    with pytest.raises(KeyError, match="views"):
        model({"views": [torch.randn(1), torch.randn(1)]})
