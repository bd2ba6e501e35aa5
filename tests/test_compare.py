"""``mmssl compare`` on two real 2-step runs (tiny data; the second with the online kNN monitor): the
markdown table of final metrics vs random init, the PNG of curves, and the error exits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image
import pytest

from mmssl.cli import main
from mmssl.report import _fmt

TINY = [
    "run",
    "quickstart",
    "train.steps=2",
    "train.batch_size=16",
    "train.num_workers=0",
    "train.log_every=1",
    "train.progress=false",
    "data.train_per_class=6",
    "data.test_per_class=4",
    "data.image_size=16",
    "eval.few_shot.seeds=2",
    "eval.few_shot.shots=[1]",
    "eval.knn.k=5",
    "eval.linear.epochs=2",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMSSL_CACHE", str(root / "cache"))
        assert main([*TINY, f"out_dir={root / 'a'}"]) == 0
        assert main([*TINY, f"out_dir={root / 'b'}", "eval.monitor.every=1", "eval.monitor.k=5"]) == 0
    return root / "a", root / "b"


def _table(out: str) -> dict[str, list[str]]:
    """The markdown table's rows by their first cell (the header under "metric")."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("|")]
    return {
        cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows if not cells[0].startswith("---")
    }


def _delta(value: float, random_init: float) -> str:
    text = f"{100 * (value - random_init):+.1f}"  # points of %
    return "+0.0" if text == "-0.0" else text


def test_compare_table_and_curves(runs: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    a, b = runs
    png = tmp_path / "figs" / "cmp.png"
    assert main(["compare", str(a), str(b), "--png", str(png)]) == 0
    captured = capsys.readouterr()
    table = _table(captured.out)
    assert table["metric"] == [str(a), str(b)]
    assert table["method"] == ["simclr", "simclr"] and table["steps"] == ["2", "2"]
    assert captured.out.splitlines()[1] == "|---|---:|---:|"  # a markdown table
    for run, column in ((a, 0), (b, 1)):
        metrics = json.loads((run / "metrics.json").read_text())
        evals, random_init = metrics["eval"], metrics["baselines"]["random_init"]
        assert table["final loss"][column] == f"{metrics['final_loss']:.4g}"
        for key in ("knn_top1", "linear_top1"):
            delta = _delta(evals[key], random_init[key])
            assert table[key][column] == f"{_fmt(evals[key])} ({delta})"
        # mean ± std in one row, compared on the mean
        delta = _delta(evals["fewshot_1_mean"], random_init["fewshot_1_mean"])
        assert (
            table["fewshot_1"][column] == f"{_fmt(evals['fewshot_1_mean'], evals['fewshot_1_std'])} ({delta})"
        )
        assert "fewshot_1_std" not in table
    # the curves: training loss, and a second panel for b's monitored kNN (figure 11 x 3.5 in at 100 dpi)
    assert png.is_file() and f"curves: {png}" in captured.err
    assert matplotlib.image.imread(png).shape[:2] == (350, 1100)


def test_compare_default_png_and_run_without_curves(
    runs: tuple[Path, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    a, _ = runs
    bare = tmp_path / "bare"  # a run directory holding only metrics.json
    bare.mkdir()
    shutil.copy2(a / "metrics.json", bare / "metrics.json")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(a), "bare"]) == 0
    captured = capsys.readouterr()
    assert _table(captured.out)["metric"] == [str(a), "bare"]
    assert "bare has no loss curve" in captured.err
    # default path, loss only (no run monitored kNN): one panel, 6 x 3.5 in
    assert matplotlib.image.imread(tmp_path / "compare.png").shape[:2] == (350, 600)


def test_compare_errors_name_the_missing_dir_or_file(runs: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    a, _ = runs
    png = tmp_path / "never.png"
    missing = tmp_path / "no_such_run"
    assert main(["compare", str(a), str(missing), "--png", str(png)]) == 2
    err = capsys.readouterr().err
    assert f"run directory '{missing}' does not exist" in err

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    assert main(["compare", str(a), str(unfinished), "--png", str(png)]) == 2
    err = capsys.readouterr().err
    assert f"'{unfinished / 'metrics.json'}' not found" in err

    (unfinished / "metrics.json").write_text("{not json")
    assert main(["compare", str(unfinished), "--png", str(png)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert not png.exists()  # every run is read before anything is written
