"""``mmssl compare RUN_DIR... [--png PATH]``: several finished runs side by side.

:func:`compare_runs` reads each run's ``metrics.json`` (its final ``eval`` metrics and
``baselines.random_init``) into one markdown table, a column per run, each cell the run's value and, in
parentheses, its difference from that run's random init; and draws the runs' ``metrics.jsonl`` curves (the
training loss, and the online kNN accuracy of runs that monitored one) into one PNG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmssl.figures import save_figure
from mmssl.report import _fmt, metric_rows


class CompareError(ValueError):
    """A run that cannot be compared; the message names the directory or file at fault."""


@dataclass
class Run:
    label: str  # the directory as given on the command line
    metrics: dict[str, Any]
    loss: dict[int, float] = field(default_factory=dict)  # step -> training loss (metrics.jsonl)
    knn: dict[int, float] = field(default_factory=dict)  # step -> online kNN top-1 (metrics.jsonl)


def read_run(run_dir: str | Path) -> Run:
    """A run directory's ``metrics.json`` and, when there, its ``metrics.jsonl`` curves."""
    path = Path(run_dir)
    if not path.exists():
        raise CompareError(f"run directory '{run_dir}' does not exist")
    if not path.is_dir():
        raise CompareError(f"'{run_dir}' is not a run directory (a folder holding metrics.json)")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise CompareError(
            f"'{metrics_path}' not found: is '{run_dir}' a finished run? (`mmssl run` writes metrics.json "
            "when its evaluations end; `mmssl train` alone does not)"
        )
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as err:
        raise CompareError(f"'{metrics_path}' is not valid JSON: {err}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("eval"), dict):
        raise CompareError(f"'{metrics_path}' has no 'eval' metrics")
    run = Run(label=str(run_dir).rstrip("/") or str(run_dir), metrics=metrics)
    log = path / "metrics.jsonl"
    if log.is_file():
        # As report.plot_loss_curve: a resumed run re-logs steps, keep the last value of each.
        try:
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise CompareError(f"'{log}' is not valid JSON lines: {err}") from None
        run.loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
        run.knn = {r["step"]: r["monitor_knn_top1"] for r in rows if "monitor_knn_top1" in r}
    return run


def _metric_rows(runs: list[Run]) -> list[tuple[str, str, str | None]]:
    """:func:`mmssl.report.metric_rows` over the union of the runs' eval keys, in first-seen order."""
    rows: list[tuple[str, str, str | None]] = []
    for run in runs:
        for row in metric_rows(run.metrics["eval"]):
            if all(r[0] != row[0] for r in rows):
                rows.append(row)
    return rows


def _delta(value: Any, baseline: Any) -> str:
    """``value - baseline`` as :func:`mmssl.report._fmt` shows ``value``: points of % for accuracies."""
    if not isinstance(value, (int, float)) or not isinstance(baseline, (int, float)):
        return ""
    accuracy = isinstance(value, float) and 0 <= value <= 1
    diff = 100 * (value - baseline) if accuracy else value - baseline
    text = f"{diff:+.1f}" if accuracy else f"{diff:+.4g}"
    return f" ({'+0' + text[2:] if text.startswith('-0') and float(text) == 0 else text})"  # no "-0.0"


def format_markdown(runs: list[Run]) -> str:
    """One markdown table: a row per metric, a column per run (see the module docstring)."""

    def cells(label: str, values: list[str]) -> str:
        return "| " + " | ".join([label, *values]) + " |"

    lines = [cells("metric", [r.label for r in runs]), "|---" + "|---:" * len(runs) + "|"]
    for key in ("method", "encoder", "steps"):
        lines.append(cells(key, [str(r.metrics.get(key, "-")) for r in runs]))
    losses = [r.metrics.get("final_loss") for r in runs]
    lines.append(cells("final loss", [f"{v:.4g}" if isinstance(v, (int, float)) else "-" for v in losses]))
    for label, key, std_key in _metric_rows(runs):
        row = []
        for run in runs:
            evals = run.metrics["eval"]
            random_init = (run.metrics.get("baselines") or {}).get("random_init") or {}
            value = evals.get(key)
            cell = _fmt(value, evals.get(std_key) if std_key else None)
            row.append(cell + (_delta(value, random_init.get(key)) if value is not None else ""))
        lines.append(cells(label, row))
    lines.append("")
    lines.append(
        "Accuracies in %; in parentheses, the difference from the same run's random-init encoder "
        "(`baselines.random_init` in its metrics.json)."
    )
    return "\n".join(lines)


def plot_curves(runs: list[Run], png: str | Path) -> Path | None:
    """The runs' training loss (and online kNN top-1 where monitored) per step into ``png``; ``None``
    when no run logged a loss."""
    color = {id(r): f"C{i % 10}" for i, r in enumerate(runs)}  # one colour per run on both axes
    plotted = [r for r in runs if r.loss]
    if not plotted:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monitored = [r for r in plotted if r.knn]
    fig, axes = plt.subplots(1, 2 if monitored else 1, figsize=(11 if monitored else 6, 3.5), squeeze=False)
    loss_ax = axes[0][0]
    for run in plotted:
        steps = sorted(run.loss)
        loss_ax.plot(steps, [run.loss[s] for s in steps], color=color[id(run)], label=run.label)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize="small")
    if monitored:
        knn_ax = axes[0][1]
        for run in monitored:
            steps = sorted(run.knn)
            knn_ax.plot(steps, [100 * run.knn[s] for s in steps], "o-", color=color[id(run)], label=run.label)
        knn_ax.set_xlabel("step")
        knn_ax.set_ylabel("online kNN top-1 (%)")
        knn_ax.grid(alpha=0.3)
        knn_ax.legend(fontsize="small")
    return save_figure(fig, png)


@dataclass
class Comparison:
    table: str  # markdown
    png: Path | None  # None: no run logged a loss curve
    without_curves: list[str]  # runs with no metrics.jsonl loss (not in the PNG)


def compare_runs(run_dirs: list[str | Path], png: str | Path = "compare.png") -> Comparison:
    """Read every run first (so a bad one fails before anything is written), then table and plot them."""
    if not run_dirs:
        raise CompareError("no run directories given")
    runs = [read_run(d) for d in run_dirs]
    return Comparison(
        table=format_markdown(runs),
        png=plot_curves(runs, png),
        without_curves=[r.label for r in runs if not r.loss],
    )
