"""SpecAugment (Park et al. 2019): exactly the drawn bands are masked (with the example's mean), the draws
respect the policy's bounds, nothing changes in eval mode, and the encoders mask only while training."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.encoders import build_encoder
from mmssl.errors import ConfigError
from mmssl.modalities.audio.encoders import AudioCNN
from mmssl.modalities.audio.spec_augment import SpecAugment, SpecAugmentOptions, SpecMasks
from mmssl.modalities.audio.vit import AudioViT

POLICY = {"freq_masks": 2, "freq_width": 5, "time_masks": 3, "time_width": 7}


def _masked_by_loops(spec: torch.Tensor, masks: SpecMasks) -> torch.Tensor:
    """Reference: walk every drawn band cell by cell, fill with the example's mean."""
    out = spec.clone()
    for b in range(spec.shape[0]):
        mean = spec[b].mean()
        for start, width in masks.freq[b].tolist():
            for f in range(start, start + width):
                out[b, 0, f, :] = mean
        for start, width in masks.time[b].tolist():
            for t in range(start, start + width):
                out[b, 0, :, t] = mean
    return out


def test_apply_masks_exactly_the_drawn_bands_with_the_example_mean() -> None:
    torch.manual_seed(0)
    spec = torch.randn(6, 1, 16, 30) * 3 + 2
    aug = SpecAugment(POLICY)
    masks = aug.draw(6, 16, 30, generator=torch.Generator().manual_seed(1))
    out = aug.apply(spec, masks)
    assert torch.equal(out, _masked_by_loops(spec, masks))
    covered = masks.cells(16, 30)
    # untouched outside the bands; some cells are masked at all (the draw is not degenerate)
    assert torch.equal(out[:, 0][~covered], spec[:, 0][~covered]) and covered.any()


def test_drawn_bands_respect_the_policy_bounds() -> None:
    aug = SpecAugment({**POLICY, "time_ratio": 0.2})
    masks = aug.draw(500, 16, 30, generator=torch.Generator().manual_seed(2))
    assert masks.freq.shape == (500, 2, 2) and masks.time.shape == (500, 3, 2)
    fw, tw = masks.freq[..., 1], masks.time[..., 1]
    time_bound = min(7, math.floor(0.2 * 30))  # T' = min(T, floor(p * tau)) = 6
    assert fw.min() == 0 and fw.max() == 5 and tw.min() == 0 and tw.max() == time_bound
    assert (masks.freq[..., 0] >= 0).all() and (masks.freq.sum(-1) <= 16).all()
    assert (masks.time[..., 0] >= 0).all() and (masks.time.sum(-1) <= 30).all()
    # widths uniform on {0..F}: every value is drawn, each about 1/6 of the time
    counts = torch.bincount(fw.flatten(), minlength=6).float() / fw.numel()
    assert (counts - 1 / 6).abs().max() < 0.04


def test_a_band_wider_than_the_axis_is_clipped() -> None:
    masks = SpecAugment({"freq_masks": 1, "freq_width": 50}).draw(200, 8, 10)
    assert masks.freq[..., 1].max() <= 8 and (masks.freq.sum(-1) <= 8).all()


def test_eval_mode_and_empty_policy_are_the_identity() -> None:
    spec = torch.randn(4, 1, 16, 30)
    aug = SpecAugment(POLICY)
    aug.eval()
    assert aug(spec) is spec
    off = SpecAugment(None).train()
    assert off(spec) is spec and not off.options.enabled
    aug.train()
    assert not torch.equal(aug(spec), spec)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="freq_width"):
        SpecAugmentOptions(freq_masks=1, freq_width=-1)
    with pytest.raises(ValueError, match="time_ratio"):
        SpecAugmentOptions(time_ratio=1.5)
    with pytest.raises(ConfigError, match="freq_width"):  # a typo in a recipe fails at build, named
        build_encoder("audio_cnn", {"spec_augment": {"freq_widht": 4}})


def _cnn(spec_augment: SpecAugmentOptions | None) -> AudioCNN:
    return AudioCNN(n_mels=16, widths=(8, 16), spec_augment=spec_augment)


def _vit(spec_augment: SpecAugmentOptions | None) -> AudioViT:
    return AudioViT(n_mels=16, depth=1, embed_dim=32, num_heads=2, spec_augment=spec_augment)


@pytest.mark.parametrize("make", [_cnn, _vit])
def test_encoders_mask_the_log_mel_in_training_only(make) -> None:
    torch.manual_seed(0)
    plain = make(None)
    masked = make(SpecAugmentOptions(freq_masks=2, freq_width=8, time_masks=2, time_width=20))
    masked.load_state_dict(plain.state_dict())  # SpecAugment adds no parameters or buffers
    wave = torch.randn(3, 8000)
    plain.eval(), masked.eval()
    assert torch.equal(plain(wave)["global"], masked(wave)["global"])  # evaluation: never masked
    seen = []
    masked.spec_augment.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    masked.train()
    masked(wave)
    before, after = seen[0]
    log_mel = plain.frontend(wave)
    assert torch.equal(before, log_mel[..., : before.shape[-1]])  # it acts on the log-mel itself
    changed = after != before
    fill = before.mean(dim=(1, 2, 3), keepdim=True).expand_as(before)
    assert changed.any() and torch.equal(after[changed], fill[changed])
