"""Worker processes that run one call at a time each, with a wall-clock limit per call.

Approximate convex decomposition calls CoACD (Wei et al., SIGGRAPH 2022), a C++ extension that can hang
for minutes on self-intersecting input (``preprocess_mode="off"``) and, rarely, crash its process. A
call past its deadline must therefore be stopped, and a crash must cost only its own shape.

Why not the standard library: ``concurrent.futures.ProcessPoolExecutor`` cannot stop a running call
(``Future.cancel`` only works before it starts, ``result(timeout)`` leaves the worker busy), and one
worker that dies breaks the whole executor (``BrokenProcessPool``: every pending call fails);
``multiprocessing.Pool`` cannot kill one task either, and waits forever for a task whose worker died.
Here each worker has its own pipe, so the parent can kill and replace exactly the worker that is late
or dead, report that call as failed, and go on with the others.

Workers are spawned (no fork: the parent may hold torch / OpenMP threads) and set ``OMP_NUM_THREADS``
before the callee loads its OpenMP runtime. This module imports no torch (workers start faster).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any


def _worker_main(conn, fn: Callable[..., Any], threads: int) -> None:  # pragma: no cover - child process
    """Worker loop: receive ``(index, args)``, send ``(index, ("ok", fn(*args)))`` or
    ``(index, ("error", message))``; ``None`` stops it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before the callee loads its OpenMP runtime
    while True:
        message = conn.recv()
        if message is None:
            return
        index, args = message
        try:
            result: tuple[str, Any] = ("ok", fn(*args))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which decides what to do
            result = ("error", f"{type(err).__name__}: {err}")
        conn.send((index, result))


class _Worker:
    """One worker process, its pipe, and the call it is running (``job``, started at ``started``)."""

    def __init__(self, ctx, fn: Callable[..., Any], threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, fn, threads), daemon=True)
        self.process.start()
        child.close()
        self.job: int | None = None
        self.started = 0.0

    def submit(self, index: int, args: tuple) -> None:
        self.job, self.started = index, time.monotonic()
        self.conn.send((index, args))

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def run_with_timeouts(
    fn: Callable[..., Any],
    calls: Sequence[tuple[int, tuple]],
    *,
    workers: int,
    timeout_s: float,
    threads: int,
    on_done: Callable[[int, Any], None],
    on_failed: Callable[[int, str], None],
    name: str = "call",
) -> None:
    """Run ``fn(*args)`` for each ``(index, args)`` of ``calls`` in ``min(workers, len(calls))`` spawned
    processes with ``threads`` OpenMP threads each; ``fn`` must be importable (a module-level function).

    Each result goes to ``on_done(index, result)`` as it arrives. A call that raises, whose worker dies,
    or that runs over ``timeout_s`` seconds goes to ``on_failed(index, reason)`` instead (reason:
    ``"<Error>: <message>"``, ``"worker exited with code <n>"`` or ``"<name> timed out after <t>s"``);
    the late or dead worker is killed and replaced. Returns when every call is reported.
    """
    ctx = mp.get_context("spawn")  # no fork: the parent may hold torch/OpenMP threads
    pending = deque(calls)
    pool = [_Worker(ctx, fn, threads) for _ in range(min(workers, len(calls)))]

    def restart(worker: _Worker) -> _Worker:
        worker.stop(kill=True)
        return _Worker(ctx, fn, threads)

    try:
        while pending or any(w.job is not None for w in pool):
            for w in pool:
                if w.job is None and pending:
                    w.submit(*pending.popleft())
            busy = [w for w in pool if w.job is not None]
            now = time.monotonic()
            wait_s = max(0.0, min(w.started + timeout_s - now for w in busy))
            ready = wait([w.conn for w in busy], timeout=wait_s)
            for w in busy:
                i = w.job
                if w.conn in ready:
                    try:
                        _, (status, payload) = w.conn.recv()
                    except (EOFError, OSError):  # the worker died (e.g. a segfault in an extension)
                        status, payload = "error", f"worker exited with code {w.process.exitcode}"
                        pool[pool.index(w)] = restart(w)
                    else:
                        w.job = None
                    if status == "ok":
                        on_done(i, payload)
                    else:
                        on_failed(i, payload)
                elif time.monotonic() - w.started >= timeout_s:
                    pool[pool.index(w)] = restart(w)
                    on_failed(i, f"{name} timed out after {timeout_s:g}s")
    finally:
        for w in pool:
            w.stop(kill=w.job is not None)
