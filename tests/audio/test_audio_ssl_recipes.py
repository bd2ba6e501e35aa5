"""The audio SSL recipes (recipes/audio/{simclr,byol,mae}.yaml and recipes/audio/fsdd/): they load, the
built-in ones' components take optimiser steps at toy size and run end to end through ``mmssl run``, the
FSDD recipes' texture-statistics baseline runs, the FSDD split is speaker-disjoint; the built-in
``procedural_audio`` set and the ``texture_stats`` baseline encoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from mmssl.cli import main
from mmssl.config import load_recipe, retrain_baselines
from mmssl.modalities.audio.fsdd import parse_fsdd_name
from mmssl.modalities.audio.procedural import SOUND_CLASSES, clip_rng, synthesize_texture
from mmssl.modalities.audio.procedural_clips import procedural_audio
from mmssl.modalities.audio.texture_encoder import TextureStatsEncoder, texture_dim
from mmssl.modalities.audio.texture_stats import GROUPS, TextureConfig, texture_statistics
from mmssl.pipeline import build_data, build_encoder, build_method, run

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "audio"
FSDD = ROOT.parent / "shared" / "data" / "audio" / "fsdd_full"
BUILT_IN = {"simclr": "simclr", "byol": "byol", "mae": "audio_mae"}
TOY = [
    "data.num_classes=2",
    "data.train_per_class=3",
    "data.test_per_class=2",
    "data.duration_s=0.6",
    "data.clip_seconds=0.5",
    "train.steps=3",
    "train.batch_size=4",
    "train.warmup_steps=0",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
]


@pytest.mark.parametrize("recipe", ["simclr", "byol", "mae", "fsdd/simclr", "fsdd/byol", "fsdd/mae"])
def test_recipes_load(recipe: str) -> None:
    cfg = load_recipe(RECIPES / f"{recipe}.yaml")
    assert cfg.modality == "audio" and "random_init" in cfg.eval["baselines"]
    assert cfg.method["name"] == BUILT_IN[recipe.split("/")[-1]]
    assert set(cfg.eval["few_shot"]["shots"]) == {1, 5, 10}
    if recipe.startswith("fsdd/"):
        assert (
            cfg.data["test_speakers"] == ["yweweler"] and cfg.data["root"] == "../shared/data/audio/fsdd_full"
        )
        (texture,) = retrain_baselines(
            cfg
        ).values()  # texture statistics through the same probes, no training
        assert texture.encoder["name"] == "texture_stats" and texture.train.steps == 0
        assert texture.data["test_speakers"] == cfg.data["test_speakers"]


@pytest.mark.parametrize("recipe", sorted(BUILT_IN))
def test_built_in_recipe_components_take_steps_at_toy_size(recipe: str) -> None:
    """The recipe's own data, encoder and method (its options as written, toy data sizes), two optimiser
    steps in process: the loss is finite and the encoder's weights move."""
    cfg = load_recipe(RECIPES / f"{recipe}.yaml", TOY)
    torch.manual_seed(0)
    data = build_data(cfg)
    method = build_method(cfg, build_encoder(cfg), data)
    before = [p.detach().clone() for p in method.encoder.parameters()]
    opt = torch.optim.AdamW(method.parameters(), lr=cfg.train.lr)
    batch = default_collate([data.pretrain[i] for i in range(4)])
    method.train()
    for step in range(2):
        loss = method(batch)["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_train_step_end(step + 1, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters()))


@pytest.mark.parametrize("recipe", sorted(BUILT_IN))
def test_built_in_recipe_trains_at_toy_size(recipe: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    evals = "eval={baselines: [random_init], few_shot: {shots: [1], seeds: 1, epochs: 5}, knn: {k: 2}}"
    assert main(["run", str(RECIPES / f"{recipe}.yaml"), *TOY, evals, f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and math.isfinite(metrics["final_loss"])
    losses = [
        json.loads(line)["loss"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in line
    ]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert 0.0 <= section["fewshot_1_mean"] <= 1.0 and 0.0 <= section["knn_top1"] <= 1.0


@pytest.mark.parametrize("recipe", sorted(BUILT_IN))
def test_fsdd_texture_statistics_baseline_runs_through_the_same_probes(recipe: str, tmp_path: Path) -> None:
    """The texture-statistics baseline exactly as recipes/audio/fsdd/<recipe>.yaml lists it (its overrides),
    on the toy built-in data at the same 8 kHz: it trains nothing and is scored by the same probes."""
    fsdd = load_recipe(RECIPES / "fsdd" / f"{recipe}.yaml")
    (texture,) = [b for b in fsdd.eval["baselines"] if isinstance(b, dict)]
    evals = "eval={few_shot: {shots: [1], seeds: 1, epochs: 5}, knn: {k: 2}}"
    rate = ["data.sample_rate=8000", "encoder.sample_rate=8000", "train.steps=1"]
    toy = [o for o in TOY if not o.startswith("train.steps")]
    cfg = load_recipe(RECIPES / f"{recipe}.yaml", [*toy, *rate, evals, f"out_dir={tmp_path / 'run'}"])
    cfg.eval["baselines"] = [texture]
    metrics = run(cfg)
    assert metrics is not None and set(metrics["baselines"]) == {"texture_stats"}
    scores = metrics["baselines"]["texture_stats"]
    assert set(scores) == set(metrics["eval"])  # the same evaluators on the same split
    assert 0.0 <= scores["fewshot_1_mean"] <= 1.0 and 0.0 <= scores["knn_top1"] <= 1.0
    saved = torch.load(tmp_path / "run" / "baselines" / "texture_stats" / "encoder.pt", weights_only=True)
    assert saved["name"] == "texture_stats" and saved["state_dict"] == {}  # nothing learnt


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD not found at {FSDD}")
def test_fsdd_recipe_data_is_speaker_disjoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the recipe's root is relative to the repository root
    cfg = load_recipe(RECIPES / "fsdd" / "simclr.yaml")
    bundle = build_data(cfg)
    train, test = bundle.eval_train.base, bundle.eval_test.base
    train_speakers = {parse_fsdd_name(p)[1] for p in train.paths}
    test_speakers = {parse_fsdd_name(p)[1] for p in test.paths}
    assert train_speakers == {"jackson", "nicolas", "theo"} and test_speakers == {"yweweler"}
    assert len(train) == 1500 and len(test) == 500 and bundle.pretrain.base is train
    views = bundle.pretrain[0]["views"]
    assert [v.shape for v in views] == [(8000,), (8000,)]  # 1-s crops at 8 kHz


def test_procedural_audio_is_the_audio_visual_sets_sound_and_deterministic() -> None:
    a = procedural_audio(num_classes=3, train_per_class=2, test_per_class=1, duration_s=0.5, seed=4)
    b = procedural_audio(num_classes=3, train_per_class=2, test_per_class=1, duration_s=0.5, seed=4)
    train = a.eval_train.base
    assert train.targets == [0, 1, 2, 0, 1, 2] and len(a.eval_test) == 3 and a.num_classes == 3
    assert all(torch.equal(x, y) for x, y in zip(train.waves, b.eval_train.base.waves))
    own = synthesize_texture(SOUND_CLASSES[1], clip_rng(4, "test", 1), 0.5, 16000)
    assert torch.equal(a.eval_test.base.waves[1], torch.from_numpy(own))
    other = procedural_audio(num_classes=3, train_per_class=2, test_per_class=1, duration_s=0.5, seed=5)
    assert not torch.equal(other.eval_train.base.waves[0], train.waves[0])


def test_texture_encoder_concatenates_the_statistics() -> None:
    encoder = TextureStatsEncoder(sample_rate=8000, num_bands=6, num_mod_bands=3).eval()
    config = TextureConfig(num_bands=6, num_mod_bands=3)
    assert encoder.out_dim == texture_dim(config) == 4 * 6 + 15 + 18 and not list(encoder.parameters())
    waves = torch.randn(3, 4000)
    waves[2] = 0.0  # silent: no texture, zeros
    feats = encoder(waves)["global"]
    assert feats.shape == (3, encoder.out_dim) and feats.dtype == torch.float32
    stats = texture_statistics(waves[0], 8000, config)
    assert torch.allclose(feats[0].double(), torch.cat([stats[g] for g in GROUPS]), rtol=1e-5, atol=1e-6)
    assert torch.equal(feats[2], torch.zeros(encoder.out_dim))
