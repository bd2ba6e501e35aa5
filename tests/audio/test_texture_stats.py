"""Sound-texture statistics: the filterbank is a tight frame, and statistics match known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmssl.modalities.audio.texture_stats import (
    GROUPS,
    TextureConfig,
    erb_filterbank,
    erb_to_hz,
    fft_resample,
    hz_to_erb,
    modulation_filterbank,
    standardise_groups,
    subband_envelopes,
    subbands,
    texture_feature_groups,
    texture_statistics,
)

SR = 16000


def test_erb_scale_round_trip_and_known_value() -> None:
    f = np.array([20.0, 1000.0, 8000.0])
    np.testing.assert_allclose(erb_to_hz(hz_to_erb(f)), f)
    assert abs(float(hz_to_erb(1000.0)) - 15.62) < 0.01  # Glasberg & Moore: ~15.6 Cams at 1 kHz


def test_filterbank_squares_sum_to_one_and_centres_are_erb_spaced() -> None:
    n = 8000
    responses, centres = erb_filterbank(n, SR, num_bands=30, low_hz=20, high_hz=10000, edges=True)
    assert responses.shape == (32, n // 2 + 1) and centres.shape == (30,)
    torch.testing.assert_close((responses**2).sum(0), torch.ones(n // 2 + 1, dtype=torch.float64))
    # high_hz above Nyquist is clipped to it; centres equally spaced in ERB between 20 Hz and 8 kHz.
    steps = np.diff(hz_to_erb(centres.numpy()))
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-6)
    np.testing.assert_allclose(steps.mean(), (hz_to_erb(8000.0) - hz_to_erb(20.0)) / 31, rtol=1e-6)
    # Without edge filters the sum is still flat across the passband (first to last centre) ...
    bands, _ = erb_filterbank(n, SR, 30, 20, 10000, edges=False)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    inside = (freqs >= centres[0].item()) & (freqs <= centres[-1].item())
    torch.testing.assert_close((bands**2).sum(0)[inside], torch.ones(int(inside.sum()), dtype=torch.float64))
    # ... and falls off outside it; every band peaks (response 1) at its centre.
    assert (bands**2).sum(0)[freqs < 20].max() == 0
    peak_hz = freqs[bands.argmax(dim=1).numpy()]
    np.testing.assert_allclose(peak_hz, centres.numpy(), atol=SR / n)


def test_parseval_subband_energies_add_up() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12000, generator=g, dtype=torch.float64) * torch.linspace(
        0.1, 2.0, 12000, dtype=torch.float64
    )
    responses, _ = erb_filterbank(x.shape[0], SR, 30, 20, 10000, edges=True)
    energy = subbands(x, responses).pow(2).sum()
    torch.testing.assert_close(energy, x.pow(2).sum(), rtol=1e-9, atol=0)
    # Band-limited check without the edge filters: energy of the bands = energy of the signal
    # filtered to the flat passband, for a signal with no energy outside it.
    bands, centres = erb_filterbank(x.shape[0], SR, 30, 20, 10000, edges=False)
    freqs = torch.from_numpy(np.fft.rfftfreq(x.shape[0], 1 / SR))
    keep = (freqs > centres[0] * 1.05) & (freqs < centres[-1] * 0.95)
    y = torch.fft.irfft(torch.fft.rfft(x) * keep, n=x.shape[0])
    torch.testing.assert_close(subbands(y, bands).pow(2).sum(), y.pow(2).sum(), rtol=1e-9, atol=0)


def test_hilbert_envelope_of_an_am_tone() -> None:
    t = torch.arange(SR, dtype=torch.float64) / SR
    envelope = 1 + 0.5 * torch.cos(2 * math.pi * 5 * t)
    tone = envelope * torch.sin(2 * math.pi * 1000 * t)
    responses, centres = erb_filterbank(SR, SR, 30, 20, 10000, edges=True)
    env = subband_envelopes(tone, responses)
    k = int((centres - 1000).abs().argmin()) + 1  # +1: row 0 is the low-pass edge
    # Rescaled by the filter's gain at 1 kHz, the band's envelope is the modulator.
    gain = responses[k, 1000]  # bin spacing is 1 Hz here
    torch.testing.assert_close(env[k] / gain, envelope, atol=2e-3, rtol=0)


def test_fft_resample_keeps_a_slow_sinusoid() -> None:
    t = torch.arange(16000, dtype=torch.float64) / 16000
    x = 2 + torch.sin(2 * math.pi * 3 * t)
    t2 = torch.arange(400, dtype=torch.float64) / 400
    torch.testing.assert_close(fft_resample(x, 400), 2 + torch.sin(2 * math.pi * 3 * t2), atol=1e-9, rtol=0)


def test_white_noise_matches_gaussian_and_rayleigh_theory() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4 * SR, generator=g, dtype=torch.float64)
    responses, centres = erb_filterbank(x.shape[0], SR, 30, 20, 10000, edges=True)
    sel = centres > 1000  # bands > ~130 Hz wide: hundreds of independent envelope samples in 4 s
    sub = subbands(x, responses[1:-1])[sel]
    z = (sub - sub.mean(1, keepdim=True)) / sub.std(1, keepdim=True)
    kurt = z.pow(4).mean(1)
    assert abs(kurt.mean().item() - 3.0) < 0.1  # subbands of Gaussian noise are Gaussian
    # Uncompressed, full-rate envelopes of Gaussian noise are Rayleigh distributed.
    stats = texture_statistics(x, SR, TextureConfig(envelope_rate=None, compression=1.0))
    cv_theory = math.sqrt(4 / math.pi - 1)  # 0.5227
    skew_theory = 2 * math.sqrt(math.pi) * (math.pi - 3) / (4 - math.pi) ** 1.5  # 0.6311
    kurt_theory = (32 - 3 * math.pi**2) / (4 - math.pi) ** 2  # 3.2451
    assert abs(stats["envelope_cv"][sel].mean().item() - cv_theory) < 0.01
    assert abs(stats["envelope_skew"][sel].mean().item() - skew_theory) < 0.05
    assert abs(stats["envelope_kurtosis"][sel].mean().item() - kurt_theory) < 0.15
    # Independent bands far apart have uncorrelated envelopes.
    corr = stats["envelope_correlation"]
    assert corr.shape == (30 * 29 // 2,) and corr.abs().median() < 0.15


def test_am_tone_differs_from_noise_as_expected() -> None:
    g = torch.Generator().manual_seed(2)
    t = torch.arange(2 * SR, dtype=torch.float64) / SR
    rate = 8.0
    tone = torch.sin(2 * math.pi * 1000 * t) * (1 + torch.sin(2 * math.pi * rate * t))
    noise = torch.randn(2 * SR, generator=g, dtype=torch.float64)
    config = TextureConfig()
    s_tone, s_noise = texture_statistics(tone, SR, config), texture_statistics(noise, SR, config)
    _, centres = erb_filterbank(2 * SR, SR, 30, 20, 10000)
    k = int((centres - 1000).abs().argmin())
    # The modulated tone's envelope varies far more than smoothed noise envelopes.
    assert s_tone["envelope_cv"][k] > 1.5 * s_noise["envelope_cv"][k]
    # Its modulation power peaks in the modulation band(s) around 8 Hz; noise's does not.
    _, mod_centres = modulation_filterbank(800, 400.0, 20, 0.5, 200.0)
    near = (mod_centres - rate).abs().argsort()[:2]
    power_tone = s_tone["modulation_power"].view(30, 20)[k]
    power_noise = s_noise["modulation_power"].view(30, 20)[k]
    assert int(power_tone.argmax()) in near.tolist()
    assert power_tone[near].sum() > 0.8 and power_noise[near].sum() < 0.15
    # Normalised by envelope variance, the powers of a tight frame add up to at most ~1.
    assert power_noise.sum() < 1.05 and power_tone.sum() < 1.05


def test_statistics_are_scale_invariant_and_standardised_groups_weigh_equally() -> None:
    g = torch.Generator().manual_seed(3)
    clips = [
        torch.randn(SR, generator=g) * (1 + 0.5 * torch.sin(torch.arange(SR) / (100.0 + 40 * i)))
        for i in range(6)
    ]
    a = texture_statistics(clips[0], SR)
    b = texture_statistics(clips[0] * 7.0, SR)  # fixed RMS per clip: loudness does not matter
    for key in GROUPS:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    groups = texture_feature_groups(clips, SR)
    assert {k: v.shape[0] for k, v in groups.items()} == dict.fromkeys(GROUPS, 6)
    matrix, scaler = standardise_groups(groups)
    offset = 0
    for key in GROUPS:
        d = groups[key].shape[1]
        block = matrix[:, offset : offset + d]
        # Each group contributes (at most, constant dims give 0) unit variance in total.
        assert block.pow(2).sum(1).mean().item() <= 1 + 1e-9
        offset += d
    again, _ = standardise_groups(groups, scaler)
    torch.testing.assert_close(again, matrix)


def test_silent_clip_is_rejected() -> None:
    with pytest.raises(ValueError, match="silent"):
        texture_statistics(torch.zeros(SR), SR)
