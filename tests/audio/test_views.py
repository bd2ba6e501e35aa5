"""Two-view audio crops: gain in dB, background mixing, crop placement, the recipe options, and the default
options reproducing the earlier ``views: crops`` exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from mmssl.data.keys import INDEX, VIEWS
from mmssl.errors import ConfigError
from mmssl.modalities.audio.crops import audio_pretrain_dataset
from mmssl.modalities.audio.io import random_crop
from mmssl.modalities.audio.procedural_clips import procedural_audio
from mmssl.modalities.audio.views import AudioCropViews, AudioViewOptions, ViewDraw, crop_at_offset


class Clips(Dataset):
    """``(wave, label)`` pairs of distinct, recognisable waves: clip ``j`` is constant ``j + 1``."""

    def __init__(self, n: int = 5, length: int = 300) -> None:
        self.waves = [torch.full((length,), float(j + 1)) for j in range(n)]

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, j: int):
        return self.waves[j], 0


def _rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def test_gain_in_db_is_twenty_log10_of_the_amplitude_ratio() -> None:
    views = AudioCropViews(100, AudioViewOptions(gain_db=9.0))
    wave = torch.randn(400)
    torch.manual_seed(0)
    drawn = []
    for _ in range(200):
        draw = views.draw(400)
        view = views.apply(wave, draw)
        crop = crop_at_offset(wave, 100, draw.offset)
        assert math.isclose(20 * math.log10(_rms(view) / _rms(crop)), draw.gain_db, abs_tol=1e-4)
        drawn.append(draw.gain_db)
    assert -9.0 <= min(drawn) < -7.0 and 7.0 < max(drawn) <= 9.0  # spread over [-9, 9] dB


def test_mixing_is_the_documented_convex_combination() -> None:
    views = AudioCropViews(50, AudioViewOptions(gain_db=0.0, mix_ratio=0.4), pool=Clips())
    wave = torch.randn(120)
    noise = torch.randn(50)
    draw = ViewDraw(offset=30, gain_db=6.0, ratio=0.25, noise=noise)
    expected = 0.75 * 10 ** (6 / 20) * wave[30:80] + 0.25 * noise
    assert torch.allclose(views.apply(wave, draw), expected)


def test_background_comes_from_the_pool_at_a_ratio_in_range() -> None:
    pool = Clips(n=5, length=300)
    views = AudioCropViews(100, AudioViewOptions(gain_db=0.0, mix_ratio=0.4), pool=pool)
    torch.manual_seed(0)
    ratios, sources = [], set()
    for _ in range(300):
        draw = views.draw(300)
        assert draw.noise is not None and draw.noise.shape == (100,)
        level = draw.noise.unique()
        assert len(level) == 1 and 1 <= level.item() <= 5  # one whole crop of one pool clip
        sources.add(int(level.item()))
        ratios.append(draw.ratio)
    assert sources == {1, 2, 3, 4, 5} and 0.0 <= min(ratios) < 0.05 and 0.35 < max(ratios) <= 0.4
    wave = torch.zeros(300)  # silent clip: the view is the background alone, scaled by r
    draw = views.draw(300)
    assert torch.allclose(views.apply(wave, draw), draw.ratio * draw.noise)


def test_crops_of_long_and_short_clips() -> None:
    wave = torch.arange(10.0)
    assert torch.equal(crop_at_offset(wave, 4, 3), torch.tensor([3.0, 4, 5, 6]))
    short = crop_at_offset(torch.tensor([1.0, 2.0]), 5, 2)  # a short clip sits at the offset, zero elsewhere
    assert torch.equal(short, torch.tensor([0.0, 0, 1, 2, 0]))
    views = AudioCropViews(8)
    torch.manual_seed(3)
    offsets = {views.draw(3).offset for _ in range(200)}
    assert offsets == set(range(6))  # every placement of 3 samples in a window of 8


def test_default_options_reproduce_the_earlier_gain_crops() -> None:
    """The old ``GainCrops.view``: gain drawn first, then ``random_crop``, gain +-6 dB."""

    def old_view(wave: torch.Tensor, n: int) -> torch.Tensor:
        gain = 10 ** ((torch.rand(()).item() * 2 - 1) * 6.0 / 20)
        return random_crop(wave, n) * gain

    wave = torch.randn(1000)
    for length in (1000, 150):  # longer and shorter than the crop
        torch.manual_seed(7)
        new = AudioCropViews(400)(wave[:length])
        torch.manual_seed(7)
        old = [old_view(wave[:length], 400), old_view(wave[:length], 400)]
        assert all(torch.equal(a, b) for a, b in zip(new, old))


def test_pretraining_items_and_options_through_the_dataset() -> None:
    bundle = procedural_audio(
        num_classes=2,
        train_per_class=2,
        test_per_class=1,
        duration_s=0.5,
        clip_seconds=0.25,
        views="crops",
        view_options={"gain_db": 3.0, "mix_ratio": 0.3},
    )
    item = bundle.pretrain[1]
    assert set(item) == {VIEWS, INDEX} and [v.shape for v in item[VIEWS]] == [(4000,), (4000,)]
    assert bundle.stats["view_options"] == {"gain_db": 3.0, "mix_ratio": 0.3}
    assert bundle.pretrain.views.pool is bundle.eval_train.base  # backgrounds come from the training clips
    with pytest.raises(ConfigError, match="mix_ratio"):
        audio_pretrain_dataset(Clips(), "crops", 10, {"mix_raito": 0.2})
    with pytest.raises(ConfigError, match="needs data.views"):
        audio_pretrain_dataset(Clips(), None, 10, {"gain_db": 2.0})
    with pytest.raises(ConfigError, match="mix_ratio"):
        audio_pretrain_dataset(Clips(), "crops", 10, {"mix_ratio": 1.5})
