"""GPU smoke check: a few training steps of every recipe through the real pipeline, then throughput.

For each recipe under ``recipes/`` (CPU recipes and their GPU profiles), or the recipes named on the
command line, a fresh subprocess runs ``mmssl.pipeline.train`` on the recipe with ``train.steps=N
train.ckpt_every=0 train.progress=false train.log_every=N/2 out_dir=<tmp>``: the same data, encoder,
method and trainer as ``mmssl train``, with the trainer's bf16 autocast on CUDA. A subprocess per
recipe keeps a sticky CUDA error in one recipe from poisoning the next and gives each recipe its own
peak-memory counter. samples/s is measured over the second half of the steps (the first half warms up
cuDNN and the allocator).

Prints ``recipe | setting | steps | samples/s | x first setting | peak GPU memory (MB) | status`` and
exits non-zero when any run fails; CUDA errors are named as such and their traceback is printed. A
recipe whose data or optional dependency is missing on this machine (FileNotFoundError, ImportError, or
a DataError saying "not found") is reported as skipped. Finally runs ``benchmarks/throughput.py
--device cuda``.

``--settings`` runs every recipe several ways, one row each, with samples/s relative to the first
setting: ``recipe`` (as written, the default), ``fp32``, ``bf16``, ``bf16+cl`` (channels_last) and
``bf16+cl+compile`` set ``train.precision`` / ``train.channels_last`` / ``train.compile`` whatever the
recipe says: the per-recipe fp32-vs-bf16 matrix (issue 14); ``benchmarks/gpu_profile.py`` has the same
matrix for SimCLR on synthetic views, without data loading.

Without CUDA it prints "no CUDA device; nothing to check" and exits 0. ``--device cpu`` runs the
same harness on the CPU (with ``--steps 2`` it is a quick test of the script itself).

    bash benchmarks/gpu_check.sh                      # all recipes, 20 steps each, then throughput
    .venv/bin/python benchmarks/gpu_check.py image/simclr quickstart --steps 10 --no-throughput
    .venv/bin/python benchmarks/gpu_check.py image/cifar10/simclr_gpu image/cifar10/mae_gpu \
        --settings fp32 bf16 bf16+cl bf16+cl+compile --no-throughput        # the precision matrix
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # mmssl from this checkout, also where it is not pip-installed (a bare GPU box)
RESULT_TAG = "RESULT "
EXIT_OK, EXIT_FAILED, EXIT_SKIPPED = 0, 1, 3
CUDA_MARKERS = ("CUDA", "cuDNN", "CUBLAS", "cuBLAS", "NCCL", "device-side assert", "cudaError")
# --settings: how each recipe is run. "recipe" as written (its GPU profile says bf16 / channels_last); the
# others set precision, memory format and compile whatever the recipe says, for the fp32-vs-bf16 matrix.
SETTINGS = {
    "recipe": [],
    "fp32": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
    "bf16": ["train.precision=bf16", "train.channels_last=false", "train.compile=false"],
    "bf16+cl": ["train.precision=bf16", "train.channels_last=true", "train.compile=false"],
    "bf16+cl+compile": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}


def discover_recipes(names: list[str]) -> list[tuple[str, Path]]:
    """``(name, path)`` of the named recipes, or of every recipe under ``recipes/``."""
    from mmssl.cli import recipes_in, resolve_recipe

    recipes_dir = ROOT / "recipes"
    if not names:
        return list(recipes_in(recipes_dir).items())

    out = []
    for name in names:
        path = resolve_recipe(name)
        try:
            label = str(path.resolve().relative_to(recipes_dir.resolve()).with_suffix(""))
        except ValueError:
            label = str(path)
        out.append((label, path))
    return out


def error_chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_cuda_error(err: BaseException) -> bool:
    """True when ``err`` (or an exception it was raised from) comes from CUDA / cuDNN / NCCL."""
    import torch

    kinds = tuple(
        k
        for k in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "AcceleratorError", None))
        if k
    )
    return any(
        (kinds and isinstance(e, kinds)) or any(m in str(e) for m in CUDA_MARKERS) for e in error_chain(err)
    )


def is_missing_input(err: BaseException) -> bool:
    """True when the recipe's data or an optional dependency is absent on this machine (a skip, not
    a failure): FileNotFoundError, ImportError, or mmssl's DataError saying something was not found,
    also where another error was raised from one (the registry wraps a module's failed import). mmssl
    itself failing to import is a failure: then nothing was checked."""
    try:
        from mmssl.errors import DataError
    except ImportError:  # mmssl itself does not import: a failure, found below
        DataError = None  # noqa: N806

    for e in error_chain(err):
        if isinstance(e, ImportError) and (e.name or "").split(".")[0] == "mmssl":
            return False
        if isinstance(e, (FileNotFoundError, ImportError)):
            return True
        if DataError is not None and isinstance(e, DataError) and "not found" in str(e):
            return True
    return False


def check_one(
    path: Path, steps: int, out_dir: Path, device: str, setting: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Train ``steps`` steps of one recipe in this process, with the ``setting``'s overrides;
    ``(exit code, result)``."""
    import torch

    try:
        from mmssl import pipeline
        from mmssl.config import load_recipe

        overrides = [
            f"train.steps={steps}",
            "train.ckpt_every=0",
            "train.progress=false",
            f"train.log_every={steps // 2}",
            f"train.device={device}",
            "eval.monitor.every=0",  # the monitor's kNN runs at the last step, inside the timed window
            f"out_dir={out_dir}",
            "resume=null",
            *(setting or []),
        ]
        cfg = load_recipe(path, overrides)
        cuda = device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _, _, result, _ = pipeline.train(cfg)
        if cuda:
            torch.cuda.synchronize()  # surface asynchronous kernel errors here, not later
        timed = result.history[-1]["samples_per_s"] if result.history else result.samples_per_s
        return EXIT_OK, {
            "status": "ok",
            "steps": result.steps,
            "samples_per_s": timed,
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "final_loss": result.final_loss,
            "batch_size": cfg.train.batch_size * cfg.train.accumulate,
        }
    except Exception as err:  # report every failure; the parent decides the exit status
        traceback.print_exc()
        message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        if is_cuda_error(err):
            return EXIT_FAILED, {"status": "cuda_error", "error": message}
        if is_missing_input(err):
            return EXIT_SKIPPED, {"status": "skipped", "error": message}
        return EXIT_FAILED, {"status": "error", "error": message}


def run_child(
    path: Path, setting: str, args: argparse.Namespace, out_dir: Path
) -> tuple[dict[str, Any], str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(path), "--steps", str(args.steps)]
    cmd += ["--device", args.device, "--out", str(out_dir), "--settings", setting]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {"status": "error", "error": f"timed out after {args.timeout} s"}, stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if not lines:  # crashed before reporting (segfault, killed, import error)
        return {"status": "error", "error": f"exit {proc.returncode}, no result"}, proc.stderr
    return json.loads(lines[-1][len(RESULT_TAG) :]), proc.stderr


def _status(r: dict[str, Any]) -> str:
    if r["status"] == "ok":
        return f"ok (loss {r['final_loss']:.4g}, batch {r['batch_size']})"
    label = {"cuda_error": "CUDA ERROR", "error": "FAILED", "skipped": "skipped"}[r["status"]]
    return f"{label}: {r['error']}".replace("|", "/")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="*", help="recipe names or paths (default: every recipe)")
    p.add_argument("--steps", type=int, default=20, help="training steps per recipe (even, >= 2)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: test the harness itself")
    p.add_argument("--timeout", type=int, default=300, help="seconds allowed per recipe")
    p.add_argument("--jobs", type=int, default=1, help="recipes run at once (smoke check; shared device)")
    p.add_argument(
        "--settings",
        nargs="+",
        default=["recipe"],
        choices=list(SETTINGS),
        help="how each recipe runs: as written, or the fp32 / bf16 / channels_last (cl) / compile matrix",
    )
    p.add_argument("--no-throughput", action="store_true", help="skip benchmarks/throughput.py at the end")
    p.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child mode: one recipe
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 2 or args.steps % 2:
        p.error("--steps must be even and >= 2 (the second half is timed)")

    sys.stdout.reconfigure(line_buffering=True)  # table lines and tracebacks stay in order in logs
    if args.one is not None:
        code, result = check_one(args.one, args.steps, args.out, args.device, SETTINGS[args.settings[0]])
        print(RESULT_TAG + json.dumps(result), flush=True)
        return code

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 0
    if args.device == "cuda":
        print(
            f"device: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
        )
    else:
        print(f"device: cpu (harness test), torch {torch.__version__}")
    recipes = discover_recipes(args.recipes)
    if not recipes:
        print(f"no recipes found under {ROOT / 'recipes'}", file=sys.stderr)
        return 1

    failures = []
    with tempfile.TemporaryDirectory(prefix="mmssl_gpu_check_") as tmp:
        runs = [
            (i, name, setting, path, Path(tmp) / f"run{i}")
            for i, ((name, path), setting) in enumerate((r, s) for r in recipes for s in args.settings)
        ]
        # --jobs N: N runs share the GPU at once (a smoke check in 1/N of the time); their samples/s then
        # measure a shared GPU and are not comparable with a --jobs 1 table.
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(lambda r: (r, *run_child(r[3], r[2], args, r[4])), run) for run in runs]
            done = []
            for future in as_completed(futures):
                (i, name, setting, _, _), result, stderr = future.result()
                label = name if args.settings == ["recipe"] else f"{name} [{setting}]"
                print(f"[{len(done) + 1}/{len(runs)}] {label}: {_status(result)}", flush=True)
                if result["status"] != "ok":
                    # Fail loudly: the child's traceback, whatever the kind of failure.
                    print(
                        f"----- traceback of {label} -----\n{stderr[-6000:].rstrip()}\n-----", file=sys.stderr
                    )
                if result["status"] in ("cuda_error", "error"):
                    failures.append((label, result["status"]))
                done.append((i, name, setting, result))
        rows = [(name, setting, result) for _, name, setting, result in sorted(done, key=lambda d: d[0])]

    print()
    if args.jobs > 1:
        print(f"({args.jobs} runs at a time on the device: samples/s are of a shared device)")
    print(f"| recipe | setting | steps | samples/s | x {args.settings[0]} | peak GPU memory (MB) | status |")
    print("|---|---|---:|---:|---:|---:|---|")
    first: dict[str, float] = {}
    for name, setting, r in rows:
        ok = r["status"] == "ok"
        if ok and setting == args.settings[0]:
            first[name] = r["samples_per_s"]
        sps = f"{r['samples_per_s']:.0f}" if ok else "-"
        ratio = f"{r['samples_per_s'] / first[name]:.2f}" if ok and first.get(name) else "-"
        mem = f"{r['peak_mb']:.0f}" if ok and r.get("peak_mb") is not None else "-"
        steps = r.get("steps", args.steps) if ok else args.steps
        print(f"| {name} | {setting} | {steps} | {sps} | {ratio} | {mem} | {_status(r)} |")
    print()

    code = 0
    if failures:
        cuda_failures = [n for n, s in failures if s == "cuda_error"]
        if cuda_failures:
            print(f"CUDA errors in: {', '.join(cuda_failures)}", file=sys.stderr)
        print(
            f"{len(failures)} of {len(rows)} runs failed: {', '.join(n for n, _ in failures)}",
            file=sys.stderr,
        )
        code = 1

    if not args.no_throughput:
        print("throughput benchmark:", flush=True)
        bench = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", args.device]
        if args.device == "cpu":
            bench += ["--batch-size", "8", "--steps", "1", "--warmup", "1"]  # harness test only
        try:
            rc = subprocess.run(bench, cwd=ROOT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            print(f"throughput benchmark timed out after {args.timeout} s", file=sys.stderr)
            rc = 1
        if rc != 0:
            print(f"throughput benchmark failed (exit {rc})", file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
