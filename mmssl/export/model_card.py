"""``MODEL_CARD.md`` beside the exported weights: what was trained, on what, for how long, how it scored
against the random-init baseline (``metrics.json``), how to load the files, and the export command; for a
cross-modal run, a table of its towers and how to load each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmssl.export.common import RunInfo, Tower

CARD_NAME = "MODEL_CARD.md"
FILE_ROLES = {
    "model.safetensors": "the weights (safetensors: tensors only, no pickle)",
    "config.json": "what rebuilds the model (see Loading)",
    "encoder.onnx": "the encoder's graph and weights (ONNX)",
    "encoder.onnx.data": "the ONNX weights (external data, beside encoder.onnx)",
}


@dataclass
class TowerSection:
    """What the card says about one exported tower: its folder, its table rows and how to load it."""

    tower: Tower
    folder: Path
    details: dict[str, Any]  # row label -> value (modality, feature size, parameters, ONNX input ...)
    usage: list[str]  # Markdown lines: the code that loads it


def _fmt(value: Any, std: Any = None) -> str:
    """Accuracies (floats in [0, 1]) in %, with ``± std`` when given; other numbers as they are."""
    if value is None:
        return "-"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    is_fraction = isinstance(value, float) and 0.0 <= value <= 1.0
    if std is not None and isinstance(std, (int, float)):
        return f"{100 * value:.1f} ± {100 * std:.1f}" if is_fraction else f"{value:.4g} ± {std:.2g}"
    return f"{100 * value:.1f}" if is_fraction else f"{value:.4g}"


def metrics_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: one per metric of ``eval``, a column for this run and one per baseline."""
    evals = metrics.get("eval") or {}
    if not isinstance(evals, dict) or not evals:
        return []
    baselines = {k: v for k, v in (metrics.get("baselines") or {}).items() if isinstance(v, dict)}
    columns = [("this run", evals)] + [(name.replace("_", " "), vals) for name, vals in baselines.items()]
    rows = []
    for key in evals:
        stem = key[: -len("_std")] if key.endswith("_std") else None
        if stem is not None and (stem in evals or stem + "_mean" in evals):
            continue  # shown with its mean
        base = key[: -len("_mean")] if key.endswith("_mean") else key
        rows.append((base, key, base + "_std"))
    lines = ["| metric | " + " | ".join(t for t, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, key, std_key in rows:
        cells = [_fmt(vals.get(key), vals.get(std_key)) for _, vals in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _options(section: Any, skip: tuple[str, ...] = ("name",)) -> str:
    if not isinstance(section, dict):
        return ""
    items = [f"{k}={json.dumps(v)}" for k, v in section.items() if k not in skip and v is not None]
    return ", ".join(items)


def render_card(
    info: RunInfo,
    fmt: str,
    command: str,
    files: list[Path],
    sections: list[TowerSection],
    notes: list[str],
    checks: dict[str, float],
) -> str:
    """The card's Markdown text; ``sections``: the exported towers, the run's encoder first."""
    cfg, metrics = info.config, info.metrics or {}
    name = cfg.get("name") or info.run_dir.name
    method = cfg.get("method") if isinstance(cfg.get("method"), dict) else {}
    method_name = metrics.get("method") or method.get("name") or "unknown method"
    encoder = info.spec["name"]
    if info.crossmodal:
        towers = ", ".join(f"{t.key} `{t.spec['name']}`" for t in info.towers)
        title = f"# {name}: {method_name}-pretrained towers {towers}"
    else:
        title = f"# {name}: {method_name}-pretrained `{encoder}` ({info.modality or 'unknown modality'})"
    out: list[str] = [title, ""]
    if cfg.get("description"):
        out += [str(cfg["description"]), ""]
    out += [
        f"Self-supervised encoder trained with mmssl, exported as **{fmt}** from `{info.run_dir}`:",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Files",
        "",
    ]
    root = sections[0].folder if sections else info.run_dir
    out += [
        f"- `{_relative(p, root)}`" + (f": {FILE_ROLES[p.name]}" if p.name in FILE_ROLES else "")
        for p in files
    ]
    if info.crossmodal:
        out += _towers_table(info, sections, root)
    heading = f"## Encoder: tower `{info.main.key}`" if info.crossmodal else "## Encoder"
    out += ["", heading, "", "| | |", "|---|---|"]
    out.append(f"| registry name | `{encoder}` |")
    out.append(f"| options | `{json.dumps(info.spec['kwargs'])}` |")
    for key, value in (sections[0].details if sections else {}).items():
        out.append(f"| {key} | {value} |")
    out += ["", "## Recipe", ""]
    out.append(f"- method: `{method_name}`" + (f" ({_options(method)})" if _options(method) else ""))
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    steps = metrics.get("steps", train.get("steps"))
    if steps is not None:
        out.append(f"- steps: {steps}")
    picks = ("batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "precision", "seed")
    train_opts = ", ".join(f"{k}={json.dumps(train[k])}" for k in picks if k in train)
    if train_opts:
        out.append(f"- training: {train_opts}")
    if metrics.get("final_loss") is not None:
        out.append(f"- final training loss: {metrics['final_loss']:.4g}")
    if metrics.get("train_seconds") is not None:
        out.append(f"- training time: {metrics['train_seconds']} s")
    out += ["", "## Data", ""]
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    if data:
        out.append(
            f"- dataset: `{data.get('name', '?')}`" + (f" ({_options(data)})" if _options(data) else "")
        )
    run_data = metrics.get("data") if isinstance(metrics.get("data"), dict) else {}
    for key in ("num_train", "num_test"):
        if key in run_data:
            out.append(f"- {key.replace('num_', '')} samples: {run_data[key]}")
    if not data and not run_data:
        out.append("- unknown (the run has no config.yaml)")
    out += ["", "## Results", ""]
    table = metrics_table(metrics) if metrics else []
    if table:
        out += [
            "Evaluation of the frozen encoder, against the baselines of the recipe (random init: the same "
            "architecture untrained). Accuracies in %; `± std` over the evaluation seeds.",
            "",
            *table,
        ]
    else:
        out.append("No metrics: the run has no metrics.json (or it holds no evaluation).")
    if checks:
        out += ["", "Export checks:", ""]
        out += [f"- {k}: {v:.3g}" for k, v in checks.items()]
    out += ["", "## Loading", ""]
    if info.crossmodal:
        for section in sections:
            t = section.tower
            out += [f"Tower `{t.key}` (`{t.spec['name']}`, `{_relative(section.folder, root)}`):", ""]
            out += [*section.usage, ""]
    elif sections:
        out += sections[0].usage
    if notes:
        out += ["", "## Notes", ""]
        out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def _relative(path: Path, root: Path) -> str:
    """``path`` inside the export folder ``root`` as the card shows it (``.`` for the folder itself)."""
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return path.name


def _towers_table(info: RunInfo, sections: list[TowerSection], root: Path) -> list[str]:
    """One row per tower of the run: the item key it reads, the encoder, where its export is (or why it
    has none)."""
    exported = {s.tower.key: s for s in sections}
    lines = [
        "",
        "## Towers",
        "",
        "A cross-modal run trains one encoder per modality of its pairs; each tower reads the item key "
        "it is named by and loads on its own from its folder.",
        "",
        "| tower | encoder | options | modality | global feature size | parameters | folder |",
        "|---|---|---|---|---|---|---|",
    ]
    for tower in info.towers:
        section = exported.get(tower.key)
        details = section.details if section else {}
        folder = f"`{_relative(section.folder, root)}`" if section else "not exported (see Notes)"
        role = " (the run's encoder)" if tower is info.main else ""
        lines.append(
            f"| `{tower.key}`{role} | `{tower.spec['name']}` | `{json.dumps(tower.spec['kwargs'])}` | "
            f"{tower.modality or 'unknown'} | {details.get('global feature size', '-')} | "
            f"{details.get('parameters', '-')} | {folder} |"
        )
    return lines


def write_card(folder: Path, text: str) -> Path:
    path = folder / CARD_NAME
    path.write_text(text)
    return path
