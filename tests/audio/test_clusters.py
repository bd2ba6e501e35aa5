"""Ambient-sound targets: k-means and PCA codes are deterministic and recover planted structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from mmssl.modalities.audio.clusters import ambient_targets, binary_codes, kmeans_targets
from mmssl.modalities.audio.texture_stats import TextureConfig


def _blobs(seed: int = 0, per: int = 20, k: int = 4, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, size=(k, dim))
    labels = np.repeat(np.arange(k), per)
    return centres[labels] + rng.normal(0, 1, size=(k * per, dim)), labels


def test_kmeans_recovers_blobs_and_is_stable_under_a_fixed_seed() -> None:
    x, labels = _blobs()
    ids, centres = kmeans_targets(x, 4, seed=0)
    assert adjusted_rand_score(labels, ids.numpy()) == 1.0
    assert centres.shape == (4, x.shape[1])
    # Ids renumbered by first appearance: clip 0 is in cluster 0, and the run repeats exactly.
    assert ids[0] == 0 and ids.unique().tolist() == [0, 1, 2, 3]
    ids2, centres2 = kmeans_targets(x, 4, seed=0)
    assert torch.equal(ids, ids2) and torch.equal(centres, centres2)
    # The centres are the means of their members (the k-means fixed point).
    for c in range(4):
        np.testing.assert_allclose(centres[c].numpy(), x[ids.numpy() == c].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_targets(x, 1000)


def test_binary_codes_are_pca_signs() -> None:
    x, _ = _blobs(1)
    bits, comps = binary_codes(x, 3, seed=0)
    assert bits.shape == (len(x), 3) and set(bits.unique().tolist()) <= {0.0, 1.0}
    # Reference: top eigenvectors of the covariance, sign fixed by the largest loading.
    centred = x - x.mean(0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    top = vecs[:, ::-1][:, :3].T
    top *= np.sign(top[np.arange(3), np.abs(top).argmax(1)])[:, None]
    np.testing.assert_allclose(np.abs(comps.numpy() @ top.T), np.eye(3), atol=1e-6)
    np.testing.assert_array_equal(bits.numpy(), (centred @ top.T > 0).astype(np.float32))
    bits2, _ = binary_codes(x, 3, seed=0)
    assert torch.equal(bits, bits2)


class _Clips:
    """The interface ambient_targets needs: len, clip_audio, sample_rate, cache_key, targets."""

    def __init__(self, n: int = 12, sr: int = 8000, cache_key: str | None = "unit_test_clips") -> None:
        g = torch.Generator().manual_seed(0)
        t = torch.arange(sr) / sr
        self.sample_rate, self.cache_key = sr, cache_key
        self.targets = [i % 2 for i in range(n)]
        # Class 0: steady noise; class 1: noise fully modulated at 4 Hz.
        self.waves = [
            torch.randn(sr, generator=g) * (1 if y == 0 else 1 + torch.sin(2 * torch.pi * 4 * t))
            for y in self.targets
        ]

    def __len__(self) -> int:
        return len(self.waves)

    def clip_audio(self, i: int) -> torch.Tensor:
        return self.waves[i]


def test_ambient_targets_cached_and_separate_steady_from_modulated(tmp_path: Path) -> None:
    clips = _Clips()
    config = TextureConfig(num_bands=12, num_mod_bands=8)
    first = ambient_targets(
        clips, "clusters", num_clusters=2, config=config, labels=clips.targets, cache_dir=tmp_path
    )
    assert first.info["nmi_vs_labels"] == pytest.approx(1.0)
    assert len(list(tmp_path.glob("unit_test_clips_*.npz"))) == 1
    clips.waves = [w * 0 for w in clips.waves]  # a cache hit never touches the audio again
    second = ambient_targets(clips, "clusters", num_clusters=2, config=config, cache_dir=tmp_path)
    assert torch.equal(first.targets, second.targets)
    codes = ambient_targets(clips, "binary", num_bits=3, config=config, cache_dir=tmp_path)
    assert codes.targets.shape == (12, 3) and codes.num_outputs == 3
    with pytest.raises(ValueError, match="unknown ambient target kind"):
        ambient_targets(clips, "regression", cache_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage"])
def test_damaged_texture_statistics_cache_is_named_and_recomputed(
    tmp_path: Path, caplog, damage: str
) -> None:
    from mmssl.modalities.audio.clusters import cached_feature_groups

    clips = _Clips(n=4)
    config = TextureConfig(num_bands=6, num_mod_bands=4)
    first = cached_feature_groups(clips.clip_audio, 4, clips.sample_rate, config, "damaged", tmp_path)
    (path,) = tmp_path.glob("damaged_*.npz")
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":  # one byte of a group's values: same size, headers intact
        data[data.index(first["envelope_mean"].numpy().tobytes()[:8]) + 2] ^= 0xFF
    else:
        data = bytearray(b"PK\x03\x04" + bytes(200))
    path.write_bytes(bytes(data))
    calls = []
    again = cached_feature_groups(
        lambda i: calls.append(i) or clips.clip_audio(i), 4, clips.sample_rate, config, "damaged", tmp_path
    )
    assert f"ignoring unreadable texture-statistics cache {path}" in caplog.text and calls == [0, 1, 2, 3]
    assert all(torch.equal(first[g], again[g]) for g in first)
