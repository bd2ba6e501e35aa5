"""Audio-MAE on ``audio_vit``: spectrogram patch bookkeeping (patchify round trip, visible / masked
partition, the encoder sees exactly the kept patches), positions, the loss, and the builder's checks."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.core.masking import TokenMask, random_mask
from mmssl.errors import ConfigError
from mmssl.modalities.audio.encoders import AudioCNN
from mmssl.modalities.audio.keys import AUDIO
from mmssl.modalities.audio.mae import AudioMAE, audio_mae
from mmssl.modalities.audio.procedural_clips import procedural_audio
from mmssl.modalities.audio.vit import AudioViT, patchify_spectrogram, unpatchify_spectrogram

SR, CLIP = 8000, 4000  # half a second at 8 kHz: 1 + 4000 // 80 = 51 frames -> 48 kept, 6 patch columns


def _vit(**kw) -> AudioViT:
    opts = dict(sample_rate=SR, n_fft=256, hop_length=80, n_mels=16, patch_size=8, embed_dim=32, depth=2)
    return AudioViT(**{**opts, "num_heads": 2, **kw})


def _mae(encoder: AudioViT | None = None, ratio: float = 0.8) -> AudioMAE:
    torch.manual_seed(0)
    return audio_mae(encoder or _vit(), mask_ratio=ratio, decoder_dim=16, decoder_heads=2, clip_samples=CLIP)


def test_patchify_matches_a_loop_and_round_trips() -> None:
    spec = torch.randn(2, 1, 16, 24)
    patches = patchify_spectrogram(spec, 4)
    rows, cols = 4, 6
    assert patches.shape == (2, rows * cols, 16)
    for r in range(rows):
        for c in range(cols):
            block = spec[:, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(2, 16)
            assert torch.equal(patches[:, r * cols + c], block)  # row-major over (frequency, time)
    assert torch.equal(unpatchify_spectrogram(patches, 4, (rows, cols)), spec)
    with pytest.raises(ValueError):
        patchify_spectrogram(torch.randn(1, 1, 16, 22), 4)


def test_grid_and_positions_follow_the_clip_and_the_sincos_formula() -> None:
    vit = _vit()
    assert vit.num_frames(CLIP) == 48 and vit.grid_for(CLIP) == (2, 6)
    spec = vit.eval().spectrogram(torch.randn(3, CLIP))
    assert spec.shape == (3, 1, 16, 48)
    pos = vit.positions((2, 6), spec)
    d4 = 32 // 4
    omega = 1.0 / 10000 ** (torch.arange(d4, dtype=torch.float64) / d4)
    assert torch.equal(pos[0], torch.zeros(32))  # CLS: no position
    for r in range(2):
        for c in range(6):
            want = torch.cat([(r * omega).sin(), (r * omega).cos(), (c * omega).sin(), (c * omega).cos()])
            assert torch.allclose(pos[1 + r * 6 + c].double(), want, atol=1e-6)
    longer = vit(torch.randn(2, 2 * CLIP))  # any clip length: a wider grid, positions computed for it
    assert longer["tokens"].shape == (2, vit.grid_for(2 * CLIP)[0] * vit.grid_for(2 * CLIP)[1], 32)
    assert longer["global"].shape == (2, 32)


def test_visible_and_masked_indices_partition_the_grid() -> None:
    n = 2 * 6
    mask = random_mask(5, n, 0.8, generator=torch.Generator().manual_seed(0))
    assert mask.num_masked == round(0.8 * n) and mask.num_keep == n - round(0.8 * n)
    for b in range(5):
        keep, hidden = set(mask.ids_keep[b].tolist()), set(mask.ids_masked[b].tolist())
        assert not keep & hidden and keep | hidden == set(range(n))
        assert mask.mask[b].nonzero().flatten().tolist() == sorted(hidden)


def test_the_encoder_sees_exactly_the_kept_patches() -> None:
    model = _mae().eval()
    spec = model.encoder.spectrogram(torch.randn(3, CLIP))
    mask = random_mask(3, 12, 0.8, generator=torch.Generator().manual_seed(1))
    seen: list[torch.Tensor] = []
    original = model.encode_visible

    def spy(tokens: torch.Tensor) -> torch.Tensor:
        seen.append(tokens)
        return original(tokens)

    model.encode_visible = spy
    pred, _ = model.reconstruct(spec, mask)
    tokens = model.encoder.tokenize(spec)
    expected = torch.stack([tokens[b, mask.ids_keep[b]] for b in range(3)])
    assert len(seen) == 1 and torch.equal(seen[0], expected)
    # Changing the spectrogram under masked patches changes nothing the decoder sees; a visible patch does.
    rows, cols, p = 2, 6, 8
    hidden_cells = torch.zeros(3, 1, 16, 48, dtype=torch.bool)
    for b in range(3):
        for n in mask.ids_masked[b].tolist():
            r, c = divmod(n, cols)
            hidden_cells[b, 0, r * p : (r + 1) * p, c * p : (c + 1) * p] = True
    noisy = torch.where(hidden_cells, spec + 5 * torch.randn_like(spec), spec)
    assert torch.equal(model.reconstruct(noisy, mask)[0], pred)
    nudged = torch.where(hidden_cells, spec, spec + 1.0)
    assert not torch.allclose(model.reconstruct(nudged, mask)[0], pred)
    assert rows * cols == mask.num_tokens


def test_loss_is_the_mse_of_normalised_target_patches_on_masked_ones_only() -> None:
    model = _mae().eval()
    spec = model.encoder.spectrogram(torch.randn(2, CLIP))
    mask = random_mask(2, 12, 0.8, generator=torch.Generator().manual_seed(2))
    pred, _ = model.reconstruct(spec, mask)
    target = patchify_spectrogram(spec, 8)
    total, count = 0.0, 0
    for b in range(2):
        for n in mask.ids_masked[b].tolist():
            t = target[b, n]
            t = (t - t.mean()) / (t.var(unbiased=True) + 1e-6).sqrt()  # MAE's norm_pix_loss
            total += ((pred[b, n] - t) ** 2).mean().item()
            count += 1
    assert math.isclose(model.loss(pred, target, mask).item(), total / count, rel_tol=1e-5)


def test_training_step_reaches_encoder_and_decoder() -> None:
    model = _mae().train()
    out = model({AUDIO: torch.randn(4, CLIP)})
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert (
        model.encoder.patch_embed.weight.grad.abs().sum() > 0 and model.decoder.pred.weight.grad is not None
    )
    assert not any(
        p.requires_grad for p in model.encoder.input_norm.parameters()
    )  # targets are not learnable
    with pytest.raises(ValueError, match="patch grid"):
        model({AUDIO: torch.randn(4, 2 * CLIP)})


def test_builder_checks_encoder_and_data() -> None:
    with pytest.raises(ConfigError, match="audio_vit"):
        audio_mae(AudioCNN(n_mels=16), clip_samples=CLIP)
    with pytest.raises(ConfigError, match="spec_augment"):
        audio_mae(_vit(spec_augment={"time_masks": 1, "time_width": 5}), clip_samples=CLIP)
    with pytest.raises(ConfigError, match="mask_ratio"):
        audio_mae(_vit(), mask_ratio=1.0, clip_samples=CLIP)
    common = dict(num_classes=2, train_per_class=1, test_per_class=1, duration_s=0.6, sample_rate=SR)
    single = procedural_audio(**common, clip_seconds=0.5)
    torch.manual_seed(5)
    model = audio_mae(_vit(), single, decoder_dim=16, decoder_heads=2)  # grid read from the data
    torch.manual_seed(5)
    given = audio_mae(_vit(), decoder_dim=16, decoder_heads=2, clip_samples=CLIP)
    assert model.grid == given.grid == (2, 6)
    # reading a (randomly cropped) item leaves the random stream as it was: the same initial weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), given.state_dict().values()))
    with pytest.raises(ConfigError, match="views: null"):
        audio_mae(_vit(), procedural_audio(**common, clip_seconds=0.5, views="crops"))


def test_a_given_mask_object_is_used_as_is() -> None:
    model = _mae().eval()
    spec = model.encoder.spectrogram(torch.randn(1, CLIP))
    masked = torch.zeros(1, 12, dtype=torch.bool)
    masked[0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]] = True
    mask = TokenMask.from_bool(masked)
    _, used = model.reconstruct(spec, mask)
    assert used is mask and used.ids_keep.tolist() == [[10, 11]]
