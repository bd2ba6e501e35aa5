"""From a validated recipe to a run directory: build, pretrain, evaluate, report.

``run(cfg)`` is what ``mmssl run`` does::

    data = DATASETS[cfg.data.name](seed=seed, **options)   # a DataBundle
    evaluator.preflight(data, **options)                   # where defined: checks before pretraining
    encoder = ENCODERS[cfg.encoder.name](**options)        # seeded; an untrained copy is the baseline
    method = METHODS[cfg.method.name](encoder, data, **options)
    Trainer(cfg.train, method, data.pretrain, monitors=[online kNN]).fit()
    evaluator(method.encoder, data, EvalContext(...), **options) for the trained and the untrained encoder
    write metrics.json, encoder.pt, loss_curve.png; print a table (mmssl.report)

Every builder receives what the runner provides explicitly (positional ``encoder``, ``data``, an
``EvalContext``, the ``seed`` keyword); the recipe's options are checked against the builder's typed
parameters (:mod:`mmssl.options`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmssl import encoders
from mmssl.config import EVAL_RESERVED, RecipeConfig, dump, retrain_baselines
from mmssl.core import distributed as dist
from mmssl.core.method import Method
from mmssl.data import DataBundle, SkippedWhileLoading
from mmssl.encoders import load_encoder, save_encoder
from mmssl.errors import ConfigError
from mmssl.eval.context import EvalContext
from mmssl.eval.monitor import KNNMonitor, MonitorOptions
from mmssl.figures import hand_new_figures_to
from mmssl.options import build_dataclass, builder_options
from mmssl.registry import DATASETS, EVALUATORS, METHODS
from mmssl.report import format_table, plot_loss_curve
from mmssl.safe_load import load_weights
from mmssl.train.checkpoint import load_checkpoint
from mmssl.train.fsdp import load_sharded
from mmssl.train.host_memory import retain_freed_memory
from mmssl.train.trainer import Trainer, TrainResult, pick_device, seed_everything

log = logging.getLogger(__name__)


def run_dir_for(cfg: RecipeConfig) -> Path:
    return Path(cfg.out_dir) if cfg.out_dir else Path("runs") / cfg.name


def build_data(cfg: RecipeConfig) -> DataBundle:
    """The recipe's dataset bundle: ``builder(seed=train.seed, **options)``."""
    name, options = cfg.component("data")
    builder = DATASETS.get(name)
    options = builder_options(builder, options, "data", kind="dataset", name=name)
    bundle = builder(seed=cfg.train.seed, **options)
    bundle.name = bundle.name or name
    return bundle


def build_encoder(cfg: RecipeConfig) -> nn.Module:
    name, options = cfg.component("encoder")
    return encoders.build_encoder(name, options)


def build_method(cfg: RecipeConfig, encoder: nn.Module, data: DataBundle) -> Method:
    """``builder(encoder, data, **options)``: every method receives the run's encoder and data bundle."""
    name, options = cfg.component("method")
    builder = METHODS.get(name)
    method = builder(encoder, data, **builder_options(builder, options, "method", kind="method", name=name))
    if not isinstance(method, Method):
        raise TypeError(f"method '{name}' built a {type(method).__name__}, not an mmssl Method")
    return method


def encoder_spec(cfg: RecipeConfig) -> dict[str, Any]:
    name, kwargs = cfg.component("encoder")
    return {"name": name, "kwargs": kwargs}


def evaluate(
    cfg: RecipeConfig,
    method: Method,
    data: DataBundle,
    device: torch.device,
    figures_dir: Path | None = None,
    split_over_ranks: bool = False,
) -> dict[str, float]:
    """Run every evaluator named in ``cfg.eval`` on ``method.encoder``; merged metric dict.

    Each is called as ``fn(encoder, data, ctx, **options)`` with one :class:`EvalContext` (device, seed,
    the method, where figures may go, whether every rank is evaluating: :func:`ranks_share_evaluation`,
    whether the recipe trains in NHWC memory format). With ``train.channels_last`` the method's 4-D weights
    are converted to NHWC in place first (a no-op after the trainer, which converted them already).
    ``eval.num_threads`` sets the intra-op CPU threads for the evaluators and restores the previous count
    after (a recipe that trains on 1 thread beside a loader worker can evaluate on every core).
    """
    with intra_op_threads(cfg.eval.get("num_threads")):
        if cfg.train.channels_last:  # as the trainer did; a baseline or a loaded checkpoint starts NCHW
            method.to(memory_format=torch.channels_last)
        ctx = EvalContext(
            device=device,
            seed=cfg.train.seed,
            method=method,
            figures_dir=figures_dir,
            split_over_ranks=split_over_ranks,
            channels_last=cfg.train.channels_last,
        )
        results: dict[str, float] = {}
        for name, options in cfg.eval.items():
            if name in EVAL_RESERVED:
                continue
            fn = EVALUATORS.get(name)
            opts = builder_options(fn, options or {}, f"eval.{name}", kind="evaluator", name=name)
            results.update(fn(method.encoder, data, ctx, **opts))
    return results


