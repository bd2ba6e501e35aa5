"""Launching as users do on clusters, with torchrun on one machine (gloo): two ``--nnodes 2`` launchers
meeting through a c10d rendezvous give the same weights as one launcher with two processes; a run whose
worker is killed resumes (``resume=auto``) from the last checkpoint to the same weights as an uninterrupted
run, whether relaunched by hand or restarted by torchrun itself (``--max-restarts``, on one node and on
two)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmssl.core.distributed import _store_of_this_attempt
from tests.distributed_helpers import free_port
from tests.test_pipeline import REPO, TINY

# A worker that SIGKILLs itself after step KILL_AT_STEP on rank KILL_RANK ("any": whichever rank this launcher
# runs), on the first attempt only, should torchrun restart it: its agent numbers the attempts in
# TORCHELASTIC_RESTART_COUNT.
KILL_ONCE = """
import os, signal, sys
from mmssl.core.two_view import TwoViewMethod
from mmssl.cli import main
original = TwoViewMethod.on_train_step_end
def hook(self, step, total):
    original(self, step, total)
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    chosen = os.environ["KILL_RANK"] in (os.environ["RANK"], "any")
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


RUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT = 300  # seconds for a whole launch (the runs take 10-15 s)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MMSSL_CACHE": str(tmp / "cache"), **extra}


def _kill_once_command(launcher: list[str], script: Path, out: Path) -> list[str]:
    """torchrun with ``launcher``'s options running the KILL_ONCE script: 6 steps, checkpoints at 2, 4, 6."""
    return [*RUN, *launcher, str(script), *_train_args(out, steps=6, ckpt_every=2), "resume=auto"]


def _launch(logs: Path, **launchers: tuple[list[str], dict[str, str]]) -> dict[str, tuple[int, str, str]]:
    """Run the ``name=(command, environment)`` launchers together; ``{name: (returncode, stdout, stderr)}``.

    Each launcher's output is kept in ``logs/<name>.log``. One still running after TIMEOUT gets SIGTERM, on
    which torchrun stops its workers (SIGTERM, then SIGKILL after 30 s): they run in sessions of their own,
    and a hung worker would otherwise outlive the test."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = {
        name: subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (cmd, env) in launchers.items()
    }
    deadline = time.monotonic() + TIMEOUT
    results = {}
    try:
        for name, proc in procs.items():
            try:
                stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                stdout, stderr = proc.communicate(timeout=90)
                stderr += f"\n[stopped: still running after {TIMEOUT} s]"
            results[name] = (proc.returncode, stdout, stderr)
            (logs / f"{name}.log").write_text(
                f"returncode {proc.returncode}\n{stdout}\n--- stderr ---\n{stderr}"
            )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


def _assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.distributed
def test_two_nodes_match_one_node_with_two_processes(tmp_path):
    env = _env(tmp_path)
    one_node = [*RUN, "--nproc-per-node", "2", "--master-port", str(free_port()),
                "-m", "mmssl.cli", *_train_args(tmp_path / "one")]  # fmt: skip
    (code, _, err) = _launch(tmp_path / "logs_one", one=(one_node, env))["one"]
    assert code == 0, err[-3000:]

    endpoint = f"127.0.0.1:{free_port()}"
    nodes = {
        f"node{rank}": (
            [
                *RUN,
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
            env,
        )  # fmt: skip
        for rank in (0, 1)
    }
    for code, _, err in _launch(tmp_path / "logs_two", **nodes).values():
        assert code == 0, err[-3000:]

    _assert_same_weights(tmp_path / "one", tmp_path / "two")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run directory of an uninterrupted two-process run of the 6 steps the kill tests interrupt."""
    tmp = tmp_path_factory.mktemp("straight")
    script = tmp / "kill_once.py"
    script.write_text(KILL_ONCE)
    out = tmp / "straight"
    cmd = _kill_once_command(["--nproc-per-node", "2", "--master-port", str(free_port())], script, out)
    (code, _, err) = _launch(tmp / "logs", run=(cmd, _env(tmp, KILL_RANK="1", KILL_AT_STEP="-1")))["run"]
    assert code == 0, err[-3000:]
    return out


@pytest.mark.distributed
def test_killed_worker_then_relaunch_resumes_to_the_same_weights(tmp_path, straight):
    """Exact resume under DDP: every rank continues its own random stream (rank 1 restoring rank 0's RNG
    state made the resumed run diverge at the first step after the checkpoint)."""
    script = tmp_path / "kill_once.py"
    script.write_text(KILL_ONCE)
    out = tmp_path / "resumed"

    def launch(kill_at: int) -> tuple[int, str, str]:
        cmd = _kill_once_command(["--nproc-per-node", "2", "--master-port", str(free_port())], script, out)
        env = _env(tmp_path, KILL_RANK="1", KILL_AT_STEP=str(kill_at))
        return _launch(tmp_path / f"logs_{kill_at}", run=(cmd, env))["run"]

    (code, _, _) = launch(kill_at=5)  # rank 1 dies in step 6, after the step-4 checkpoint
    assert code != 0
    (code, stdout, stderr) = launch(kill_at=-1)
    assert code == 0, f"{stdout[-2000:]}\n--- stderr ---\n{stderr[-6000:]}"
    assert "resumed from" in stdout and "at step 4/6" in stdout
    _assert_same_weights(straight, out)


