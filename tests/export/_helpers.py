"""A fake finished run: ``encoder.pt`` of a freshly built encoder (with non-trivial BatchNorm statistics,
so a key mix-up shows in the features), ``config.yaml`` and ``metrics.json``; no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mmssl.encoders import build_encoder, save_encoder

METRICS = {
    "recipe": "fake",
    "method": "simclr",
    "steps": 2,
    "final_loss": 5.25,
    "data": {"num_train": 60, "num_test": 40},
    "eval": {"fewshot_1_mean": 0.175, "fewshot_1_std": 0.01, "knn_top1": 0.3, "linear_top1": 0.25},
    "baselines": {"random_init": {"fewshot_1_mean": 0.125, "fewshot_1_std": 0.02, "knn_top1": 0.1}},
}


def randomize_batchnorm_(module: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine parameters in every BatchNorm (a trained model's look)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def make_run(
    root: Path,
    name: str,
    kwargs: dict[str, Any] | None = None,
    modality: str = "image",
    data: dict[str, Any] | None = None,
    metrics: bool = True,
) -> tuple[Path, nn.Module]:
    """``root/<name>-run`` holding a run of encoder ``name``; returns it and the encoder (eval mode)."""
    kwargs = dict(kwargs or {})
    torch.manual_seed(0)
    encoder = build_encoder(name, dict(kwargs))
    randomize_batchnorm_(encoder)
    run_dir = root / f"{name}-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_encoder(encoder, {"name": name, "kwargs": kwargs}, run_dir / "encoder.pt")
    config = {
        "name": f"fake_{name}",
        "modality": modality,
        "description": f"a test run of {name}",
        "method": {"name": "simclr", "temperature": 0.2},
        "encoder": {"name": name, **kwargs},
        "data": {"name": "procedural", **(data or {})},
        "train": {"steps": 2, "batch_size": 16, "optimizer": "lars", "lr": 1.2, "seed": 0},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics:
        (run_dir / "metrics.json").write_text(json.dumps({**METRICS, "encoder": name}))
    return run_dir, encoder.eval()


def make_towers_run(
    root: Path,
    main: tuple[str, dict[str, Any]],
    towers: dict[str, tuple[str, dict[str, Any]]],
    encoder_key: str = "image",
    data: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, nn.Module]]:
    """A fake cross-modal run: :func:`make_run`'s files for the run's encoder ``main`` (reading
    ``encoder_key``) plus ``encoders/<key>.pt`` for each extra tower, as the pipeline saves what the
    method's ``extra_encoders()`` returns. Returns the run and every tower by key (eval mode)."""
    name, kwargs = main
    run_dir, encoder = make_run(root, name, kwargs, modality="crossmodal", data=data)
    built = {encoder_key: encoder}
    for seed, (key, (tower_name, tower_kwargs)) in enumerate(towers.items(), start=1):
        torch.manual_seed(seed)
        tower = build_encoder(tower_name, dict(tower_kwargs))
        randomize_batchnorm_(tower, seed)
        save_encoder(tower, {"name": tower_name, "kwargs": tower_kwargs}, run_dir / "encoders" / f"{key}.pt")
        built[key] = tower.eval()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["method"] = {
        "name": "crossmodal_contrastive",
        "encoder_key": encoder_key,
        "towers": {key: {"name": n, **kw} for key, (n, kw) in towers.items()},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir, built