def data_stats(data: DataBundle) -> dict[str, Any]:
    """The bundle's ``stats`` as metrics.json gives them: with the files skipped while items were loaded
    (video clips that fail mid-decode, in any data-loader worker; see
    :class:`~mmssl.data.SkippedWhileLoading`) added to ``num_skipped`` / ``bad_files``."""
    skipped = data.find_extra(SkippedWhileLoading)
    return skipped.add_to(data.stats) if skipped is not None else dict(data.stats)


def ranks_share_evaluation(cfg: RecipeConfig) -> bool:
    """Whether every rank of a torchrun launch takes part in the evaluation after pretraining, each
    extracting ``1 / world_size`` of the frozen features: under DDP or FSDP (after training each rank holds
    the whole model, rank 0's weights broadcast to all), with no retrained baseline, when every evaluator of
    the recipe declares ``splits_over_ranks`` (kNN, linear, few-shot). Otherwise rank 0 evaluates alone, as
    in a one-process run."""
    if not dist.is_distributed() or dist.get_world_size() < 2:
        return False
    if retrain_baselines(cfg):
        return False
    names = [name for name in cfg.eval if name not in EVAL_RESERVED]
    return all(getattr(EVALUATORS.get(name), "splits_over_ranks", False) for name in names)


def preflight(cfg: RecipeConfig, data: DataBundle) -> None:
    """Before pretraining: every evaluator with a ``preflight(data, **options)`` attribute checks what it
    can about the data without a trained encoder (a shot count no class can supply, a dataset of its own
    that cannot be built), so that a run does not fail on it after its pretraining."""
    for name, options in cfg.eval.items():
        if name in EVAL_RESERVED:
            continue
        fn = EVALUATORS.get(name)
        check = getattr(fn, "preflight", None)
        if check is not None:
            check(data, **builder_options(fn, options or {}, f"eval.{name}", kind="evaluator", name=name))


def fit_batch_to_data(cfg: RecipeConfig, data: DataBundle) -> RecipeConfig:
    """``cfg`` with ``train.batch_size`` lowered, when one global batch (``train.batch_size`` x processes)
    is more than the pretraining set holds, to the largest batch that fits: a small dataset trains on
    batches of all its samples instead of failing, and a warning names the key and both sizes. Fewer
    samples than processes: :class:`~mmssl.errors.ConfigError`. ``cfg`` itself is not changed."""
    try:
        n = len(data.pretrain)  # type: ignore[arg-type]
    except TypeError:
        return cfg
    # The trainer joins the process group later: under torchrun read the launch's size and rank.
    before_init = not dist.is_distributed()
    world = int(os.environ.get("WORLD_SIZE", 1)) if before_init else dist.get_world_size()
    main_process = os.environ.get("RANK", "0") == "0" if before_init else dist.is_main_process()
    batch = cfg.train.batch_size
    if n >= batch * world:
        return cfg
    name = data.name or cfg.data.get("name", "?")
    procs = f" x {world} processes" if world > 1 else ""
    if n < world:
        raise ConfigError(
            f"train.batch_size: dataset '{name}' has {n} pretraining samples, fewer than the {world} "
            "processes (each needs at least one per step)"
        )
    fitted = n // world
    if main_process:
        log.warning(
            "train.batch_size=%d%s is more than the %d pretraining samples of dataset '%s': training with "
            "train.batch_size=%d (set it to at most %d to silence this)",
            batch,
            procs,
            n,
            name,
            fitted,
            fitted,
        )
    fitted_cfg = copy.copy(cfg)
    fitted_cfg.train = dataclasses.replace(cfg.train, batch_size=fitted)
    return fitted_cfg


