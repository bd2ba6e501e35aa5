"""VideoMAE on the shared masked core: cube patchify, the tubelet ViT, tube-mask bookkeeping as the
method uses it, per-tube targets and the loss, and the per-frame feature map label propagation reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmssl.data import DataBundle
from mmssl.eval.context import EvalContext
from mmssl.modalities.video.encoders import frame_feature_map
from mmssl.modalities.video.eval import label_propagation
from mmssl.modalities.video.videomae import VideoMAE, tube_targets, videomae
from mmssl.modalities.video.vit import VideoViT, patchify_tubes, unpatchify_tubes, video_vit
from mmssl.registry import ENCODERS, METHODS


def tiny_vit(**kw) -> VideoViT:
    opts = dict(img_size=16, num_frames=4, patch_size=4, embed_dim=24, depth=1, num_heads=2) | kw
    return video_vit(**opts)


def tiny_mae(encoder: VideoViT | None = None, **kw) -> VideoMAE:
    opts = dict(decoder_dim=12, decoder_depth=1, decoder_heads=2) | kw
    return videomae(encoder or tiny_vit(), **opts)


# --------------------------------------------------------------------------------------- cubes


def test_patchify_tubes_matches_a_loop_over_cubes_and_round_trips():
    torch.manual_seed(0)
    clips = torch.randn(2, 4, 3, 8, 12)  # T 4, 8 x 12 px; tubelets 2 x 4 x 4 -> grid 2 x 2 x 3
    tubes = patchify_tubes(clips, patch_size=4, tubelet_size=2)
    assert tubes.shape == (2, 12, 2 * 4 * 4 * 3)
    n = 0
    for tt in range(2):
        for i in range(2):
            for j in range(3):
                cube = clips[
                    :, 2 * tt : 2 * tt + 2, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4
                ]  # [B, t, C, p, p]
                expected = cube.permute(0, 1, 3, 4, 2).reshape(2, -1)  # (frame, row, column, channel)
                torch.testing.assert_close(tubes[:, n], expected)
                n += 1
    torch.testing.assert_close(unpatchify_tubes(tubes, 4, 2, (2, 2, 3)), clips)
    with pytest.raises(ValueError, match="multiple"):
        patchify_tubes(torch.randn(1, 3, 3, 8, 8), 4, 2)


def test_tubelet_embedding_is_a_linear_map_of_each_cube_in_token_order():
    torch.manual_seed(0)
    vit = tiny_vit()
    clips = torch.randn(2, 4, 3, 16, 16)
    tokens, grid = vit.patch_embed(clips)
    assert grid == (2, 4, 4) and tokens.shape == (2, 32, 24)
    # the Conv3d kernel [D, C, t, p, p] as a matrix over the (frame, row, column, channel) layout
    w = vit.patch_embed.proj.weight.permute(0, 2, 3, 4, 1).reshape(24, -1)
    expected = patchify_tubes(clips, 4, 2) @ w.T + vit.patch_embed.proj.bias
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-5)


def test_positions_are_the_3d_sincos_table():
    from mmssl.core.transformer import sincos_pos_embed

    vit = tiny_vit()
    clips = torch.randn(1, 4, 3, 16, 16)
    tokens, _ = vit.tokenize(clips)
    raw, _ = vit.patch_embed(clips)
    torch.testing.assert_close(tokens - raw, sincos_pos_embed(24, (2, 4, 4)).unsqueeze(0).expand_as(raw))
    assert not any(name.endswith("pos_embed") for name in vit.state_dict())  # fixed, not checkpointed


# ----------------------------------------------------------------------------------- tube masking


def test_tube_mask_partitions_the_grid_and_repeats_the_spatial_set():
    model = tiny_mae(mask_ratio=0.75)
    gt, gh, gw = model.grid
    s = gh * gw
    mask = model.masker(5, gt * s, generator=torch.Generator().manual_seed(0))
    assert mask.num_masked == gt * round(0.75 * s) and mask.num_keep == gt * (s - round(0.75 * s))
    for b in range(5):
        keep, masked = set(mask.ids_keep[b].tolist()), set(mask.ids_masked[b].tolist())
        assert not keep & masked and keep | masked == set(range(gt * s))  # a partition of T' x H' x W'
        spatial = [{n % s for n in masked if n // s == t} for t in range(gt)]
        assert all(sp == spatial[0] for sp in spatial)  # the same cells in every time slot
        assert torch.equal(mask.mask[b].nonzero().flatten().sort().values, torch.tensor(sorted(masked)))
        assert torch.equal(mask.ids_shuffle[b][mask.ids_restore[b]], torch.arange(gt * s))


def test_encoder_sees_exactly_the_kept_tubes():
    torch.manual_seed(0)
    model = tiny_mae(mask_ratio=0.75)
    clips = torch.randn(3, 4, 3, 16, 16)
    seen = []
    inner = model.encode_visible
    model.encode_visible = lambda tokens: seen.append(tokens) or inner(tokens)
    mask = model.masker(3, 32, generator=torch.Generator().manual_seed(3))
    pred, used = model.reconstruct(clips, mask)
    assert used is mask and pred.shape == (3, 32, 2 * 4 * 4 * 3)
    (visible,) = seen
    all_tokens = model.encoder.tokenize(clips)[0]
    for b in range(3):
        kept = (mask.mask[b] == 0).nonzero().flatten()  # brute force: where the mask is 0
        assert visible.shape[1] == len(kept) == 2 * 4  # T' (S - round(0.75 S)) = 2 * 4
        order = mask.ids_keep[b]
        assert sorted(order.tolist()) == kept.tolist()
        torch.testing.assert_close(visible[b], all_tokens[b, order])


def test_loss_is_mse_on_masked_tubes_of_per_channel_normalised_cubes():
    torch.manual_seed(0)
    model = tiny_mae(mask_ratio=0.5)
    clips = torch.randn(2, 4, 3, 16, 16)
    target = tube_targets(clips, 4, 2)
    # every channel of every cube standardised over its t p p = 32 voxels
    per_channel = target.reshape(2, 32, 32, 3)
    torch.testing.assert_close(per_channel.mean(dim=2), torch.zeros(2, 32, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(dim=2), torch.ones(2, 32, 3), atol=1e-4, rtol=0)
    torch.manual_seed(5)
    loss = model({"clip": clips})["loss"]
    torch.manual_seed(5)  # the same mask again (the masker draws from the global generator)
    pred, mask = model.reconstruct(clips)
    per_token = ((pred - target) ** 2).mean(dim=-1)
    expected = sum(per_token[b, n] for b in range(2) for n in range(32) if mask.mask[b, n]) / mask.mask.sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None


def test_cls_pooling_adds_one_prefix_token():
    torch.manual_seed(0)
    model = tiny_mae(tiny_vit(global_pool="cls"))
    assert model.decoder.num_prefix_tokens == 1
    assert torch.isfinite(model({"clip": torch.randn(2, 4, 3, 16, 16)})["loss"])
    out = model.encoder(torch.randn(2, 4, 3, 16, 16))
    assert out["global"].shape == (2, 24) and out["tokens"].shape == (2, 32, 24)


# ---------------------------------------------------------------------------------- the encoder


def test_clip_and_frame_outputs_and_feature_map():
    torch.manual_seed(0)
    vit = tiny_vit().eval()
    clips = torch.randn(2, 4, 3, 16, 16)
    out = vit(clips)
    assert out["global"].shape == (2, 24) and out["tokens"].shape == (2, 32, 24) and out["grid"] == (4, 4)
    torch.testing.assert_close(out["global"], out["tokens"].mean(dim=1))  # mean pooling
    frames = torch.randn(3, 3, 16, 16)
    fmap = frame_feature_map(vit, frames)
    assert fmap.shape == (3, 24, 4, 4) and vit.stride == 4
    # a frame is encoded as a still clip of num_frames copies, time slots averaged per cell
    still = vit(frames.unsqueeze(1).expand(-1, 4, -1, -1, -1))["tokens"].reshape(3, 2, 16, 24).mean(dim=1)
    torch.testing.assert_close(fmap, still.transpose(1, 2).reshape(3, 24, 4, 4))
    # other frame sizes get their own positions (DAVIS frames are not the training size)
    assert frame_feature_map(vit, torch.randn(1, 3, 22, 30)).shape == (1, 24, 5, 7)


def test_construction_errors_name_the_fix():
    with pytest.raises(ValueError, match="divisible by 6"):
        video_vit(embed_dim=100, num_heads=2)
    with pytest.raises(ValueError, match="video_vit"):
        videomae(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="clip_len"):
        videomae(tiny_vit(), DataBundle(pretrain=range(2), stats={"clip_len": 8, "frame_size": [16, 16]}))
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_mae(mask_ratio=1.0)


def test_registered():
    assert METHODS.modality_of("videomae") == "video" and ENCODERS.modality_of("video_vit") == "video"
    assert isinstance(ENCODERS.build("video_vit", depth=1), VideoViT)


DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video" / "DAVIS"


@pytest.mark.skipif(
    not (DAVIS / "JPEGImages" / "480p" / "blackswan").is_dir(), reason=f"DAVIS sample not found: {DAVIS}"
)
def test_label_propagation_runs_with_video_vit_on_real_davis_frames():
    # 64-px short side: 64 x 114 frames, whose width is not a multiple of the 8-px patch (8 x 14 cells)
    torch.manual_seed(0)
    encoder = video_vit(img_size=64, num_frames=4, patch_size=8, embed_dim=24, depth=1, num_heads=2)
    out = label_propagation(
        encoder,
        DataBundle(pretrain=[]),
        EvalContext(),
        root=str(DAVIS),
        sequences=["blackswan"],
        frame_size=64,
        max_frames=4,
        n_context=3,
        radius=3,
        raw_color=False,
    )
    assert 0.0 <= out["jf_mean"] <= 1.0 and 0.0 <= out["j_mean"] <= 1.0
