"""modality_few_shot picks a tower and gives the few_shot protocol's numbers on other labelled sets."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mmssl.eval.few_shot as few_shot_module
from mmssl import pipeline
from mmssl.config import ConfigError, from_dict, load_recipe
from mmssl.crossmodal import CrossModalContrastive, modality_few_shot, select_tower
from mmssl.crossmodal.few_shot import TowerFewShotOptions
from mmssl.data import DataBundle, data_source
from mmssl.data.extras import LabelledSplits, labelled_splits
from mmssl.errors import DataError
from mmssl.eval import few_shot_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.options import FewShotOptions
from mmssl.registry import DATASETS
from tests.crossmodal._helpers import TinyTower, labelled, paired_items

OPTS = dict(shots=[1, 2], seeds=2, epochs=20)


def _audio_bundle(n: int = 16, seed: int = 0) -> DataBundle:
    items = paired_items(n, seed=seed)
    return DataBundle(
        pretrain=labelled(items, "audio"),
        eval_train=labelled(items, "audio"),
        eval_test=labelled(paired_items(8, seed=seed + 1), "audio"),
        num_classes=4,
    )


if "crossmodal_test_audio" not in DATASETS:
    DATASETS.register(
        "crossmodal_test_audio",
        data_source(produces={"input", "label"})(_audio_bundle),
        modality="audio",
    )


def _method() -> CrossModalContrastive:
    torch.manual_seed(0)
    return CrossModalContrastive(TinyTower(3 * 64, 6), towers={"audio": TinyTower(64, 6)}, projector_bn=False)


def _data() -> DataBundle:
    items = paired_items(16)
    audio = _audio_bundle()
    image_train = labelled(items, "image")
    return DataBundle(
        pretrain=image_train,
        eval_train=image_train,
        eval_test=image_train,
        num_classes=4,
        extras=(LabelledSplits("audio_eval", audio.eval_train, audio.eval_test, 4),),
    )


def test_tower_selection():
    method = _method()
    assert select_tower(method.encoder, method, "audio") is method.partner
    assert select_tower(method.encoder, method, "image") is method.encoder
    assert select_tower(method.encoder, None, "audio") is method.encoder  # a one-encoder method
    with pytest.raises(ValueError, match="no tower reads 'audoi'"):
        select_tower(method.encoder, method, "audoi")


def test_same_numbers_as_few_shot_on_the_audio_tower():
    method, data = _method(), _data()
    got = modality_few_shot(
        method.encoder, data, EvalContext(method=method), TowerFewShotOptions(tower="audio", **OPTS)
    )
    audio = labelled_splits(data.extras, "audio_eval")
    direct = few_shot_evaluator(
        method.partner,
        dataclasses.replace(data, eval_train=audio.train, eval_test=audio.test),
        EvalContext(),
        FewShotOptions(**OPTS),
    )
    assert got == {f"audio_{k}": v for k, v in direct.items()}
    assert set(got) == {
        "audio_fewshot_1_mean",
        "audio_fewshot_1_std",
        "audio_fewshot_2_mean",
        "audio_fewshot_2_std",
    }


def test_extra_registered_dataset():
    method, data = _method(), _data()
    got = modality_few_shot(
        method.encoder,
        data,
        EvalContext(method=method),
        TowerFewShotOptions(
            tower="audio", source="", datasets={"other": {"name": "crossmodal_test_audio", "seed": 3}}, **OPTS
        ),
    )
    direct = few_shot_evaluator(method.partner, _audio_bundle(seed=3), EvalContext(), FewShotOptions(**OPTS))
    assert got == {f"audio_other_{k}": v for k, v in direct.items()}


def test_errors_name_the_missing_source_and_mistyped_dataset_keys():
    method = _method()
    with pytest.raises(ValueError, match=r"LabelledSplits 'audio_eval'"):
        modality_few_shot(
            method.encoder, DataBundle(pretrain=[]), EvalContext(method=method), TowerFewShotOptions(**OPTS)
        )
    raw = {
        "name": "t",
        "modality": "audiovisual",
        "method": {"name": "simclr"},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "procedural_shapes"},
        "eval": {
            "modality_few_shot": {"datasets": {"shapes": {"name": "procedural_shapes", "image_sise": 8}}}
        },
    }
    with pytest.raises(
        ConfigError, match=r"'eval\.modality_few_shot\.datasets\.shapes\.image_sise'.*'image_size'"
    ):
        from_dict(raw)
    raw["eval"]["modality_few_shot"]["datasets"] = {"shapes": {"name": "procedural_shape"}}
    with pytest.raises(ConfigError, match=r"datasets\.shapes\.name'.*did you mean 'procedural_shapes'"):
        from_dict(raw)


def _fsdd_folder(root: Path, speakers: list[str]) -> Path:
    """A tiny FSDD-named folder: digits 0 and 1, one 0.1 s tone each, per speaker."""
    root.mkdir(parents=True)
    tone = 0.3 * np.sin(np.arange(800) / 3.0).astype(np.float32)
    for speaker in speakers:
        for digit in (0, 1):
            sf.write(root / f"{digit}_{speaker}_0.wav", tone, 8000)
    return root


def test_shot_counts_named_by_the_modality_key(caplog, monkeypatch):
    monkeypatch.setattr(few_shot_module, "_warned", set(), raising=False)
    method, data = _method(), _data()  # 4 training clips per class in 'audio_eval'
    with caplog.at_level(logging.WARNING, logger="mmssl.eval.few_shot"):
        got = modality_few_shot(
            method.encoder,
            data,
            EvalContext(method=method),
            TowerFewShotOptions(tower="audio", shots=[1, 5], seeds=2, epochs=20),
        )
    assert set(got) == {"audio_fewshot_1_mean", "audio_fewshot_1_std", "audio_fewshot_max_shots"}
    assert caplog.messages == [
        "eval.modality_few_shot.shots: 5-shot skipped: class 0 has only 4 samples in the train split of "
        "'audio_eval' (eval.modality_few_shot.source) (4 of 4 classes have fewer than 5); the other shot "
        "counts (1) are reported"
    ]


def test_an_extra_dataset_that_cannot_be_built_stops_the_run_before_pretraining(tmp_path, monkeypatch):
    """An FSDD speaker split with no training recording, asked for by eval.modality_few_shot.datasets,
    is reported by the runner's preflight: before any pretraining, naming test_speakers and the folder."""
    folder = _fsdd_folder(tmp_path / "fsdd", ["alice", "bob"])
    cfg = load_recipe(
        Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml",
        [
            "data.train_per_class=2",
            "data.test_per_class=1",
            "data.image_size=8",
            "eval.few_shot.shots=[1]",
            "eval.modality_few_shot.source=",
            "eval.modality_few_shot.datasets.fsdd.name=fsdd",
            f"eval.modality_few_shot.datasets.fsdd.root={folder}",
            "eval.modality_few_shot.datasets.fsdd.test_speakers=[alice, bob]",
            f"out_dir={tmp_path / 'run'}",
        ],
    )

    def no_training(*args, **kwargs):
        raise AssertionError("pretraining started before the evaluators' data was checked")

    monkeypatch.setattr(pipeline, "train", no_training)
    with pytest.raises(DataError) as info:
        pipeline.run(cfg)
    assert str(info.value) == (
        f"fsdd: test_speakers=['alice', 'bob'] leaves 0 training and 4 test recordings in {folder} "
        "(speakers there: alice, bob); every speaker there is held out; leave at least one for training"
    )