def train(
    cfg: RecipeConfig, data: DataBundle | None = None, keep_logger_open: bool = False
) -> tuple[nn.Module, nn.Module, TrainResult, Path]:
    """Pretrain; returns (method, untrained encoder copy, result, run_dir).

    ``train.batch_size`` larger than the pretraining set is lowered to fit (:func:`fit_batch_to_data`);
    the run directory's ``config.yaml`` records the batch size used. ``keep_logger_open``: the run logger
    stays open as ``result.logger`` for the figures written next (:func:`~mmssl.figures.hand_new_figures_to`
    logs them and closes it).
    """
    apply_host_settings(cfg)
    run_dir = run_dir_for(cfg)
    data = data or build_data(cfg)
    cfg = fit_batch_to_data(cfg, data)
    seed_everything(cfg.train.seed)
    encoder = build_encoder(cfg)
    untrained = copy.deepcopy(encoder)
    method = build_method(cfg, encoder, data)
    if dist.is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump(cfg))
    trainer = Trainer(
        cfg.train,
        method,
        data.pretrain,
        run_dir=run_dir,
        resume=cfg.resume,
        extra_state={"config": cfg.to_dict(), "encoder_spec": encoder_spec(cfg)},
        collate_fn=data.collate_fn,
        batch_transform=data.batch_transform,
        monitors=build_monitors(cfg, data),
        log_options=cfg.log,
        keep_logger_open=keep_logger_open,
    )
    result = trainer.fit()
    if dist.is_main_process():
        save_encoder(trainer.method.encoder, encoder_spec(cfg), run_dir / "encoder.pt")
        # Methods with more encoders (cross-modal towers) list them as {key: (module, spec)}.
        for key, (module, spec) in trainer.method.extra_encoders().items():
            save_encoder(module, spec, run_dir / "encoders" / f"{key}.pt")
    return trainer.method, untrained, result, run_dir


def build_monitors(cfg: RecipeConfig, data: DataBundle) -> list[KNNMonitor]:
    """``eval.monitor: {every: N, ...}``: an online kNN accuracy on fixed subsets of the labelled splits."""
    options = build_dataclass(MonitorOptions, cfg.eval.get("monitor") or {}, "eval.monitor")
    if options.every <= 0:
        return []
    return [
        KNNMonitor(data, options, _device(cfg), seed=cfg.train.seed, channels_last=cfg.train.channels_last)
    ]


def _device(cfg: RecipeConfig) -> torch.device:
    return (
        pick_device(cfg.train.device)
        if not torch.cuda.is_available() or not dist.is_distributed()
        else torch.device("cuda", torch.cuda.current_device())
    )


