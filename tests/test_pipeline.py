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

from mmssl.cli import main
from mmssl.encoders import load_encoder
from mmssl.train.checkpoint import load_checkpoint

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
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert {"knn_top1", "fewshot_1_mean", "fewshot_1_std", "linear_top1"} <= set(section)
        assert all(0.0 <= v <= 1.0 for v in section.values())
    assert "random init" in capsys.readouterr().out
    # The saved encoder loads alone and matches the checkpoint's encoder weights.
    enc = load_encoder(out / "encoder.pt")
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    for k, v in enc.state_dict().items():
        assert torch.equal(v, ckpt["model"][f"encoder.{k}"])
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
def test_torchrun_two_processes(tmp_path):
    """The same command under torchrun (2 gloo processes): trains, rank 0 alone writes the run."""
    out = tmp_path / "ddp"
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
        f"out_dir={out}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # one writer: rank 0
    assert json.loads((out / "metrics.json").read_text())["eval"]["knn_top1"] >= 0


def test_results_table_pairs_each_metric_with_its_std_and_fits_long_names() -> None:
    from mmssl.report import format_table

    evals = {"fewshot_10_mean": 0.3, "fewshot_10_std": 0.015, "fewshot10_ft_class_miou": 0.622,
             "fewshot10_ft_class_miou_std": 0.006, "knn_top1": 0.4}  # fmt: skip
    table = format_table({"method": "m", "encoder": "e", "eval": evals, "baselines": {"random_init": evals}})
    lines = table.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["fewshot_10", "fewshot10_ft_class_miou", "knn_top1"]
    assert "30.0 ± 1.5" in lines[2] and "62.2 ± 0.6" in lines[3] and "40.0" in lines[4]
    assert len({len(line) for line in lines[2:]}) == 1  # columns aligned whatever the name length
