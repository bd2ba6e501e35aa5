"""The text recipes end to end through the CLI, shrunk to a few steps on a few stdlib modules."""

from __future__ import annotations

import json
import math

import pytest

from mmssl.cli import main

COMMON = [
    "data.builtin_modules=[json,logging,email]",
    "data.vocab_size=300",
    "data.block_size=32",
    "data.eval_length=16",
    "data.eval_min_per_class=2",
    "data.eval_train_per_class=6",
    "data.eval_test_per_class=4",
    "encoder.vocab_size=300",
    "encoder.hidden_size=32",
    "encoder.num_layers=1",
    "encoder.num_heads=2",
    "encoder.max_length=32",
    "train.steps=3",
    "train.batch_size=4",
    "train.log_every=1",
    "train.ckpt_every=3",
    "train.progress=false",
    "eval.few_shot.shots=[1,2]",
    "eval.few_shot.seeds=2",
    "eval.knn.k=3",
    "eval.linear.epochs=5",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _check_common(out, metrics):
    assert metrics["modality"] == "text" and metrics["steps"] == 3
    trained, baseline = metrics["eval"], metrics["baselines"]["random_init"]
    assert {"fewshot_1_mean", "knn_top1", "linear_top1"} <= set(trained) & set(baseline)
    # Throughput is measured during training: the trained method has it, the baseline does not.
    assert trained["train_tokens_per_s"] > 0 and "train_tokens_per_s" not in baseline
    assert (out / "hf_model" / "config.json").is_file() and (out / "hf_model" / "tokenizer.json").is_file()


def test_mlm_recipe_runs_exports_and_reevaluates_identically(tmp_path):
    out = tmp_path / "mlm"
    overrides = [*COMMON, "encoder.intermediate_size=64"]
    assert main(["run", "text/mlm", *overrides, f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "mlm"
    _check_common(out, metrics)
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert 0.0 <= section["masked_acc"] <= 1.0 and section["mlm_val_loss"] > 0
    from transformers import AutoModelForMaskedLM

    assert type(AutoModelForMaskedLM.from_pretrained(out / "hf_model")).__name__ == "BertForMaskedLM"
    # `mmssl eval` of the checkpoint draws the same validation masks: the same accuracy.
    ckpt = out / "checkpoints" / "last.pt"
    assert main(["eval", "text/mlm", *overrides, f"ckpt={ckpt}", f"out_dir={tmp_path / 'eval'}"]) == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["eval"]["masked_acc"] == pytest.approx(metrics["eval"]["masked_acc"])


def test_clm_recipe_runs_exports_and_writes_generations(tmp_path):
    out = tmp_path / "clm"
    assert main(["run", "text/clm", *COMMON, "eval.perplexity.max_blocks=16", f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "clm"
    _check_common(out, metrics)
    baseline = metrics["baselines"]["random_init"]
    assert baseline["perplexity"] == pytest.approx(math.exp(baseline["val_loss"]))
    # An untrained model predicts nearly uniformly over its 300 outputs: perplexity near 300.
    assert 150 < baseline["perplexity"] < 600
    text = (out / "generations.txt").read_text()
    assert text.count("--- greedy ---") == 4 and text.count("--- sampled ---") == 4
