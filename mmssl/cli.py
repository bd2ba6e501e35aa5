"""``mmssl run | train | eval | list | show``.

mmssl run recipes/quickstart.yaml train.steps=200 out_dir=runs/try
mmssl run image/moco_v2 method.negatives=memory_bank      # recipe names resolve under recipes/
mmssl train RECIPE [overrides]      # pretrain only
mmssl eval RECIPE ckpt=PATH         # evaluate a checkpoint or encoder.pt (and random init)
mmssl list                          # recipes, methods, encoders, datasets, evaluators
mmssl show RECIPE [overrides]       # the resolved config
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmssl.config import PROFILES, ConfigError, dump, load_recipe
from mmssl.errors import CorruptFileError, DataError
from mmssl.registry import DATASETS, ENCODERS, EVALUATORS, METHODS, RegistryError


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up (a path to a file is taken as is before any of these): ./recipes,
    then the recipes an installed package carries (``mmssl/recipes``, package data built from the
    checkout's ``recipes/``), then the source checkout's ``recipes/`` (a checkout or editable install)."""
    from importlib.resources import files

    dirs = [Path.cwd() / "recipes"]
    packaged = files("mmssl").joinpath("recipes")
    if isinstance(packaged, Path):  # on disk, as pip installs wheels (not from a zip archive)
        dirs.append(packaged)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        dirs.append(checkout / "recipes")
    return [
        d for i, d in enumerate(dirs) if d.is_dir() and d.resolve() not in [x.resolve() for x in dirs[:i]]
    ]


def resolve_recipe(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for d in recipe_dirs():
        for candidate in (d / name, d / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    known = ", ".join(sorted(list_recipes())) or "(none found)"
    raise ConfigError(f"recipe '{name}' not found (a path, or a name under recipes/: {known})")


def recipes_in(folder: Path) -> dict[str, Path]:
    """``{name: path}`` of the recipes under ``folder``. Files under a folder or with a name starting with
    ``_`` are partial recipes that others name as their ``base`` (e.g. ``_profiles/gpu.yaml``), not recipes
    of their own."""
    found = {}
    for path in sorted(folder.rglob("*.yaml")):
        relative = path.relative_to(folder)
        if not any(part.startswith("_") for part in relative.parts):
            found[relative.with_suffix("").as_posix()] = path
    return found


def list_recipes() -> list[str]:
    names = set()
    for d in recipe_dirs():
        names.update(recipes_in(d))
    return sorted(names)


def _load(args: argparse.Namespace):
    return load_recipe(resolve_recipe(args.recipe), args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from mmssl import pipeline

    pipeline.run(_load(args))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmssl import pipeline
    from mmssl.core.distributed import is_main_process
    from mmssl.figures import hand_new_figures_to
    from mmssl.report import plot_loss_curve

    cfg = _load(args)
    _, _, result, run_dir = pipeline.train(cfg, keep_logger_open=True)
    with hand_new_figures_to(result.logger, run_dir):  # the loss curve to TensorBoard and W&B too
        # Rank 0 alone: another rank rewriting the PNG while rank 0 reads it back for the loggers made
        # rank 0 fail (PIL.UnidentifiedImageError, 1 pass in 30 of tests/test_multinode.py).
        if is_main_process():
            plot_loss_curve(run_dir)
    print(f"trained {result.steps} steps, final loss {result.final_loss}; run directory: {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mmssl import pipeline

    pipeline.eval_checkpoint(_load(args))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(dump(_load(args)), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = list_recipes()
    profiles = {n: [p for p in PROFILES if f"{n}_{p}" in names] for n in names}
    shown_as_profile = {f"{n}_{p}" for n, ps in profiles.items() for p in ps}
    print("recipes (profile=NAME runs a profile of one, e.g. mmssl run image/simclr profile=gpu):")
    for r in names:
        if r not in shown_as_profile:
            print(f"  {r:<32} {'profiles: ' + ', '.join(profiles[r]) if profiles[r] else ''}".rstrip())
    for title, reg in (
        ("methods", METHODS),
        ("encoders", ENCODERS),
        ("datasets", DATASETS),
        ("evaluators", EVALUATORS),
    ):
        print(f"{title}:")
        for n in reg.names():
            print(f"  {n:<24} {reg.modality_of(n) or 'any modality'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mmssl.export import ExportError, export_run

    try:
        result = export_run(args.run_dir, args.format, args.out, allow_mismatch=args.allow_mismatch)
    except ExportError as err:
        print(f"mmssl: export error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mmssl.compare import CompareError, compare_runs

    try:
        result = compare_runs(args.run_dirs, args.png)
    except CompareError as err:
        print(f"mmssl: compare error: {err}", file=sys.stderr)
        return 2
    print(result.table)
    for label in result.without_curves:
        print(f"mmssl: {label} has no loss curve (metrics.jsonl); not in the PNG", file=sys.stderr)
    if result.png is not None:
        print(f"curves: {result.png}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmssl", description="Self-supervised learning beyond still images."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, text in (
        ("run", cmd_run, "pretrain, then run the recipe's evaluations"),
        ("train", cmd_train, "pretrain only"),
        ("eval", cmd_eval, "evaluate ckpt=PATH with the recipe's evaluations"),
        ("show", cmd_show, "print the resolved config"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("recipe", help="a recipe path or a name under recipes/ (e.g. image/simclr)")
        p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=200 out_dir=runs/x")
        p.set_defaults(fn=fn)
    p = sub.add_parser("list", help="recipes, methods, encoders, datasets and evaluators")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("export", help="write a run's encoder as safetensors, timm, torchvision or onnx")
    p.add_argument("run_dir", help="a run directory (holds encoder.pt, config.yaml, metrics.json)")
    p.add_argument("--format", required=True, choices=("safetensors", "timm", "torchvision", "onnx"))
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR/export/FORMAT)")
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="timm/torchvision: write an encoder that differs from the library model (the card says how)",
    )
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("compare", help="several runs' final metrics (markdown table) and curves (PNG)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (each with metrics.json)")
    p.add_argument("--png", default="compare.png", help="where the curves go (default: ./compare.png)")
    p.set_defaults(fn=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmssl.export.common import ExportError
    from mmssl.train.checkpoint import CheckpointWriteError
    from mmssl.train.preemption import Preempted
    from mmssl.train.trainer import NonFiniteLossError

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except NonFiniteLossError as err:
        print(f"mmssl: training stopped: {err}", file=sys.stderr)
        return 1
    except (ConfigError, RegistryError) as err:
        print(f"mmssl: config error: {err}", file=sys.stderr)
        return 2
    except (CorruptFileError, DataError, FileNotFoundError) as err:
        print(f"mmssl: data error: {err}", file=sys.stderr)
        return 1
    except ExportError as err:
        print(f"mmssl: export error: {err}", file=sys.stderr)
        return 2
    except CheckpointWriteError as err:
        print(f"mmssl: training stopped: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"mmssl: stopped: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mmssl: interrupted (resume with resume=auto)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
