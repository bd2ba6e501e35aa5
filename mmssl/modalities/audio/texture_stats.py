"""Sound-texture statistics (McDermott & Simoncelli, Neuron 2011): clip summaries for ambient-sound targets.

A clip is normalised to unit RMS (loudness is not a texture property), then split by a cochlear
filterbank and summarised by statistics of its subband envelopes:

1. **Cochlear filterbank** (:func:`erb_filterbank`): ``num_bands`` half-cosine filters in the frequency
   domain, equally spaced on the ERB-number scale ``E(f) = 21.4 log10(1 + 0.00437 f)`` (Glasberg &
   Moore 1990) between ``low_hz`` and ``high_hz``; neighbours overlap by half, so their squared
   responses sum to one between the first and last centre, and a low-pass and a high-pass edge
   filter make the sum one everywhere (``edges=True``): the bank is a tight frame, so subband
   energies add up to the signal energy (Parseval).
2. **Envelopes**: the magnitude of each subband's analytic signal (Hilbert envelope), downsampled to
   ``envelope_rate`` (400 Hz, by spectrum truncation) and compressed with an exponent of 0.3 (as the
   cochlea compresses).
3. **Statistics** per band ``k`` of the compressed envelope ``e_k(t)`` (mean ``mu_k``, std ``sigma_k``):

   - ``envelope_mean``: ``mu_k`` (the spectral envelope);
   - ``envelope_cv``: ``sigma_k / mu_k`` (square root of McDermott's ``M2 = var / mean^2``);
   - ``envelope_skew``: ``E[(e - mu)^3] / sigma^3``; ``envelope_kurtosis``: ``E[(e - mu)^4] / sigma^4``;
   - ``envelope_correlation``: Pearson correlation ``C_jk`` of ``e_j`` and ``e_k`` for every ``j < k``;
   - ``modulation_power``: the envelope's power in ``num_mod_bands`` octave-spaced modulation bands
     (half-cosine on a log2 axis, ``0.5-200`` Hz), divided by the envelope's variance:
     ``M_k,n = sum_t b_k,n(t)^2 / sum_t (e_k(t) - mu_k)^2``.

Across a dataset each group is standardised (per dimension, statistics from the training clips) and
divided by ``sqrt(group size)`` so every group weighs the same in Euclidean distance
(:func:`standardise_groups`); 435 correlations would otherwise drown 30 means.

For Gaussian noise a subband is Gaussian and its (uncompressed, un-smoothed) envelope is Rayleigh:
``cv = sqrt(4 / pi - 1) = 0.523``, skew ``0.631``, kurtosis ``3.245``; the tests use these values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

GROUPS: tuple[str, ...] = (
    "envelope_mean",
    "envelope_cv",
    "envelope_skew",
    "envelope_kurtosis",
    "envelope_correlation",
    "modulation_power",
)


@dataclass(frozen=True)
class TextureConfig:
    """Parameters of :func:`texture_statistics` (defaults: METHODS.md / McDermott & Simoncelli).

    ``high_hz`` and ``mod_high_hz`` are clipped to the Nyquist frequency of the signal they filter.
    ``envelope_rate=None`` keeps envelopes at the audio rate; ``compression=1`` leaves them linear.
    """

    num_bands: int = 30
    low_hz: float = 20.0
    high_hz: float = 10000.0
    envelope_rate: int | None = 400
    compression: float = 0.3
    num_mod_bands: int = 20
    mod_low_hz: float = 0.5
    mod_high_hz: float = 200.0

    def key(self) -> str:
        return "_".join(f"{k}{v}" for k, v in asdict(self).items())


# ------------------------------------------------------------------------------------ filterbanks


def hz_to_erb(f: np.ndarray | float) -> np.ndarray:
    """ERB-number (Cams) of a frequency in Hz, Glasberg & Moore (1990)."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, dtype=np.float64))


