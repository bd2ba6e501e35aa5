"""The shipped image–text recipe: it loads, its text tower can read every caption the built-in set writes,
and a shrunk copy trains through the pipeline with both kinds of metrics for the trained and random towers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmssl.config import ConfigError, load_recipe
from mmssl.crossmodal.image_text.captions import TEMPLATES, all_captions, combination, num_combinations
from mmssl.crossmodal.image_text.tokens import caption_tokenizer
from mmssl.encoders import load_encoder

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "crossmodal" / "image_text.yaml"
SHRUNK = [
    "data.train_size=32",
    "data.test_size=12",
    "data.image_size=16",
    "data.eval_train_size=12",
    "encoder.widths=[4,8]",
    "method.towers.text.hidden_size=16",
    "method.towers.text.num_layers=1",
    "method.towers.text.num_heads=2",
    "method.towers.text.intermediate_size=32",
    "method.projector_dim=8",
    "train.steps=3",
    "train.batch_size=8",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.ckpt_every=3",
    "train.num_workers=0",
    "train.progress=false",
]


def test_recipe_loads_and_its_text_tower_covers_every_caption(tmp_path):
    cfg = load_recipe(RECIPE)
    assert cfg.method["name"] == "crossmodal_contrastive" and cfg.data["name"] == "procedural_image_text"
    text = cfg.method["towers"]["text"]
    # What a full training set's tokenizer holds: every caption of every combination through every template.
    captions = [c for i in range(num_combinations()) for c in all_captions(combination(i))]
    assert len(captions) == num_combinations() * len(TEMPLATES)
    tokens, _ = caption_tokenizer(
        captions, max_length=cfg.data["max_length"], vocab_size=cfg.data["vocab_size"], cache_dir=tmp_path
    )
    assert tokens.vocab_size <= text["vocab_size"] and tokens.num_truncated(captions) == 0
    assert text["max_length"] >= cfg.data["max_length"]
    with pytest.raises(ConfigError, match="did you mean 'prompts'"):
        load_recipe(RECIPE, ["eval.zero_shot.prompt=[x]"])


@pytest.mark.slow
def test_shrunk_recipe_trains_and_reports_zero_shot_and_retrieval(tmp_path, monkeypatch):
    from mmssl import pipeline

    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    cfg = load_recipe(RECIPE, [*SHRUNK, f"out_dir={tmp_path / 'run'}"])
    metrics = pipeline.run(cfg)
    assert math.isfinite(metrics["final_loss"])
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        for task in ("shape", "fill", "colour"):
            assert 0.0 <= section[f"zeroshot_{task}_top1"] <= 1.0
        for direction in ("image2text", "text2image"):
            assert 0.0 <= section[f"ret_{direction}_r5"] <= 1.0
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["eval"] == pytest.approx(metrics["eval"])
    text_tower = load_encoder(run / "encoders" / "text.pt")
    assert text_tower.vocab_size == cfg.method["towers"]["text"]["vocab_size"]
