"""Mutation check: do the tests fail when core functions are wrong?

Each mutation rewrites one source file of a *copy* of the ``mmssl`` package (a plain text substitution
that must match exactly once), then runs the test files that should notice. A mutant is ``killed`` when
that pytest run fails and ``survived`` when it passes; a surviving mutant is a test gap. The real source
tree is never touched: the package, ``tests/``, ``recipes/`` and ``pyproject.toml`` are copied into a
temporary folder, pytest runs there (so its rootdir, and the ``mmssl`` it imports, are the copy's), and
the copy comes first on ``PYTHONPATH`` for the subprocesses some tests start. Byte-code is not written,
so a mutant never runs stale ``.pyc`` files. A first ``original`` row runs every selected test on the
unmodified copy: the kills only mean something if that row passes.

Usage (from the repository root; a few minutes on 2 CPU cores)::

    nice -n 10 .venv/bin/python benchmarks/mutation_check.py
    nice -n 10 .venv/bin/python benchmarks/mutation_check.py --only info_nce_no_temperature ema_swap
    .venv/bin/python benchmarks/mutation_check.py --list
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("mmssl", "tests", "recipes", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    """``file`` (relative to the repository root) with each ``old`` replaced by ``new`` (exactly once)."""

    name: str
    description: str
    file: str
    replacements: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]  # pytest arguments: files, node ids, or "-k" expressions


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "info_nce_no_temperature",
        "InfoNCE (in-batch negatives) without the temperature",
        "mmssl/core/losses/info_nce.py",
        (("logits = q @ k.t() / temperature  #", "logits = q @ k.t()  #"),),
        ("tests/core/test_losses.py",),
    ),
    Mutation(
        "nt_xent_no_temperature",
        "SimCLR's NT-Xent without the temperature",
        "mmssl/core/losses/info_nce.py",
        (("logits = anchors @ candidates.t() / temperature", "logits = anchors @ candidates.t()"),),
        ("tests/core/test_losses.py",),
    ),
    Mutation(
        "byol_loss_sign",
        "BYOL regression loss with its sign flipped",
        "mmssl/core/losses/regression.py",
        (("return (2.0 - 2.0 * _cosine(p, z)).mean()", "return -(2.0 - 2.0 * _cosine(p, z)).mean()"),),
        ("tests/core/test_losses.py",),
    ),
    Mutation(
        "ema_swap",
        "EMA teacher update with the coefficients swapped: m s + (1 - m) t",
        "mmssl/core/momentum.py",
        (
            (
                "t.lerp_(s_params[name].detach().to(t.dtype), 1.0 - momentum)",
                "t.lerp_(s_params[name].detach().to(t.dtype), momentum)",
            ),
        ),
        ("tests/core/test_momentum.py",),
    ),
    Mutation(
        "memory_bank_swap",
        "memory bank update with the coefficients swapped",
        "mmssl/core/momentum.py",
        (
            (
                "self.momentum * self.features[indices] + (1.0 - self.momentum) * feats",
                "(1.0 - self.momentum) * self.features[indices] + self.momentum * feats",
            ),
        ),
        ("tests/core/test_momentum.py",),
    ),
    Mutation(
        "atomic_save_in_place",
        "atomic_save writes straight into the target (its 'temporary' file is the target itself)",
        "mmssl/train/checkpoint.py",
        (
            (
                'fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)',
                "tmp = str(path)\n    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)",
            ),
        ),
        ("tests/train/test_checkpoint_helpers.py",),
    ),
    Mutation(
        "atomic_save_keeps_temp",
        "atomic_save leaves its temporary file behind on failure",
        "mmssl/train/checkpoint.py",
        (("        if os.path.exists(tmp):\n            os.unlink(tmp)\n", "        pass\n"),),
        ("tests/train/test_checkpoint_helpers.py",),
    ),
    Mutation(
        "decay_norms",
        "parameter_groups decays normalisation weights (only names ending in .bias excluded)",
        "mmssl/train/optim.py",
        (('return param.ndim <= 1 or name.endswith(".bias")', 'return name.endswith(".bias")'),),
        ("tests/train/test_optim_helpers.py",),
    ),
    Mutation(
        "lr_scaling_ignores_accumulation",
        "effective_lr leaves gradient accumulation out of the global batch",
        "mmssl/train/optim.py",
        (
            (
                "cfg.lr * cfg.batch_size * cfg.accumulate * world_size / 256",
                "cfg.lr * cfg.batch_size * world_size / 256",
            ),
        ),
        ("tests/train/test_optim_helpers.py",),
    ),
    Mutation(
        "rotation_labels_interleaved",
        "rotate_batch labels in the wrong order (repeat instead of repeat_interleave)",
        "mmssl/modalities/image/methods/rotation.py",
        ((".repeat_interleave(images.shape[0])", ".repeat(images.shape[0])"),),
        ("tests/image/test_pretext.py",),
    ),
    Mutation(
        "jigsaw_inverse_permutation",
        "jigsaw shuffles the tiles by the inverse of the labelled permutation",
        "mmssl/modalities/image/methods/jigsaw.py",
        (
            (
                "return shuffle_tiles(tiles, self.permutations[labels]), labels",
                "return shuffle_tiles(tiles, self.permutations[labels].argsort(dim=1)), labels",
            ),
        ),
        ("tests/image/test_pretext.py",),
    ),
    Mutation(
        "context_pair_swapped",
        "context prediction hands over (neighbour, first patch) instead of (first, neighbour)",
        "mmssl/modalities/image/methods/context.py",
        (("return flat.view_as(patches), labels", "return flat.view_as(patches).flip(1), labels"),),
        ("tests/image/test_pretext.py",),
    ),
    Mutation(
        "patch_set_mixed_order",
        "patch embeddings concatenated across puzzles (position-major view)",
        "mmssl/modalities/image/methods/pretext.py",
        (
            (
                "return classifier(feats.view(b, -1))",
                "return classifier(feats.view(-1, b, feats.shape[-1]).transpose(0, 1).reshape(b, -1))",
            ),
        ),
        ("tests/image/test_pretext.py",),
    ),
    Mutation(
        "knn_no_temperature",
        "weighted kNN votes exp(s) instead of exp(s / T)",
        "mmssl/eval/knn.py",
        (
            (
                "weights = ((top_sim - top_sim[:, :1]) / temperature).exp()",
                "weights = (top_sim - top_sim[:, :1]).exp()",
            ),
        ),
        ("tests/eval/test_knn.py", "tests/test_pipeline.py::test_run_writes_the_run_directory"),
    ),
    Mutation(
        "knn_drops_nearest",
        "weighted kNN skips the nearest neighbour (votes with ranks 2..k+1)",
        "mmssl/eval/knn.py",
        (
            (
                "top_sim, top_idx = sim.topk(k, dim=1)",
                "top_sim, top_idx = sim.topk(min(k + 1, sim.shape[1]), dim=1)\n"
                "        top_sim, top_idx = top_sim[:, 1:], top_idx[:, 1:]",
            ),
        ),
        ("tests/eval/test_knn.py", "tests/test_pipeline.py::test_run_writes_the_run_directory"),
    ),
    Mutation(
        "random_init_is_trained",
        "the random-init baseline evaluates a copy of the trained encoder",
        "mmssl/pipeline.py",
        (
            (
                "baseline = build_method(cfg, untrained, data).to(device)",
                "baseline = build_method(cfg, copy.deepcopy(method.encoder), data).to(device)",
            ),
        ),
        ("tests/test_pipeline.py::test_run_writes_the_run_directory",),
    ),
    Mutation(
        "fixmatch_no_unlabelled_loss",
        "FixMatch's loss leaves out the unlabelled term",
        "mmssl/semi/fixmatch.py",
        (('"loss": loss_x + self.unlabelled_weight * loss_u,', '"loss": loss_x,'),),
        ("tests/semi/test_recipes.py",),
    ),
    Mutation(
        "self_training_ignores_guard",
        "self-training pseudo-labels the samples the OOD guard dropped",
        "mmssl/semi/base.py",
        (
            (
                "self.pseudo_weight.copy_(weights.to(self.pseudo_weight.device) * self.ood_keep.float())",
                "self.pseudo_weight.copy_(weights.to(self.pseudo_weight.device))",
            ),
        ),
        ("tests/semi/test_recipes.py",),
    ),
    Mutation(
        "ambient_nmi_misaligned",
        "ambient-sound target NMI computed against the labels sorted (no longer aligned with the clips)",
        "mmssl/modalities/audio/clusters.py",
        (
            (
                "normalized_mutual_info_score(labels, targets.numpy())",
                "normalized_mutual_info_score(sorted(labels), targets.numpy())",
            ),
        ),
        ("tests/audio/test_recipe.py",),
    ),
    Mutation(
        "trainer_skips_optimizer_step",
        "the trainer never applies the optimiser step",
        "mmssl/train/trainer.py",
        (("                self.optimizer.step()\n", "                pass\n"),),
        ("tests/text/test_recipes.py",),
    ),
    Mutation(
        "mlm_loss_sign",
        "masked-LM loss with its sign flipped (gradient ascent)",
        "mmssl/modalities/text/methods.py",
        (
            (
                "        loss = F.cross_entropy(logits.float(), targets)\n        acc = (",
                "        loss = -F.cross_entropy(logits.float(), targets)\n        acc = (",
            ),
        ),
        ("tests/text/test_recipes.py", "-k", "mlm"),
    ),
)


def _make_workspace() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mmssl_mutants_"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            shutil.copy2(src, root / name)
    return root


def _env(workspace: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(workspace), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _check_import(workspace: Path) -> None:
    """The copy, not the editable install, is what ``import mmssl`` finds there."""
    out = subprocess.run(
        [sys.executable, "-c", "import mmssl; print(mmssl.__file__)"],
        cwd=workspace,
        env=_env(workspace),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(workspace.resolve()):
        raise RuntimeError(f"the tests would import {out}, not the copy under {workspace}")


def _apply(workspace: Path, mutation: Mutation) -> str:
    """Write the mutant; return the original text (to restore)."""
    path = workspace / mutation.file
    original = path.read_text()
    text = original
    for old, new in mutation.replacements:
        count = text.count(old)
        if count != 1:
            raise RuntimeError(
                f"{mutation.name}: expected one match of {old!r} in {mutation.file}, got {count}"
            )
        text = text.replace(old, new)
    path.write_text(text)
    return original


def _run_tests(workspace: Path, args: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """(result, seconds, first failure or last output line) of one pytest run in the workspace."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=workspace, env=_env(workspace), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    result = {0: "passed", 1: "failed"}.get(proc.returncode, f"error (rc {proc.returncode})")
    # The first failing test and why (pytest's -ra summary), else the closing line.
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return result, seconds, (failed or lines[-1:] or [""])[0]


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("mutation", "tests run", "result", "seconds")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args(argv)

    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or []) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:32s} {m.description}  [{' '.join(m.tests)}]")
        return 0

    workspace = _make_workspace()
    rows: list[tuple[str, str, str, str]] = []
    survivors = 0
    try:
        _check_import(workspace)
        # The original code must pass every selected test, or a "kill" means nothing.
        selected: list[tuple[str, ...]] = list(dict.fromkeys(m.tests for m in mutations))
        for tests in selected:
            result, seconds, last = _run_tests(workspace, tests, args.timeout)
            rows.append(("original", " ".join(tests), result, f"{seconds:.0f}"))
            print(f"original  [{' '.join(tests)}]: {result} ({last})", flush=True)
            if result != "passed":
                print(_table(rows))
                print("the unmodified code fails these tests: fix that first", file=sys.stderr)
                return 2
        for m in mutations:
            original = _apply(workspace, m)
            try:
                result, seconds, last = _run_tests(workspace, m.tests, args.timeout)
            finally:
                (workspace / m.file).write_text(original)
            verdict = {"failed": "killed", "passed": "survived"}.get(result, result)
            survivors += verdict == "survived"
            rows.append((m.name, " ".join(m.tests), verdict, f"{seconds:.0f}"))
            print(f"{m.name}: {verdict} ({last})", flush=True)
    finally:
        if args.keep:
            print(f"workspace kept: {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)
    print()
    print(_table(rows))
    killed = sum(r[2] == "killed" for r in rows)
    print(f"\n{killed} of {len(mutations)} mutants killed, {survivors} survived")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