@pytest.mark.distributed
@pytest.mark.parametrize("rendezvous", ["c10d", "static"])
def test_elastic_restart_resumes_to_the_same_weights(tmp_path, straight, rendezvous):
    """torchrun restarts both workers after rank 1 is killed (``--max-restarts 1``) and they resume from the
    step-4 checkpoint. Both rendezvous keep their store across the restart: without the per-attempt prefix of
    ``init_distributed`` the c10d case failed in 2 runs of 5 (the restarted ranks, having read the dead ranks'
    addresses, each waiting for the other to connect, until the 300 s timeout)."""
    script = tmp_path / "kill_once.py"
    script.write_text(KILL_ONCE)
    out = tmp_path / "elastic"
    port = str(free_port())
    if rendezvous == "c10d":
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "elastic"]
    else:
        rdzv = ["--master-port", port]
    launcher = ["--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1", *rdzv]
    env = _env(tmp_path, KILL_RANK="1", KILL_AT_STEP="5")
    (code, stdout, stderr) = _launch(tmp_path / "logs", run=(_kill_once_command(launcher, script, out), env))[
        "run"
    ]
    assert code == 0, stderr[-3000:]
    assert "exitcode: -9" in stderr  # the agent saw the SIGKILL and restarted the workers
    assert "resumed from" in stdout and "at step 4/6" in stdout
    _assert_same_weights(straight, out)


@pytest.mark.distributed
def test_two_nodes_elastic_restart_resumes_to_the_same_weights(tmp_path, straight):
    """Two ``--nnodes 2`` launchers; the worker of one is killed; both agents restart their worker, which
    resume from the step-4 checkpoint. Several agents number their attempts each on its own (the other
    agent may restart without counting one, pytorch/pytorch#135712), so here the workers' store is renewed
    by torch instead: ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` makes every rendezvous round publish a new
    port, on which rank 0 hosts a new store (docs/scaling.md)."""
    script = tmp_path / "kill_once.py"
    script.write_text(KILL_ONCE)
    out = tmp_path / "elastic"
    endpoint = f"127.0.0.1:{free_port()}"
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--max-restarts", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", endpoint, "--rdzv-id", "elastic"]  # fmt: skip
    cmd = _kill_once_command(launcher, script, out)

    def env(kill: str) -> dict[str, str]:
        return _env(tmp_path, KILL_RANK=kill, KILL_AT_STEP="5", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")

    # Only node a's worker is killed, whichever global rank the rendezvous gave it.
    nodes = _launch(tmp_path / "logs", a=(cmd, env("any")), b=(cmd, env("none")))
    for code, _, stderr in nodes.values():
        assert code == 0, stderr[-3000:]
    assert "exitcode: -9" in nodes["a"][2]
    stdout = nodes["a"][1] + nodes["b"][1]
    assert "resumed from" in stdout and "at step 4/6" in stdout
    _assert_same_weights(straight, out)


def test_only_a_single_agents_restarted_workers_get_a_store_of_their_own(monkeypatch):
    """Which launches :func:`init_distributed` gives a per-attempt store (the env torchrun's agent sets)."""
    server = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    agent = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(server.port), "RANK": "0",
             "TORCHELASTIC_USE_AGENT_STORE": "True", "GROUP_WORLD_SIZE": "1",
             "TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_RESTART_COUNT": "1"}  # fmt: skip
    for key, value in agent.items():
        monkeypatch.setenv(key, value)
    store = _store_of_this_attempt()
    assert store is not None
    store.set("k", "attempt 1")
    assert server.get("mmssl_attempt1/k") == b"attempt 1"

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # the first attempt: torch's own keys
    assert _store_of_this_attempt() is None
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    assert _store_of_this_attempt() is None
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")  # several agents: their attempt numbers may differ
    with pytest.warns(UserWarning, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        assert _store_of_this_attempt() is None


GROUP_AT_EXIT = """
import atexit, sys
import torch
import torch.distributed as dist
from mmssl.core.distributed import init_distributed
# registered before init_distributed's own handler, so (atexit runs last-in, first-out) it runs after it
atexit.register(lambda: print(f"rank {dist.get_rank() if dist.is_initialized() else '-'}: group at exit "
                              f"{'alive' if dist.is_initialized() else 'destroyed'}", flush=True))
init_distributed()
dist.all_reduce(torch.ones(3))
sys.exit(0)  # as `mmssl train` ends: no explicit end of the group
"""


@pytest.mark.distributed
def test_a_rank_that_exits_without_ending_its_group_destroys_it_at_exit(tmp_path):
    """A gloo group still alive at interpreter finalisation can abort the process (SIGABRT, "terminate
    called without an active exception": 1 relaunched ``mmssl train`` in 30 here), so init_distributed
    registers the group's destruction with atexit."""
    script = tmp_path / "group_at_exit.py"
    script.write_text(GROUP_AT_EXIT)
    cmd = [*RUN, "--nproc-per-node", "2", "--master-port", str(free_port()), str(script)]
    (code, stdout, stderr) = _launch(tmp_path / "logs", run=(cmd, _env(tmp_path)))["run"]
    assert code == 0, stderr[-3000:]
    assert stdout.count("group at exit destroyed") == 2 and "alive" not in stdout, stdout
