"""SIGTERM / SIGUSR1 (what SLURM and cloud schedulers send): the trainer writes a checkpoint at the next step
boundary and stops with a clear message and exit status; ``resume=auto`` continues bit-identically.
Real signals, sent to a real training process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.trainer import Trainer
from tests.train.test_trainer import NoisyPairs, TinyMethod, _cfg

REPO = Path(__file__).resolve().parents[2]
STEPS = 30

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    from mmssl.train.preemption import Preempted
    from mmssl.train.trainer import Trainer
    from tests.train.test_trainer import NoisyPairs, TinyMethod, _cfg

    run_dir, resume = sys.argv[1], sys.argv[2]
    method = TinyMethod()
    method.on_train_step_end = lambda step, total: time.sleep(0.05)  # time for the signal to land mid-run
    cfg = _cfg(steps={steps}, ckpt_every=1000, log_every=1, warmup_steps=2)
    try:
        Trainer(cfg, method, NoisyPairs(), run_dir=run_dir, resume=resume).fit()
    except Preempted as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    torch.save(method.encoder.state_dict(), run_dir + "/final.pt")
    """
).format(steps=STEPS)


def _start(run_dir: Path, resume: str = "none") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(run_dir), resume],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _steps_logged(run_dir: Path) -> int:
    log = run_dir / "metrics.jsonl"
    if not log.exists():
        return 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_then_resume_is_bit_identical(tmp_path, signum):
    straight = TinyMethod()
    Trainer(_cfg(steps=STEPS, ckpt_every=1000, log_every=1, warmup_steps=2), straight, NoisyPairs()).fit()

    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    deadline = time.monotonic() + 60
    while _steps_logged(run_dir) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    stopped = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 5 <= stopped < STEPS  # ckpt_every=1000: only the signal wrote this checkpoint
    assert f"received {signum.name}; checkpoint written at step {stopped}" in err
    assert "resume=auto" in err

    resumed = _start(run_dir, resume="auto")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    final = torch.load(run_dir / "final.pt", weights_only=True)
    assert torch.equal(final["weight"], straight.encoder.weight.detach())
    assert torch.equal(final["bias"], straight.encoder.bias.detach())


def test_handlers_are_restored_after_training():
    before = signal.getsignal(signal.SIGTERM)
    Trainer(_cfg(steps=2), TinyMethod(), NoisyPairs()).fit()
    assert signal.getsignal(signal.SIGTERM) is before
