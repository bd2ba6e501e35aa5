"""Test-suite settings: one intra-op thread (CI has 2 cores and some tests start subprocesses)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
