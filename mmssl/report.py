"""What a run shows a person: the loss curve (with the online monitor) and the table of final metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmssl.figures import save_figure


def plot_loss_curve(run_dir: Path) -> Path | None:
    """``run_dir/loss_curve.png`` from ``metrics.jsonl``: the training loss and, on a second axis, the
    online monitor's kNN accuracy when the run logged one."""
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # A resumed run re-logs steps: keep the last value of each.
    loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
    monitor = {r["step"]: r["monitor_knn_top1"] for r in rows if "monitor_knn_top1" in r}
    if not loss:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = sorted(loss)
    ax.plot(steps, [loss[s] for s in steps], label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    if monitor:
        knn_ax = ax.twinx()
        m_steps = sorted(monitor)
        knn_ax.plot(m_steps, [100 * monitor[s] for s in m_steps], "o-", color="tab:orange", label="kNN top-1")
        knn_ax.set_ylabel("online kNN top-1 (%)", color="tab:orange")
    return save_figure(fig, run_dir / "loss_curve.png")


def _fmt(value: Any, std: Any = None) -> str:
    if value is None:
        return "-"
    if std is not None:
        return f"{100 * value:.1f} ± {100 * std:.1f}"
    return f"{100 * value:.1f}" if isinstance(value, float) and 0 <= value <= 1 else f"{value:.4g}"


def metric_rows(evals: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(label, value key, std key or None) per metric of ``evals``: "x_mean" + "x_std" and "x" + "x_std"
    make one row "x", shown as "x ± std"."""
    rows = []
    for k in evals:
        if k.endswith("_std") and (k[: -len("_std")] in evals or k[: -len("_std")] + "_mean" in evals):
            continue
        base = k[: -len("_mean")] if k.endswith("_mean") else k
        rows.append((base, k, base + "_std" if base + "_std" in evals else None))
    return rows


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table: one row per metric; the method, then each baseline (accuracies in %)."""
    columns = [(f"{metrics['method']} ({metrics['encoder']})", metrics["eval"])]
    columns += [(name.replace("_", " "), vals) for name, vals in metrics["baselines"].items()]
    rows = metric_rows(metrics["eval"])
    label_width = max([22, *(len(label) + 2 for label, _, _ in rows)])
    widths = [max(16, len(title) + 2) for title, _ in columns]
    header = f"{'metric':<{label_width}}" + "".join(f"{t:>{w}}" for (t, _), w in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for label, key, std_key in rows:
        cells = [_fmt(vals.get(key), vals.get(std_key) if std_key else None) for _, vals in columns]
        lines.append(f"{label:<{label_width}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)
