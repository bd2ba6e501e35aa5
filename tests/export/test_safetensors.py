"""``--format safetensors``: weights + config.json, no pickle, reloaded by ``load_encoder`` and by plain
``safetensors.torch.load_file``; and the errors of a bad run directory or format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mmssl.encoders import load_encoder
from mmssl.export import ExportError, export_run
from tests.export._helpers import make_run

PICKLE_MAGIC = b"\x80"  # every pickle protocol >= 2 starts with PROTO (0x80); torch.save files are zips


def test_round_trip_small_cnn(tmp_path: Path) -> None:
    run_dir, encoder = make_run(tmp_path, "small_cnn", {"widths": [8, 16], "stem_stride": 2})
    result = export_run(run_dir, "safetensors", tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in result.files) == names
    for path in (tmp_path / "out").iterdir():  # no pickle (nor torch zip) anywhere in the output
        head = path.read_bytes()[:2]
        assert not head.startswith(PICKLE_MAGIC) and head != b"PK", path

    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = encoder(x)
        for source in (tmp_path / "out", tmp_path / "out" / "model.safetensors"):
            got = load_encoder(source).eval()(x)
            torch.testing.assert_close(got["global"], want["global"], rtol=0, atol=0)
            torch.testing.assert_close(got["tokens"], want["tokens"], rtol=0, atol=0)

    plain = load_file(str(tmp_path / "out" / "model.safetensors"))  # no mmssl needed
    assert plain.keys() == encoder.state_dict().keys()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["name"] == "small_cnn" and config["kwargs"] == {"widths": [8, 16], "stem_stride": 2}
    assert config["format"] == "mmssl-encoder-v1"


def test_the_file_alone_carries_the_spec(tmp_path: Path) -> None:
    run_dir, encoder = make_run(tmp_path, "small_cnn", {"widths": [4, 8]})
    export_run(run_dir, "safetensors", tmp_path / "out")
    alone = tmp_path / "elsewhere" / "weights.safetensors"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "out" / "model.safetensors", alone)
    with safe_open(str(alone), framework="pt") as f:
        assert json.loads(f.metadata()["mmssl_encoder"])["name"] == "small_cnn"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(alone).eval()(x)["global"], encoder(x)["global"])


def test_tied_text_embeddings_are_stored_once(tmp_path: Path) -> None:
    kwargs = {"vocab_size": 64, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32}
    run_dir, encoder = make_run(tmp_path, "bert_small", kwargs, modality="text")
    export_run(run_dir, "safetensors", tmp_path / "out")
    plain = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert len(plain) < len(encoder.state_dict())  # the tied decoder weight is not duplicated
    ids = torch.randint(2, 64, (2, 8))
    with torch.no_grad():
        got = load_encoder(tmp_path / "out").eval()(ids)["global"]
        torch.testing.assert_close(got, encoder(ids)["global"])


def test_default_out_dir_is_inside_the_run(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, "small_cnn", {"widths": [4]}, metrics=False)
    result = export_run(run_dir, "safetensors")
    assert result.out_dir == run_dir / "export" / "safetensors"
    card = (result.out_dir / "MODEL_CARD.md").read_text()
    assert "no metrics.json" in card


def test_missing_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"run directory .*nowhere does not exist"):
        export_run(tmp_path / "nowhere", "safetensors")


def test_missing_encoder_pt(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ExportError, match=r"run/encoder\.pt not found \(a run writes it"):
        export_run(tmp_path / "run", "safetensors")
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    with pytest.raises(ExportError, match=r"encoder\.pt not found .*checkpoints/last\.pt exists"):
        export_run(tmp_path / "run", "safetensors")


def test_encoder_pt_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    torch.save({"format": "something-else"}, tmp_path / "run" / "encoder.pt")
    with pytest.raises(
        ExportError, match=r"encoder\.pt is not an mmssl encoder file \(format 'something-else'"
    ):
        export_run(tmp_path / "run", "safetensors")
    (tmp_path / "run" / "encoder.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExportError, match=r"encoder\.pt could not be read"):
        export_run(tmp_path / "run", "safetensors")


def test_unknown_format(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, "small_cnn", {"widths": [4]})
    with pytest.raises(ExportError, match=r"unknown export format 'keras'; choose one of safetensors, timm"):
        export_run(run_dir, "keras")
