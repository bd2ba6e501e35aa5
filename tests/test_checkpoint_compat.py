"""Checkpoints written by earlier versions still load: the encoder, the whole method, and a resumed run.

``tests/fixtures/checkpoints_v1/`` holds ``checkpoints/last.pt`` files written by mmssl before the
method/data contract refactor (two training steps of tiny SimCLR, MoCo v2 (queue) and BYOL runs on the
procedural shapes), and the features their encoders gave on a fixed input at the time
(``expected_features.pt``). Loading must reproduce those features exactly, the method rebuilt from the
stored recipe must accept the stored state dict strictly (same parameter and buffer names: projector,
predictor, EMA teacher, MoCo queue), and training must resume from them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmssl import pipeline
from mmssl.config import from_dict
from mmssl.encoders import load_encoder
from mmssl.train.checkpoint import load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_v1"
RUNS = ("simclr", "moco_v2", "byol")


@pytest.mark.parametrize("run", RUNS)
def test_old_encoder_gives_the_same_features(run: str) -> None:
    expected = torch.load(FIXTURES / "expected_features.pt", weights_only=True)
    encoder = load_encoder(FIXTURES / f"{run}.pt").eval()
    with torch.no_grad():
        features = encoder(expected["input"])["global"]
    assert torch.equal(features, expected[run])


@pytest.mark.parametrize("run", RUNS)
def test_old_method_state_loads_strictly_and_training_resumes(run: str, tmp_path: Path) -> None:
    ckpt = load_checkpoint(FIXTURES / f"{run}.pt")
    raw = dict(ckpt["config"])
    raw.update(out_dir=str(tmp_path / run), resume=str(FIXTURES / f"{run}.pt"), ckpt=None)
    raw["train"] = {**raw["train"], "steps": 3, "ckpt_every": 3, "progress": False}
    cfg = from_dict(raw)
    data = pipeline.build_data(cfg)
    method = pipeline.build_method(cfg, pipeline.build_encoder(cfg), data)
    missing, unexpected = method.load_state_dict(ckpt["model"], strict=True)
    assert not missing and not unexpected
    trained, _, result, _ = pipeline.train(cfg, data)
    assert result.steps == 3 and result.final_loss is not None
    resumed = load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")
    assert resumed["step"] == 3 and resumed["model"].keys() == ckpt["model"].keys()
