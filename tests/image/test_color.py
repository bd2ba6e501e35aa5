"""Colour science for colorization: Lab <-> RGB against known values, ab bins, soft encoding,
rebalancing weights and annealed-mean decoding checked against independent formulas."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.modalities.image.color import (
    ab_gamut_bins,
    annealed_mean,
    lab_to_linear_rgb,
    lab_to_rgb,
    luminance_input,
    nearest_bin,
    rebalance_weights,
    rgb_to_lab,
    smooth_distribution,
    soft_encode,
    to_unit_rgb,
)
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lab_rgb_round_trip(dtype: torch.dtype) -> None:
    rgb = torch.rand(4, 3, 8, 8, dtype=dtype)
    rgb[0, :, 0, 0] = 0.0  # the linear segment of companding and of f near black
    rgb[0, :, 0, 1] = 0.02
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert (back - rgb).abs().max() < 1e-4


@pytest.mark.parametrize(
    "rgb,lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),  # D65 white
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),  # pure sRGB red
        ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),  # pure sRGB green
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),  # pure sRGB blue
        ((0.5, 0.5, 0.5), (53.3890, 0.0, 0.0)),  # neutral grey: a = b = 0 for any level
    ],
)
def test_known_lab_values(rgb: tuple, lab: tuple) -> None:
    got = rgb_to_lab(torch.tensor(rgb, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(got, torch.tensor(lab, dtype=torch.float64), atol=2e-3, rtol=0)


def test_white_is_exactly_neutral() -> None:
    lab = rgb_to_lab(torch.ones(1, 3, 2, 2))
    assert (lab[:, 0] - 100).abs().max() < 1e-4 and lab[:, 1:].abs().max() < 1e-4


def test_channel_dim_and_gamut_flag() -> None:
    rgb = torch.rand(5, 3, dtype=torch.float64)
    torch.testing.assert_close(rgb_to_lab(rgb, dim=-1), rgb_to_lab(rgb.T[:, :, None], dim=0)[..., 0].T)
    # Saturated a at high L is outside sRGB: unclamped linear RGB leaves [0, 1], lab_to_rgb clips.
    lab = torch.tensor([[95.0, 80.0, 0.0]], dtype=torch.float64)
    lin = lab_to_linear_rgb(lab, dim=-1)
    assert (lin > 1).any() or (lin < 0).any()
    assert lab_to_rgb(lab, dim=-1).min() >= 0 and lab_to_rgb(lab, dim=-1).max() <= 1


def test_to_unit_rgb_inverts_normalisation() -> None:
    rgb = torch.rand(2, 3, 4, 4)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(to_unit_rgb((rgb - mean) / std), rgb, atol=1e-6, rtol=0)
    lum = luminance_input((rgb - mean) / std)
    torch.testing.assert_close(lum, (rgb_to_lab(rgb)[:, :1] - 50) / 50, atol=1e-4, rtol=0)


def test_gamut_bins_cover_srgb_and_only_srgb() -> None:
    bins = ab_gamut_bins()
    assert bins.shape == (262, 2)  # grid 10 on the sRGB gamut (Zhang et al. report 313, see docstring)
    assert torch.equal(bins, torch.round(bins / 10) * 10)  # centres on the grid
    assert len(torch.unique(bins, dim=0)) == len(bins)
    # Every colour quantises (nearest centre) to a bin of the set ...
    ab = rgb_to_lab(torch.rand(20000, 3, dtype=torch.float64), dim=-1)[:, 1:]
    cells = torch.round(ab / 10) * 10
    assert (torch.cdist(cells.float(), bins).min(dim=1).values == 0).all()
    # ... and bins far outside the gamut (strong green-blue, strong red-yellow at once) are absent.
    assert not ((bins[:, 0] < -80) & (bins[:, 1] < -80)).any()
    assert ((bins == torch.tensor([0.0, 0.0])).all(dim=1)).any()


def test_soft_encoding_sums_to_one_and_matches_gaussian() -> None:
    bins = ab_gamut_bins()
    ab = torch.randn(2, 2, 3, 3) * 40
    z = soft_encode(ab, bins)
    assert z.shape == (2, len(bins), 3, 3)
    torch.testing.assert_close(z.sum(dim=1), torch.ones(2, 3, 3))
    assert ((z > 0).sum(dim=1) == 5).all()
    assert torch.equal(z.argmax(dim=1), nearest_bin(ab, bins))
    # A pixel at the centre (0, 0): itself at distance 0 and 4 grid neighbours at distance 10.
    z0 = soft_encode(torch.zeros(1, 2, 1, 1), bins, sigma=5.0).flatten()
    expected_centre = 1.0 / (1.0 + 4.0 * math.exp(-100.0 / 50.0))
    assert z0.max().item() == pytest.approx(expected_centre, rel=1e-5)
    assert sorted(z0[z0 > 0].tolist())[0] == pytest.approx(math.exp(-2.0) * expected_centre, rel=1e-5)


def test_smoothing_and_rebalancing_weights() -> None:
    bins = ab_gamut_bins()
    q = len(bins)
    counts = torch.rand(q) ** 4
    prior = smooth_distribution(counts / counts.sum(), bins)
    assert prior.sum().item() == pytest.approx(1.0, abs=1e-6)
    # Smoothing a single bin spreads it as a Gaussian: neighbour / centre = exp(-10^2 / (2 * 5^2)).
    centre = int(nearest_bin(torch.zeros(1, 2, 1, 1), bins))
    right = int(nearest_bin(torch.tensor([0.0, 10.0]).view(1, 2, 1, 1), bins))
    delta = smooth_distribution(torch.nn.functional.one_hot(torch.tensor(centre), q).float(), bins)
    assert (delta[right] / delta[centre]).item() == pytest.approx(math.exp(-2.0), rel=1e-5)

    w = rebalance_weights(prior, lam=0.5)
    assert (prior * w).sum().item() == pytest.approx(1.0, abs=1e-5)  # E_p~[w] = 1
    expected = 1.0 / (0.5 * prior + 0.5 / q)
    torch.testing.assert_close(w / w[0], expected / expected[0], rtol=1e-5, atol=0)
    order = prior.argsort()
    assert (w[order].diff() <= 1e-6).all()  # rarer bins weigh more
    torch.testing.assert_close(rebalance_weights(prior, lam=1.0), torch.ones(q))  # no rebalancing


def test_annealed_mean() -> None:
    bins = ab_gamut_bins()
    logits = torch.randn(2, len(bins), 3, 3)
    probs = torch.softmax(logits, dim=1)
    mean = torch.einsum("bqhw,qc->bchw", probs, bins)
    torch.testing.assert_close(annealed_mean(logits, bins, temperature=1.0), mean, atol=1e-4, rtol=1e-5)
    # T -> 0 is the mode; T = 0.38 is f_T(z) = z^(1/T) / sum z^(1/T) applied to the probabilities.
    mode = bins[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits * 1e4, bins, temperature=1.0), mode)
    sharp = probs ** (1 / 0.38)
    sharp = sharp / sharp.sum(dim=1, keepdim=True)
    torch.testing.assert_close(
        annealed_mean(logits, bins, temperature=0.38),
        torch.einsum("bqhw,qc->bchw", sharp, bins),
        atol=1e-4,
        rtol=1e-5,
    )
