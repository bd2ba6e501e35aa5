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
    # No warm-up and a larger step than the recipe's: 3 steps visibly move the validation loss.
    "train.warmup_steps=0",
    "train.lr=3e-3",
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


VOCAB = 300


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
    trained, baseline = metrics["eval"], metrics["baselines"]["random_init"]
    # An untrained model predicts the masked tokens nearly uniformly over the 300-token vocabulary.
    assert baseline["mlm_val_loss"] == pytest.approx(math.log(VOCAB), abs=0.1)
    # Three steps of training lower the held-out masked-LM loss (by ~0.03-0.04 over seeds 0-3).
    assert trained["mlm_val_loss"] < baseline["mlm_val_loss"] - 0.01
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
    trained, baseline = metrics["eval"], metrics["baselines"]["random_init"]
    for section in (trained, baseline):
        assert section["perplexity"] == pytest.approx(math.exp(section["val_loss"]))
    # An untrained model predicts nearly uniformly over its 300 outputs: perplexity near 300.
    assert 150 < baseline["perplexity"] < 600
    # Three steps of training lower the held-out loss (by ~0.10-0.15 over seeds 0-3).
    assert trained["val_loss"] < baseline["val_loss"] - 0.03
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3] and history[-1]["loss"] < history[0]["loss"]
    text = (out / "generations.txt").read_text()
    assert text.count("--- greedy ---") == 4 and text.count("--- sampled ---") == 4
