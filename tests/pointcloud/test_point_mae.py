"""Point-MAE: the group-masking bookkeeping (visible + masked partition the groups, the encoder sees exactly
the visible ones, the loss uses exactly the masked ones), the decoder, the encoder's outputs, and a few
steps that lower the Chamfer loss."""

from __future__ import annotations

import pytest
import torch

from mmssl.core.masked import MaskedModel
from mmssl.core.masking import gather_tokens, random_mask
from mmssl.modalities.pointcloud.chamfer import chamfer_distance
from mmssl.modalities.pointcloud.point_mae import PointMAE, scale_and_shift
from mmssl.modalities.pointcloud.point_transformer import PointTransformer
from mmssl.registry import ENCODERS, METHODS

G, K = 10, 8
SMALL = dict(num_groups=G, group_size=K, embed_dim=32, depth=2, num_heads=4, embed_dims=(16, 16, 32))


def _model(seed: int = 0, mask_ratio: float = 0.6) -> PointMAE:
    torch.manual_seed(seed)
    encoder = PointTransformer(**SMALL)
    return PointMAE(encoder, mask_ratio=mask_ratio, decoder_dim=32, decoder_depth=1, decoder_heads=4)


def _points(b: int = 3, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_registered_and_a_masked_model() -> None:
    assert METHODS.get("point_mae") is PointMAE
    assert ENCODERS.get("point_transformer") is PointTransformer
    assert isinstance(_model(), MaskedModel)
    with pytest.raises(ValueError, match="point_transformer"):
        PointMAE(ENCODERS.get("dgcnn")(k=4, edge_dims=[8], global_dim=8, point_dims=[8]))


def test_visible_and_masked_groups_partition_the_groups() -> None:
    model = _model().eval()
    groups = model.tokenize(_points())
    _, mask = model.reconstruct(groups, generator=torch.Generator().manual_seed(1))
    assert mask.num_tokens == G and mask.num_masked == round(0.6 * G) and mask.num_keep == G - mask.num_masked
    for b in range(3):
        keep, masked = set(mask.ids_keep[b].tolist()), set(mask.ids_masked[b].tolist())
        assert keep.isdisjoint(masked) and keep | masked == set(range(G))
        assert mask.mask[b].nonzero().flatten().tolist() == sorted(masked)


def test_encoder_sees_exactly_the_visible_groups() -> None:
    model = _model().eval()
    groups = model.tokenize(_points())
    tokens, positions = model.encoder.embed(groups)
    seen = {}

    def spy(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        seen["tokens"], seen["positions"] = t, p
        return model.encoder.encode_visible(t, p)

    model.encode_visible = spy
    mask = random_mask(3, G, 0.6, torch.Generator().manual_seed(2))
    model.reconstruct(groups, mask)
    torch.testing.assert_close(seen["tokens"], gather_tokens(tokens, mask.ids_keep))
    torch.testing.assert_close(seen["positions"], gather_tokens(positions, mask.ids_keep))
    # and nothing of a masked group's points reaches the prediction but its centre: changing the masked
    # neighbourhoods (not their centres) leaves every prediction unchanged.
    with torch.no_grad():
        before, _ = model.reconstruct(groups, mask)
        changed = groups.neighbourhoods.clone()
        for b in range(3):
            changed[b, mask.ids_masked[b]] += torch.randn(mask.num_masked, K, 3)
        groups.neighbourhoods = changed
        after, _ = model.reconstruct(groups, mask)
    torch.testing.assert_close(before, after)


def test_loss_uses_exactly_the_masked_groups() -> None:
    model = _model()
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, G, K, 3, generator=g), torch.randn(2, G, K, 3, generator=g)
    mask = random_mask(2, G, 0.6, g)
    loss = model.loss(pred, target, mask)
    # brute force: mean over (sample, masked group) of the Chamfer distance of that group
    want = torch.stack(
        [
            chamfer_distance(pred[b, i][None], target[b, i][None])
            for b in range(2)
            for i in mask.ids_masked[b].tolist()
        ]
    ).mean()
    torch.testing.assert_close(loss, want)
    visible_changed = pred.clone()
    for b in range(2):
        visible_changed[b, mask.ids_keep[b]] = 100.0
    torch.testing.assert_close(model.loss(visible_changed, target, mask), loss)
    masked_changed = pred.clone()
    masked_changed[0, mask.ids_masked[0, 0]] += 1.0
    assert not torch.allclose(model.loss(masked_changed, target, mask), loss)


def test_forward_loss_is_the_chamfer_of_the_reconstruction_and_trains() -> None:
    model = _model(mask_ratio=0.5)
    x = _points(4, 64, seed=5)
    model.eval()  # no augmentation: the forward equals loss(reconstruct) with the same mask
    torch.manual_seed(0)
    got = model({"points": x})["loss"]
    torch.manual_seed(0)
    groups = model.tokenize(x)
    pred, mask = model.reconstruct(groups)
    torch.testing.assert_close(got, model.loss(pred, groups.neighbourhoods, mask))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(25):
        loss = model({"points": x})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_decoder_predicts_every_group_in_group_order() -> None:
    model = _model().eval()
    groups = model.tokenize(_points())
    mask = random_mask(3, G, 0.6, torch.Generator().manual_seed(6))
    pred, _ = model.reconstruct(groups, mask)
    assert pred.shape == (3, G, K, 3)
    # Permuting the visible tokens' order (the same set) does not change any prediction: the decoder puts
    # them back by ids_restore.
    from mmssl.core.masking import TokenMask

    flipped = TokenMask.from_order(torch.cat([mask.ids_keep.flip(1), mask.ids_masked], 1), mask.num_keep)
    with torch.no_grad():
        again, _ = model.reconstruct(groups, flipped)
    torch.testing.assert_close(pred, again, rtol=1e-4, atol=1e-5)


def test_encoder_outputs_and_point_order() -> None:
    torch.manual_seed(0)
    enc = PointTransformer(**SMALL, feature_layers=[0, 1]).eval()
    x = _points(2, 50, seed=7)
    out = enc(x)
    assert enc.out_dim == 64
    assert out["tokens"].shape == (2, 50, 64) and out["global"].shape == (2, 64)
    assert out["group_tokens"].shape == (2, G, 64) and out["centres"].shape == (2, G, 3)
    torch.testing.assert_close(out["global"], out["group_tokens"].amax(1))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(8))
    permuted = enc(x[:, perm])
    torch.testing.assert_close(permuted["tokens"], out["tokens"][:, perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(permuted["global"], out["global"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="feature_layers"):
        PointTransformer(**SMALL, feature_layers=[2])
    with pytest.raises(ValueError, match="xyz only"):
        PointTransformer(in_channels=6)


def test_scale_and_shift_ranges() -> None:
    x = torch.ones(200, 1, 3)
    out = scale_and_shift(torch.zeros_like(x), 0.5, 2.0, 0.2, torch.Generator().manual_seed(9))
    assert out.abs().max() <= 0.2  # a zero cloud only shifts
    scaled = scale_and_shift(x, 0.5, 2.0, 0.0, torch.Generator().manual_seed(9))
    assert scaled.min() >= 0.5 and scaled.max() <= 2.0
    assert (scaled[:, 0, 0] - scaled[:, 0, 1]).abs().max() > 0.01  # per axis
