"""The ambient-sound method on a tiny procedural set: targets, losses, learning, evaluator, figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from mmssl.data import DataBundle
from mmssl.data.extras import labelled_splits
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.modalities.audio.methods import ambient_sound, ambient_targets_evaluator
from mmssl.modalities.audio.paired import procedural_audio_visual
from mmssl.modalities.image.encoders import small_cnn
from mmssl.registry import EVALUATORS, METHODS


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> DataBundle:
    cache = tmp_path_factory.mktemp("av")
    return procedural_audio_visual(
        num_scenes=3,
        train_per_class=4,
        test_per_class=1,
        image_size=16,
        duration_s=1.0,
        clip_seconds=0.5,
        fps=4,
        num_frames=2,
        cache_dir=str(cache),
    )


def _batch(bundle: DataBundle) -> dict:
    return default_collate([bundle.pretrain[i] for i in range(len(bundle.pretrain))])


def test_cluster_targets_train_the_visual_encoder(bundle: DataBundle, tmp_path: Path) -> None:
    torch.manual_seed(0)
    assert METHODS.get("ambient_sound") is ambient_sound
    method = ambient_sound(
        small_cnn(widths=(8, 16)), bundle, num_clusters=3, num_bands=12, num_mod_bands=6, cache=False
    )
    assert method.targets.shape == (12,) and method.targets.dtype == torch.int64
    # Three scene sounds, three clusters: the clusters are the classes (the method never saw them).
    assert method.target_info["nmi_vs_labels"] == pytest.approx(1.0)
    batch = _batch(bundle)
    out = method(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert method.encoder.features[0].weight.grad.abs().sum() > 0  # the image encoder learns from sound
    optimiser = torch.optim.Adam(method.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        optimiser.zero_grad()
        loss = method(batch)["loss"]
        first = first if first is not None else loss.item()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first
    metrics = EVALUATORS.get("ambient_targets")(
        method.encoder, bundle, EvalContext(device="cpu", seed=0, method=method)
    )
    assert metrics == {"target_nmi": pytest.approx(1.0)}
    path = method.save_figures(tmp_path, bundle, torch.device("cpu"))
    assert path is not None and path.stat().st_size > 0


def test_binary_codes_variant(bundle: DataBundle) -> None:
    method = ambient_sound(
        small_cnn(widths=(8,)),
        bundle,
        target="binary",
        num_bits=4,
        num_bands=12,
        num_mod_bands=6,
        cache=False,
    )
    assert method.targets.shape == (12, 4) and method.num_outputs == 4
    out = method(_batch(bundle))
    assert set(out) == {"loss", "bit_acc"} and 0 <= out["bit_acc"] <= 1 and torch.isfinite(out["loss"])


def test_targets_are_deterministic_and_need_paired_data(bundle: DataBundle) -> None:
    kw = dict(num_clusters=4, num_bands=12, num_mod_bands=6, cache=False)
    a = ambient_sound(small_cnn(widths=(8,)), bundle, **kw)
    b = ambient_sound(small_cnn(widths=(8,)), bundle, **kw)
    assert torch.equal(a.targets, b.targets)
    audio_only = DataBundle(pretrain=labelled_splits(bundle.extras, "audio_eval").train)
    with pytest.raises(DataError, match="paired video\\+audio dataset"):
        ambient_sound(small_cnn(widths=(8,)), audio_only)
    with pytest.raises(ValueError, match="needs the ambient_sound method"):
        ambient_targets_evaluator(a.encoder, bundle, EvalContext(method=object()))