def report(
    cfg: RecipeConfig,
    method: nn.Module,
    untrained: nn.Module | None,
    data: DataBundle,
    run_dir: Path,
    result: TrainResult | None,
    split_over_ranks: bool = False,
) -> dict[str, Any]:
    """Evaluate the trained method and the baselines, write metrics.json and figures, print a table.

    Baselines: ``random_init`` evaluates the same architecture untrained; a mapping
    ``{name: [overrides]}`` retrains the recipe with those overrides (e.g. supervised-only).
    ``split_over_ranks``: every rank runs this (see :func:`ranks_share_evaluation`); rank 0 writes.
    """
    device = _device(cfg)
    main = dist.is_main_process()
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {
        "recipe": cfg.name,
        "method": cfg.method["name"],
        "encoder": cfg.encoder["name"],
        "modality": cfg.modality,
        "steps": cfg.train.steps,
        "final_loss": result.final_loss if result else None,
        "train_seconds": round(result.seconds, 2) if result else None,
        "train_samples_per_s": round(result.samples_per_s, 1) if result else None,
        "data": dict(data.stats),
        "eval_ranks": dist.get_world_size() if split_over_ranks else 1,  # processes that extracted features
        "eval": evaluate(
            cfg,
            method.to(device),
            data,
            device,
            figures_dir=run_dir / "figures" if main else None,
            split_over_ranks=split_over_ranks,
        ),
        "baselines": {},
    }
    if untrained is not None and "random_init" in cfg.eval.get("baselines", []):
        seed_everything(cfg.train.seed)
        baseline = build_method(cfg, untrained, data).to(device)
        metrics["baselines"]["random_init"] = evaluate(
            cfg, baseline, data, device, split_over_ranks=split_over_ranks
        )
    for name, bcfg in retrain_baselines(cfg).items():
        bcfg.out_dir = str(run_dir / "baselines" / name)
        print(f"baseline '{name}': retraining with its overrides")
        bdata = data if bcfg.data == cfg.data else build_data(bcfg)  # built once: trained and evaluated on
        bmethod, _, _, _ = train(bcfg, bdata)
        metrics["baselines"][name] = evaluate(bcfg, bmethod.to(device), bdata, device)
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    metrics["data"] = data_stats(data)  # after training and evaluation: files skipped while loading
    if not main:
        return metrics
    # Methods with pictures to show (reconstructions, colourisations ...) save them here.
    method.save_figures(run_dir / "figures", data, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_loss_curve(run_dir)
    print(format_table(metrics))
    print(f"run directory: {run_dir}")
    return metrics


def apply_host_settings(cfg: RecipeConfig) -> None:
    """Process-wide settings of a run: intra-op CPU threads (``train.num_threads``) and the C library's
    handling of freed memory (``train.retain_freed_memory``, :mod:`mmssl.train.host_memory`)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if cfg.train.retain_freed_memory:
        retain_freed_memory()


@contextlib.contextmanager
def intra_op_threads(num_threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(num_threads)`` inside the block, the previous count restored after; ``None``
    leaves the count as it is."""
    if num_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(cfg: RecipeConfig) -> dict[str, Any] | None:
    """``mmssl run``: pretrain, then evaluate against the random-init baseline."""
    apply_host_settings(cfg)
    data = build_data(cfg)
    preflight(cfg, data)
    method, untrained, result, run_dir = train(cfg, data, keep_logger_open=True)
    skipped = data.find_extra(SkippedWhileLoading)
    if skipped is not None:  # every rank is here: each rank's workers' finds, merged for rank 0
        skipped.gather_over_ranks()
    shared = ranks_share_evaluation(cfg)
    if not dist.is_main_process() and not shared:
        dist.cleanup_distributed()
        return None
    if shared:
        # every rank evaluates the encoder rank 0 saved: after DDP the ranks' BatchNorm statistics differ,
        # after FSDP only rank 0 gathered the trained weights (on the device: NCCL broadcasts CUDA tensors)
        dist.broadcast_state(method.to(_device(cfg)))
    with hand_new_figures_to(result.logger, run_dir):  # every PNG of the evaluation to TensorBoard, W&B too
        metrics = report(cfg, method, untrained, data, run_dir, result, split_over_ranks=shared)
    main = dist.is_main_process()  # asked before the group ends: without a group every process is rank 0
    dist.cleanup_distributed()
    if not main:
        return None
    for fmt in cfg.export:  # after the run's own files are written: a failed export loses nothing
        from mmssl.export import export_run

        print(export_run(run_dir, fmt).summary())
    return metrics


def eval_checkpoint(cfg: RecipeConfig) -> dict[str, Any]:
    """``mmssl eval RECIPE ckpt=PATH``: evaluate a saved training checkpoint or encoder file."""
    if not cfg.ckpt:
        raise ValueError(
            "mmssl eval needs ckpt=PATH (a checkpoints/last.pt, checkpoints/last_sharded or an encoder.pt)"
        )
    apply_host_settings(cfg)
    data = build_data(cfg)
    seed_everything(cfg.train.seed)
    path = Path(cfg.ckpt)
    raw = load_weights(path) if path.is_file() else None
    encoder = build_encoder(cfg)
    method = build_method(cfg, encoder, data)
    if isinstance(raw, dict) and raw.get("format") == encoders.ENCODER_FORMAT:
        method.encoder.load_state_dict(load_encoder(path).state_dict())
    elif path.is_dir():  # a sharded checkpoint of train.strategy=fsdp (checkpoints/last_sharded)
        load_sharded(path, method)
    else:
        method.load_state_dict(load_checkpoint(path)["model"])
    seed_everything(cfg.train.seed)
    untrained = build_encoder(cfg)
    run_dir = run_dir_for(cfg)
    return report(cfg, method, untrained, data, run_dir, None)