def erb_to_hz(e: np.ndarray | float) -> np.ndarray:
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def half_cosine_filterbank(
    freqs: np.ndarray,
    num_bands: int,
    low_hz: float,
    high_hz: float,
    warp: Callable[[np.ndarray], np.ndarray],
    edges: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Half-cosine filters equally spaced on the ``warp`` axis -> ``(responses [K, F], centres_hz [N])``.

    ``num_bands + 2`` cut-offs ``w_0 .. w_{N+1}`` split ``[warp(low), warp(high)]`` into steps ``d``;
    band ``k`` (1..N) is ``cos(pi (w - w_k) / (2 d))`` on ``[w_{k-1}, w_{k+1}]``, zero elsewhere.
    Adjacent bands are a cosine and a sine of the same argument, so squared responses sum to one on
    ``[w_1, w_N]``. ``edges`` prepends a low-pass (one below ``w_0``, falling to zero at ``w_1``) and
    appends a high-pass (rising from ``w_N``, one above ``w_{N+1}``): then the squares sum to one at
    every frequency. Rows: [low-pass,] bands 1..N [, high-pass].
    """
    if num_bands < 1 or not 0 <= low_hz < high_hz:
        raise ValueError(
            f"need num_bands >= 1 and 0 <= low_hz < high_hz, got {num_bands}, {low_hz}, {high_hz}"
        )
    w = warp(np.asarray(freqs, dtype=np.float64))
    cut = np.linspace(float(warp(np.array(low_hz))), float(warp(np.array(high_hz))), num_bands + 2)
    step = cut[1] - cut[0]
    rows = []
    for k in range(1, num_bands + 1):
        inside = (w >= cut[k - 1]) & (w <= cut[k + 1])
        rows.append(np.where(inside, np.cos(np.pi * (w - cut[k]) / (2 * step)), 0.0))
    if edges:
        low = np.where(w < cut[0], 1.0, np.where(w <= cut[1], np.cos(np.pi * (w - cut[0]) / (2 * step)), 0.0))
        high = np.where(
            w > cut[-1], 1.0, np.where(w >= cut[-2], np.cos(np.pi * (w - cut[-1]) / (2 * step)), 0.0)
        )
        rows = [low, *rows, high]
    centres = np.asarray([_unwarp_point(warp, c, low_hz, high_hz) for c in cut[1:-1]])
    return np.stack(rows), centres


def _unwarp_point(warp: Callable[[np.ndarray], np.ndarray], target: float, lo: float, hi: float) -> float:
    """Invert a monotonic ``warp`` at one point by bisection (keeps the filterbank warp-agnostic)."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(warp(np.array(mid))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=16)
def erb_filterbank(
    num_samples: int,
    sample_rate: int,
    num_bands: int = 30,
    low_hz: float = 20.0,
    high_hz: float = 10000.0,
    edges: bool = True,
) -> tuple[Tensor, Tensor]:
    """Cochlear filterbank on the ``rfft`` bins of a ``num_samples`` signal -> ``(responses, centres_hz)``.

    ``responses``: float64 ``[num_bands (+2 with edges), num_samples // 2 + 1]``; ``high_hz`` is
    clipped to Nyquist. Cached: the result is shared, do not modify it in place.
    """
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    high = min(float(high_hz), sample_rate / 2)
    responses, centres = half_cosine_filterbank(freqs, num_bands, low_hz, high, hz_to_erb, edges)
    return torch.from_numpy(responses), torch.from_numpy(centres)


def _log2_warp(f: np.ndarray) -> np.ndarray:
    return np.log2(np.maximum(f, 1e-6))


@functools.lru_cache(maxsize=16)
def modulation_filterbank(
    num_samples: int, rate: float, num_bands: int = 20, low_hz: float = 0.5, high_hz: float = 200.0
) -> tuple[Tensor, Tensor]:
    """Octave-type modulation filterbank (half-cosine on log2 frequency, no edge filters) on the ``rfft``
    bins of an envelope of ``num_samples`` at ``rate`` Hz -> ``(responses [num_bands, bins], centres_hz)``."""
    freqs = np.fft.rfftfreq(num_samples, 1.0 / rate)
    high = min(float(high_hz), rate / 2)
    responses, centres = half_cosine_filterbank(freqs, num_bands, low_hz, high, _log2_warp, edges=False)
    return torch.from_numpy(responses), torch.from_numpy(centres)


# ------------------------------------------------------------------------------ subbands, envelopes


def subbands(wave: Tensor, responses: Tensor) -> Tensor:
    """Real subband signals ``[K, S]`` of a mono ``wave [S]`` (filtering in the frequency domain)."""
    spec = torch.fft.rfft(wave.double())
    return torch.fft.irfft(spec[None] * responses, n=wave.shape[-1])


def subband_envelopes(wave: Tensor, responses: Tensor) -> Tensor:
    """Hilbert envelopes ``|analytic subband|`` ``[K, S]`` (in ``wave``'s precision).

    The analytic signal of subband ``k`` has spectrum ``2 X H_k`` at positive frequencies, ``X H_k``
    at DC and Nyquist, zero at negative ones; its magnitude is the envelope.
    """
    n = wave.shape[-1]
    spec = torch.fft.rfft(wave)[None] * responses.to(wave.dtype)  # [K, n//2 + 1]
    full = torch.zeros(responses.shape[0], n, dtype=spec.dtype)
    half = spec.shape[-1]
    full[:, :half] = spec
    last = half - 1 if n % 2 == 0 else half  # the Nyquist bin (even n) is not doubled
    full[:, 1:last] *= 2
    return torch.fft.ifft(full).abs()


def fft_resample(x: Tensor, num_out: int) -> Tensor:
    """Resample ``[..., n]`` to ``num_out`` samples by truncating (or zero-padding) its spectrum: an
    ideal low-pass for a periodic signal, exact and fast for the smooth envelopes summarised here."""
    n = x.shape[-1]
    if num_out == n:
        return x
    spec = torch.fft.rfft(x, dim=-1)
    bins = num_out // 2 + 1
    out = spec.new_zeros(*spec.shape[:-1], bins)
    keep = min(bins, spec.shape[-1])
    out[..., :keep] = spec[..., :keep]
    if num_out < n and num_out % 2 == 0:
        out[..., -1] = out[..., -1].real.to(out.dtype)  # the new Nyquist bin of a real signal is real
    return torch.fft.irfft(out, n=num_out, dim=-1) * (num_out / n)


def _moments(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row mean, std, skew, kurtosis (population moments) of ``[K, T]``."""
    mean = x.mean(dim=-1)
    centred = x - mean[:, None]
    var = centred.pow(2).mean(dim=-1)
    std = var.clamp_min(1e-20).sqrt()
    skew = centred.pow(3).mean(dim=-1) / std**3
    kurt = centred.pow(4).mean(dim=-1) / var.clamp_min(1e-20) ** 2
    return mean, std, skew, kurt


def texture_statistics(
    wave: Tensor, sample_rate: int, config: TextureConfig | None = None
) -> dict[str, Tensor]:
    """The module docstring's statistics of a mono clip ``[S]`` / ``[1, S]`` -> ``{group: float64 [d]}``.

    ``config``: :class:`TextureConfig` (None: the defaults).
    """
    config = config or TextureConfig()
    wave = wave.reshape(-1).double()
    rms = wave.pow(2).mean().sqrt()
    if not rms > 0:
        raise ValueError("texture statistics of a silent clip are undefined")
    wave = wave / rms  # fixed RMS per clip
    responses, _ = erb_filterbank(
        wave.shape[0], int(sample_rate), config.num_bands, config.low_hz, config.high_hz, edges=True
    )
    # Envelopes in float32 (faster FFTs; ample for moments of smooth signals), statistics in float64.
    bands = responses[1:-1]  # the bands only, not the edge filters
    rate: float = float(sample_rate)
    if config.envelope_rate is not None and int(config.envelope_rate) < sample_rate:
        num_out = max(8, int(round(wave.shape[0] * config.envelope_rate / sample_rate)))
        env = fft_resample(subband_envelopes(wave.float(), bands), num_out).clamp_min(0.0)
        rate = num_out * sample_rate / wave.shape[0]
    else:
        env = subband_envelopes(wave.float(), bands)
    env = env.double().pow(config.compression)
    mean, std, skew, kurt = _moments(env)
    centred = env - mean[:, None]
    corr = (centred @ centred.T) / (env.shape[-1] * std[:, None] * std[None, :])
    iu = torch.triu_indices(env.shape[0], env.shape[0], offset=1)
    mod_resp, _ = modulation_filterbank(
        env.shape[-1], rate, config.num_mod_bands, config.mod_low_hz, config.mod_high_hz
    )
    mod_spec = torch.fft.rfft(centred, dim=-1)  # [K, bins]
    # sum_t b(t)^2 via Parseval on the rfft bins: interior bins count twice (their negative twins).
    weight = torch.full((mod_spec.shape[-1],), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if env.shape[-1] % 2 == 0:
        weight[-1] = 1.0
    band_energy = (mod_spec.abs().pow(2) * weight) @ mod_resp.pow(2).T / env.shape[-1]  # [K, M]
    mod_power = band_energy / (env.shape[-1] * std.pow(2)[:, None]).clamp_min(1e-20)
    return {
        "envelope_mean": mean,
        "envelope_cv": std / mean.clamp_min(1e-20),
        "envelope_skew": skew,
        "envelope_kurtosis": kurt,
        "envelope_correlation": corr[iu[0], iu[1]],
        "modulation_power": mod_power.flatten(),
    }


def texture_feature_groups(
    waves: Sequence[Tensor] | Callable[[int], Tensor],
    sample_rate: int,
    config: TextureConfig | None = None,
    count: int | None = None,
) -> dict[str, Tensor]:
    """Statistics of many clips -> ``{group: float64 [N, d]}``. ``waves``: a sequence of clips, or a
    function ``index -> clip`` together with ``count``."""
    n = len(waves) if count is None else count  # type: ignore[arg-type]
    get = waves if callable(waves) else waves.__getitem__
    per_clip = [texture_statistics(get(i), sample_rate, config) for i in range(n)]
    if not per_clip:
        raise ValueError("no clips to summarise")
    return {g: torch.stack([s[g] for s in per_clip]) for g in GROUPS}


@dataclass
class GroupScaler:
    """Per-dimension mean / std of every group, fitted on training clips (:func:`standardise_groups`)."""

    mean: dict[str, Tensor]
    std: dict[str, Tensor]

    def transform(self, groups: dict[str, Tensor]) -> Tensor:
        """Standardise each group, weight it by ``1 / sqrt(d)``, concatenate -> float64 ``[N, D]``."""
        parts = []
        for g in GROUPS:
            z = (groups[g] - self.mean[g]) / self.std[g]
            parts.append(z / math.sqrt(z.shape[-1]))
        return torch.cat(parts, dim=-1)


def standardise_groups(
    groups: dict[str, Tensor], scaler: GroupScaler | None = None
) -> tuple[Tensor, GroupScaler]:
    """Feature matrix for clustering: every group standardised (fitted here unless ``scaler`` given)
    and scaled to equal total weight. Constant dimensions get std 1 (they contribute zeros)."""
    if scaler is None:
        mean = {g: groups[g].mean(dim=0) for g in GROUPS}
        std = {g: groups[g].std(dim=0, unbiased=False) for g in GROUPS}
        std = {g: torch.where(s > 1e-12, s, torch.ones_like(s)) for g, s in std.items()}
        scaler = GroupScaler(mean, std)
    return scaler.transform(groups), scaler
