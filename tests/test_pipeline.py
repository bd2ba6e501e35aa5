"""End to end through the CLI: run directory contents, kill + resume=auto, eval of a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mmssl.cli import main
from mmssl.config import load_recipe
from mmssl.encoders import load_encoder
from mmssl.pipeline import build_data, build_encoder
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.trainer import seed_everything

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "data.train_per_class=12",
    "data.test_per_class=4",
    "data.image_size=16",
    "train.batch_size=24",
    "train.num_workers=0",
    "train.log_every=1",
    "train.progress=false",
    "eval.few_shot.shots=[1,2]",
    "eval.few_shot.seeds=2",
    "eval.knn.k=5",
    "eval.linear.epochs=5",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def reference_knn_top1(
    encoder: nn.Module, overrides: list[str], k: int = 5, temperature: float = 0.07
) -> float:
    """kNN top-1 of ``encoder`` on the recipe's labelled splits, computed here from scratch (float64,
    one forward per split, a plain sort and a one-hot vote): the weighted kNN of Wu et al. 2018,
    ``argmax_c sum_{i in top-k} exp(cos_i / T) [y_i = c]``."""
    cfg = load_recipe(REPO / "recipes" / "quickstart.yaml", overrides)
    data = build_data(cfg)

    def features(split) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([split[i]["input"] for i in range(len(split))])
        y = torch.tensor([int(split[i]["label"]) for i in range(len(split))])
        encoder.eval()
        with torch.no_grad():
            f = encoder(x)["global"].double()
        return f / f.norm(dim=1, keepdim=True), y

    train_f, train_y = features(data.eval_train)
    test_f, test_y = features(data.eval_test)
    correct = 0
    for f, y in zip(test_f, test_y):
        sim = train_f @ f
        nearest = sim.argsort(descending=True)[:k]
        votes = (
            torch.exp(sim[nearest] / temperature)
            @ torch.eye(data.num_classes, dtype=torch.float64)[train_y[nearest]]
        )
        correct += int(votes.argmax()) == int(y)
    return correct / len(test_y)


def test_run_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "quickstart", *TINY, "train.steps=4", "train.ckpt_every=2", f"out_dir={out}"]) == 0
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "metrics.json",
        "loss_curve.png",
        "encoder.pt",
        "checkpoints/last.pt",
    ):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "simclr" and metrics["modality"] == "image" and metrics["steps"] == 4
    # One history line per step (log_every=1), and the reported final loss is the last one.
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert metrics["final_loss"] == pytest.approx(history[-1]["loss"])
    n_test = 10 * 4  # 10 classes x data.test_per_class
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert {"knn_top1", "fewshot_1_mean", "fewshot_1_std", "linear_top1"} <= set(section)
        # Accuracies over the 40 test images: whole counts out of 40.
        for key in ("knn_top1", "linear_top1"):
            assert section[key] * n_test == pytest.approx(round(section[key] * n_test), abs=1e-4), key
    assert "random init" in capsys.readouterr().out
    # The saved encoder loads alone and matches the checkpoint's encoder weights.
    enc = load_encoder(out / "encoder.pt")
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    for k, v in enc.state_dict().items():
        assert torch.equal(v, ckpt["model"][f"encoder.{k}"])
    # Known answers: the reported kNN accuracies are those of the saved encoder and of a freshly
    # initialised one (seeded as the run seeds), recomputed here from scratch.
    assert metrics["eval"]["knn_top1"] == pytest.approx(reference_knn_top1(enc, TINY))
    seed_everything(0)
    untrained = build_encoder(load_recipe(REPO / "recipes" / "quickstart.yaml", TINY))
    baseline_knn = reference_knn_top1(untrained, TINY)
    assert metrics["baselines"]["random_init"]["knn_top1"] == pytest.approx(baseline_knn)
    # `mmssl eval` on that checkpoint reproduces the same kNN accuracy.
    assert (
        main(
            [
                "eval",
                "quickstart",
                *TINY,
                f"ckpt={out / 'checkpoints' / 'last.pt'}",
                f"out_dir={tmp_path / 'eval'}",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["eval"]["knn_top1"] == pytest.approx(metrics["eval"]["knn_top1"])


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from mmssl.core.two_view import TwoViewMethod
    from mmssl.cli import main
    kill_at = int(os.environ["KILL_AT_STEP"])
    original = TwoViewMethod.on_train_step_end
    def hook(self, step, total):
        original(self, step, total)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no exception handlers
    TwoViewMethod.on_train_step_end = hook
    sys.exit(main(sys.argv[1:]))
    """
)


