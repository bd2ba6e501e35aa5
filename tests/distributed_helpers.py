"""What the multi-process tests share: a free TCP port and the environment a spawned rank needs."""

from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_rank_environment(rank: int, world_size: int, port: int) -> None:
    """torchrun's variables for a process spawned as ``rank`` of ``world_size``; gloo on the CPU even on a
    GPU machine, one intra-op thread (the ranks share the cores)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        CUDA_VISIBLE_DEVICES="",
    )
    torch.set_num_threads(1)
