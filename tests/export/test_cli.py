"""``mmssl export`` end to end on a real 2-step run (tiny data), and its error exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmssl.cli import main
from mmssl.encoders import load_encoder

RUN = [
    "run",
    "quickstart",
    "train.steps=2",
    "train.batch_size=16",
    "train.progress=false",
    "data.train_per_class=6",
    "data.test_per_class=4",
    "eval.few_shot.seeds=1",
    "eval.few_shot.shots=[1]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*RUN, f"out_dir={out}"]) == 0
    assert (out / "encoder.pt").is_file() and (out / "metrics.json").is_file()
    return out


def test_export_safetensors(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run_dir), "--format", "safetensors"]) == 0
    out = run_dir / "export" / "safetensors"
    assert f"exported safetensors to {out}" in capsys.readouterr().out
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = load_encoder(run_dir / "encoder.pt").eval()(x)["global"]
        torch.testing.assert_close(load_encoder(out).eval()(x)["global"], want, rtol=0, atol=0)

    card = (out / "MODEL_CARD.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"mmssl export {run_dir} --format safetensors --out {out}" in card
    assert "| metric | this run | random init |" in card
    knn, knn_random = metrics["eval"]["knn_top1"], metrics["baselines"]["random_init"]["knn_top1"]
    assert f"| knn_top1 | {100 * knn:.1f} | {100 * knn_random:.1f} |" in card
    assert "- steps: 2" in card and "`procedural_shapes`" in card and "`small_cnn`" in card


def test_export_onnx(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = run_dir.parent / "onnx-out"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "encoder.onnx" in printed and "check: onnx_max_abs_diff" in printed
    assert "onnx_max_abs_diff" in (out / "MODEL_CARD.md").read_text()


def test_export_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing"), "--format", "onnx"]) == 2
    assert "mmssl: export error: run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    assert f"{tmp_path / 'encoder.pt'} not found" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "timm", "--out", str(tmp_path / "t")]) == 2
    assert "encoder 'small_cnn' cannot be exported to timm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(run_dir), "--format", "keras"])
    assert exit_.value.code == 2
    assert "invalid choice: 'keras'" in capsys.readouterr().err
