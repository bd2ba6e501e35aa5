"""Launching as users do on clusters, with torchrun on one machine (gloo): two ``--nnodes 2`` launchers
meeting through a c10d rendezvous give the same weights as one launcher with two processes, and a run
whose worker is killed resumes (``resume=auto``) from the last checkpoint to the same weights as an
uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed_helpers import free_port
from tests.test_pipeline import REPO, TINY

# A worker that SIGKILLs itself after step KILL_AT_STEP on rank KILL_RANK (on the first attempt only, should
# torchrun restart it: it numbers the attempts in TORCHELASTIC_RESTART_COUNT).
KILL_ONCE = """
import os, signal, sys
from mmssl.core.two_view import TwoViewMethod
from mmssl.cli import main
original = TwoViewMethod.on_train_step_end
def hook(self, step, total):
    original(self, step, total)
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    chosen = os.environ["RANK"] == os.environ["KILL_RANK"]
    if first_attempt and chosen and step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
TwoViewMethod.on_train_step_end = hook
sys.exit(main(sys.argv[1:]))
"""


def _train_args(out: Path, steps: int = 3, ckpt_every: int = 3) -> list[str]:
    return [
        "train",
        "quickstart",
        *TINY,
        "train.batch_size=12",
        f"train.steps={steps}",
        f"train.ckpt_every={ckpt_every}",
        f"out_dir={out}",
    ]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.distributed
def test_two_nodes_match_one_node_with_two_processes(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MMSSL_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "torch.distributed.run"]
    one_node = subprocess.run(
        [*run, "--nproc-per-node", "2", "--master-port", str(free_port()),
         "-m", "mmssl.cli", *_train_args(tmp_path / "one")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [
                *run,
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "mmssl-test",
                "-m",
                "mmssl.cli",
                *_train_args(tmp_path / "two"),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]

    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.distributed
def test_killed_worker_then_relaunch_resumes_to_the_same_weights(tmp_path):
    """Exact resume under DDP: every rank continues its own random stream (rank 1 restoring rank 0's RNG
    state made the resumed run diverge at the first step after the checkpoint)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MMSSL_CACHE": str(tmp_path / "cache")}
    script = tmp_path / "kill_once.py"
    script.write_text(KILL_ONCE)

    def launch(out: Path, kill_at: int) -> subprocess.CompletedProcess:
        run_env = {**env, "KILL_RANK": "1", "KILL_AT_STEP": str(kill_at)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), str(script),
               *_train_args(out, steps=6, ckpt_every=2), "resume=auto"]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
        (out.parent / f"{out.name}_{kill_at}.log").write_text(
            proc.stdout + "\n--- stderr ---\n" + proc.stderr
        )
        return proc

    straight = launch(tmp_path / "straight", kill_at=-1)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = launch(tmp_path / "resumed", kill_at=5)  # rank 1 dies in step 6, after the step-4 checkpoint
    assert killed.returncode != 0
    resumed = launch(tmp_path / "resumed", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "at step 4/6" in resumed.stdout

    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
