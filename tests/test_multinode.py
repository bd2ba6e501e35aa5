"""A real two-node launch on one machine: two ``torchrun --nnodes 2`` launchers meeting through a c10d
rendezvous (gloo), one process each, give the same weights as one launcher with two processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_pipeline import REPO, TINY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_args(out: Path) -> list[str]:
    return [
        "-m",
        "mmssl.cli",
        "train",
        "quickstart",
        *TINY,
        "train.batch_size=12",
        "train.steps=3",
        "train.ckpt_every=3",
        f"out_dir={out}",
    ]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.distributed
def test_two_nodes_match_one_node_with_two_processes(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = [sys.executable, "-m", "torch.distributed.run"]
    one_node = subprocess.run(
        [*run, "--nproc-per-node", "2", "--master-port", str(_free_port()), *_train_args(tmp_path / "one")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    endpoint = f"127.0.0.1:{_free_port()}"
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