def _train(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    cmd = [sys.executable, "-c", KILLER, "train", "quickstart", *TINY, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    steps = ["train.steps=8", "train.ckpt_every=2"]
    straight = _train([*steps, f"out_dir={tmp_path / 'a'}"], {"KILL_AT_STEP": "-1"})
    assert straight.returncode == 0, straight.stderr
    # Killed during step 5 (after the step-4 checkpoint), with 2 data workers this time.
    killed = _train([*steps, "train.num_workers=2", f"out_dir={tmp_path / 'b'}"], {"KILL_AT_STEP": "5"})
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 4
    resumed = _train([*steps, "resume=auto", f"out_dir={tmp_path / 'b'}"], {"KILL_AT_STEP": "-1"})
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_processes(tmp_path, strategy):
    """The same command under torchrun (2 gloo processes): trains, rank 0 alone writes the run and exports
    it, both ranks extract the evaluation features (``eval_ranks``), and the metrics are those of the saved
    encoder."""
    out = tmp_path / strategy
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "mmssl.cli",
        "run",
        "quickstart",
        *TINY,
        "train.batch_size=12",
        "train.steps=3",
        "train.ckpt_every=3",
        f"train.strategy={strategy}",
        f"out_dir={out}",
        "export=[safetensors]",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone exports (the rank is read before the group ends: after it every process says rank 0)
    assert proc.stdout.count("exported safetensors to") == 1, proc.stdout[-3000:]
    if strategy == "ddp":
        assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    else:
        assert (out / "checkpoints" / "last_sharded").is_dir()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # one writer: rank 0
    # The kNN accuracy rank 0 reported is that of the encoder it saved, recomputed here from scratch.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_ranks"] == 2
    assert metrics["eval"]["knn_top1"] == pytest.approx(
        reference_knn_top1(load_encoder(out / "encoder.pt"), TINY)
    )


def test_results_table_pairs_each_metric_with_its_std_and_fits_long_names() -> None:
    from mmssl.report import format_table

    evals = {"fewshot_10_mean": 0.3, "fewshot_10_std": 0.015, "fewshot10_ft_class_miou": 0.622,
             "fewshot10_ft_class_miou_std": 0.006, "knn_top1": 0.4}  # fmt: skip
    table = format_table({"method": "m", "encoder": "e", "eval": evals, "baselines": {"random_init": evals}})
    lines = table.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["fewshot_10", "fewshot10_ft_class_miou", "knn_top1"]
    assert "30.0 ± 1.5" in lines[2] and "62.2 ± 0.6" in lines[3] and "40.0" in lines[4]
    assert len({len(line) for line in lines[2:]}) == 1  # columns aligned whatever the name length


@pytest.mark.parametrize("channels_last", [False, True])
def test_evaluation_gives_the_encoder_the_memory_format_it_was_trained_in(tmp_path, channels_last):
    """With ``train.channels_last`` the frozen features (trained method and random-init baseline alike)
    are extracted from NHWC inputs with NHWC convolution weights, as the trainer ran them."""
    from mmssl import pipeline
    from mmssl.cli import resolve_recipe

    cfg = load_recipe(
        resolve_recipe("quickstart"),
        [f"train.channels_last={str(channels_last).lower()}", "eval={knn: {k: 5}, monitor: {every: 1}}"]
        + ["data.train_per_class=20", "data.test_per_class=10", f"out_dir={tmp_path}"],
    )
    data = pipeline.build_data(cfg)
    method = pipeline.build_method(cfg, pipeline.build_encoder(cfg), data)
    conv = next(m for m in method.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    layouts: list[bool] = []
    conv.register_forward_pre_hook(
        lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    metrics = pipeline.evaluate(cfg, method, data, torch.device("cpu"))
    assert 0.0 <= metrics["knn_top1"] <= 1.0
    assert layouts and set(layouts) == {channels_last}
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    layouts.clear()
    (monitor,) = pipeline.build_monitors(cfg, data)  # the online kNN monitor encodes as the trainer does
    assert 0.0 <= monitor(method)["monitor_knn_top1"] <= 1.0
    assert layouts and set(layouts) == {channels_last}


@pytest.mark.parametrize("eval_threads", [None, 2])
def test_evaluation_runs_on_eval_num_threads_and_restores_the_training_count(tmp_path, eval_threads):
    """``eval.num_threads`` is the intra-op thread count while the evaluators encode (here under a run
    that trains on 1 thread); after the evaluation the training count is back. Unset: the count is kept."""
    from mmssl import pipeline
    from mmssl.cli import resolve_recipe

    threads = "null" if eval_threads is None else eval_threads
    cfg = load_recipe(
        resolve_recipe("quickstart"),
        [f"eval={{knn: {{k: 5}}, num_threads: {threads}}}", "data.train_per_class=20"]
        + ["data.test_per_class=10", f"out_dir={tmp_path}"],
    )
    data = pipeline.build_data(cfg)
    method = pipeline.build_method(cfg, pipeline.build_encoder(cfg), data)
    seen: list[int] = []
    method.encoder.register_forward_pre_hook(lambda _m, _args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = pipeline.evaluate(cfg, method, data, torch.device("cpu"))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert 0.0 <= metrics["knn_top1"] <= 1.0
    assert seen and set(seen) == {eval_threads or 1}
    assert after == 1


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_eval_num_threads_must_be_a_positive_integer(bad):
    from mmssl.cli import resolve_recipe
    from mmssl.errors import ConfigError

    with pytest.raises(ConfigError, match="eval.num_threads' must be a positive integer"):
        load_recipe(resolve_recipe("quickstart"), [f"eval.num_threads={bad}"])
