"""``export: [...]`` in a recipe: ``mmssl run`` exports the encoder at the end, after its own files."""

from __future__ import annotations

from safetensors.torch import load_file

from mmssl.cli import main
from mmssl.encoders import load_encoder
from tests.test_compare import TINY


def test_run_exports_what_the_recipe_lists(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*TINY, f"out_dir={run_dir}", "export=[safetensors]"]) == 0
    folder = run_dir / "export" / "safetensors"
    assert (run_dir / "metrics.json").is_file() and (folder / "MODEL_CARD.md").is_file()
    weights = load_file(str(folder / "model.safetensors"))
    trained = load_encoder(run_dir / "encoder.pt").state_dict()
    assert weights.keys() == trained.keys()
    assert all((weights[k] == trained[k]).all() for k in trained)


def test_unknown_export_format_is_refused_when_the_recipe_loads(tmp_path, capsys):
    assert main([*TINY, f"out_dir={tmp_path / 'run'}", "export=[pickle]"]) == 2
    assert "'export' must be one of safetensors, timm, torchvision, onnx" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
