"""A tiny cross-modal recipe through the pipeline: metrics of both kinds, towers saved and loadable alone."""

from __future__ import annotations

import json

import pytest
import torch

from mmssl import pipeline
from mmssl.config import from_dict
from mmssl.data import DataBundle, data_source
from mmssl.data.extras import HeldOutPairs, LabelledSplits
from mmssl.encoders import load_encoder
from mmssl.registry import DATASETS
from mmssl.train.checkpoint import load_checkpoint
from tests.crossmodal._helpers import ListDataset, labelled, paired_items


def tiny_pairs(train: int = 32, test: int = 12, seed: int = 0) -> DataBundle:
    """In-memory image / 'audio' (a 1-channel 8x8 map) pairs, both sides determined by the class."""
    items, held_out = paired_items(train, seed=0), paired_items(test, seed=1)
    return DataBundle(
        pretrain=ListDataset(items),
        eval_train=labelled(items, "image"),
        eval_test=labelled(held_out, "image"),
        num_classes=4,
        extras=(
            HeldOutPairs(ListDataset(held_out)),
            LabelledSplits("audio_eval", labelled(items, "audio"), labelled(held_out, "audio"), 4),
        ),
    )


if "crossmodal_test_pairs" not in DATASETS:
    DATASETS.register(
        "crossmodal_test_pairs",
        data_source(produces={"image", "audio", "label", "index"})(tiny_pairs),
        modality="audiovisual",
    )

RECIPE = {
    "name": "crossmodal_tiny",
    "modality": "audiovisual",
    "encoder": {"name": "small_cnn", "widths": [4, 8]},
    "method": {
        "name": "crossmodal_contrastive",
        "encoder_key": "image",
        "towers": {"audio": {"name": "small_cnn", "widths": [4, 8], "in_channels": 1}},
        "projector_dim": 8,
        "projector_hidden": 16,
    },
    "data": {"name": "crossmodal_test_pairs"},
    "train": {
        "steps": 3,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr": 1e-3,
        "progress": False,
        "log_every": 1,
    },
    "eval": {
        "baselines": ["random_init"],
        "retrieval": {"ks": [1, 5]},
        "modality_few_shot": {"tower": "audio", "shots": [1], "seeds": 2, "epochs": 5},
        "few_shot": {"shots": [1], "seeds": 2, "epochs": 5},
    },
}


def test_run_reports_retrieval_and_saves_each_tower(tmp_path):
    cfg = from_dict({**RECIPE, "out_dir": str(tmp_path / "run")})
    metrics = pipeline.run(cfg)
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "metrics.json").read_text())["eval"] == pytest.approx(metrics["eval"])
    expected = {
        "ret_image2audio_r1",
        "ret_audio2image_r5",
        "ret_chance_r1",
        "ret_chance_r5",
        "audio_fewshot_1_mean",
        "fewshot_1_mean",
    }
    for section in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert expected <= set(section)
        assert section["ret_chance_r5"] == pytest.approx(5 / 12)
    # The image tower is encoder.pt, the audio tower encoders/audio.pt; each loads alone.
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    audio = load_encoder(run_dir / "encoders" / "audio.pt").eval()
    image = load_encoder(run_dir / "encoder.pt").eval()
    for module, prefix in ((audio, "partner."), (image, "encoder.")):
        for k, v in module.state_dict().items():
            assert torch.equal(v, ckpt[prefix + k]), prefix + k
    x = torch.stack([it["audio"] for it in paired_items(4, seed=2)])
    partner = pipeline.build_method(cfg, pipeline.build_encoder(cfg), pipeline.build_data(cfg)).partner
    partner.load_state_dict({k[len("partner.") :]: v for k, v in ckpt.items() if k.startswith("partner.")})
    with torch.no_grad():
        torch.testing.assert_close(audio(x)["global"], partner.eval()(x)["global"], rtol=0, atol=0)
