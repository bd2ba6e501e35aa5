"""The ambient-sound recipe validates and runs end to end at toy size (own cache under tmp)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from mmssl.cli import main
from mmssl.config import load_recipe
from mmssl.encoders import load_encoder
from mmssl.modalities.audio.av_clips import TrainingClips
from mmssl.pipeline import build_data
from mmssl.train.checkpoint import load_checkpoint

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "audio" / "ambient_clusters.yaml"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_recipe_validates() -> None:
    cfg = load_recipe(RECIPE)
    assert cfg.method["name"] == "ambient_sound" and cfg.data["name"] == "procedural_audio_visual"
    assert cfg.encoder["name"] == "small_cnn" and "random_init" in cfg.eval["baselines"]


def nmi(a: list[int], b: list[int]) -> float:
    """Normalised mutual information ``I(a; b) / ((H(a) + H(b)) / 2)`` from the joint counts."""
    n = len(a)
    joint, pa, pb = Counter(zip(a, b)), Counter(a), Counter(b)
    mi = sum(c / n * math.log(c * n / (pa[x] * pb[y])) for (x, y), c in joint.items())
    h = [-sum(c / n * math.log(c / n) for c in p.values()) for p in (pa, pb)]
    return mi / (sum(h) / 2) if sum(h) > 0 else 1.0


def test_nmi_reference() -> None:
    assert nmi([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)  # the same partition, renamed
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)  # independent
    # Joint counts (0,0):2 (0,1):1 (1,1):1 (1,2):2 -> I = 2 * (2/6) log 2; H(a) = log 2, H(b) = log 3.
    a, b = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    assert nmi(a, b) == pytest.approx((2 / 3) * math.log(2) / ((math.log(2) + math.log(3)) / 2))


def test_recipe_runs_end_to_end_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [
        # 3 clips per scene: a random 3-way clustering of 9 clips reaches NMI 0.6 only 2% of the time.
        "data.train_per_class=3",
        "data.test_per_class=1",
        "data.num_scenes=3",
        "data.duration_s=1.0",
        "data.clip_seconds=1.0",
        "data.image_size=16",
        "method.num_clusters=3",
        "train.steps=2",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.progress=false",
        "eval={baselines: [random_init], ambient_targets: {}, knn: {k: 2}}",
        f"out_dir={out}",
    ]
    assert main(["run", str(RECIPE), *overrides]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ambient_sound" and metrics["steps"] == 2
    assert (out / "figures" / "ambient_targets.png").is_file() and (out / "encoder.pt").is_file()
    # Known answer: target_nmi is the NMI of the sound clusters the model trained on (the checkpoint's
    # targets buffer, one per training clip) against the clips' scene labels, recomputed here.
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    targets = ckpt["model"]["targets"].tolist()
    data = build_data(load_recipe(RECIPE, overrides))
    labels = list(data.find_extra(TrainingClips).clips.targets)
    assert len(targets) == len(labels) == 9 and set(targets) <= {0, 1, 2}
    expected = nmi(labels, targets)
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert section["target_nmi"] == pytest.approx(expected)
        assert section["knn_top1"] * 3 == pytest.approx(round(section["knn_top1"] * 3))  # of 3 test frames
    # On data built for it (rain, wind and engine sounds) the sound clusters carry the scene: NMI 0.71-1.0
    # over seeds 0-7, where a random clustering of the 9 clips reaches 0.6 with probability 0.02.
    assert expected > 0.6
    # The saved encoder is the trained one: the same outputs as the checkpoint's encoder weights.
    encoder = load_encoder(out / "encoder.pt").eval()
    reference = load_encoder(out / "encoder.pt").eval()
    prefix = "encoder."
    reference.load_state_dict({k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)})
    frames = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(encoder(frames)["global"], reference(frames)["global"])
