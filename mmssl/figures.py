"""Writing matplotlib figures: one helper for every PNG the toolkit draws (loss curves, reconstructions,
propagated masks, point-cloud renders ...), and the one place that hands a run's PNGs to its loggers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol


class FigureLogger(Protocol):
    """What :func:`hand_new_figures_to` needs of a logger (:class:`mmssl.train.run_logger.RunLogger`)."""

    def log_figure(self, image: Any, key: str, step: int | None = None) -> None: ...

    def close(self) -> None: ...


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out a matplotlib figure, write it to ``path`` (a PNG; parent folders created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def run_figures(run_dir: Path) -> dict[Path, int]:
    """The PNGs a run writes, ``{path: mtime_ns}``: ``RUN_DIR/figures/**/*.png`` (methods' ``save_figures``,
    evaluators' ``figures_dir``) and ``RUN_DIR/loss_curve.png``."""
    paths = sorted((run_dir / "figures").rglob("*.png")) + [run_dir / "loss_curve.png"]
    return {p: p.stat().st_mtime_ns for p in paths if p.is_file()}


def figure_key(path: Path, run_dir: Path) -> str:
    """The logger key of a run's PNG: ``figures/<file stem>`` (``figures/loss_curve``,
    ``figures/colorization``; a PNG in a subfolder of figures/ keeps the subfolder in its key)."""
    folder = run_dir / "figures"
    name = path.relative_to(folder).with_suffix("") if path.is_relative_to(folder) else Path(path.stem)
    return f"figures/{name.as_posix()}"


@contextmanager
def hand_new_figures_to(logger: FigureLogger | None, run_dir: Path) -> Iterator[None]:
    """Every PNG of the run (:func:`run_figures`) written or rewritten inside the block goes to
    ``logger.log_figure`` once, in name order, when the block ends without an error; then the logger is
    closed (also when the block raises).

    The PNGs are found in the run directory, not announced by their writers, so that one place covers
    every writer (:func:`save_figure`, an evaluator writing with PIL, the loss curve) and a file written
    twice is logged once. ``logger`` ``None`` or disabled (ranks other than 0): nothing is looked at.
    """
    active = logger is not None and getattr(logger, "enabled", True)
    before = run_figures(run_dir) if active else {}
    try:
        yield
        if active:
            for path, mtime in run_figures(run_dir).items():
                if before.get(path) != mtime:
                    logger.log_figure(path, figure_key(path, run_dir))
    finally:
        if logger is not None:
            logger.close()
