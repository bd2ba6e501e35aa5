"""Few-shot part segmentation: IoU rules, averaging, K-shot draws, and the evaluator end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

import mmssl.modalities.pointcloud.partseg.evaluator as evaluator_module
from mmssl import pipeline
from mmssl.config import load_recipe
from mmssl.data import DataBundle
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.modalities.pointcloud.partseg.evaluator import PartSegOptions
from mmssl.modalities.pointcloud.partseg.metrics import (
    category_part_mask,
    miou_summary,
    restricted_argmax,
    segmentation_scores,
    shape_iou,
)
from mmssl.modalities.pointcloud.partseg.model import predict_parts
from mmssl.modalities.pointcloud.partseg.splits import load_split, sample_k_shot
from mmssl.modalities.pointcloud.partseg.train import finetune_segmenter, linear_segmenter
from mmssl.modalities.pointcloud.taxonomy import PartTaxonomy
from mmssl.registry import ENCODERS, EVALUATORS

PARTS = {0: [0, 1], 1: [2, 3, 4]}  # two categories, five global parts
TINY_DGCNN = {"k": 8, "edge_dims": (16,), "global_dim": 16, "point_dims": (16,), "dropout": 0.0}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_shape_iou_by_hand_with_absent_part_rule() -> None:
    target = torch.tensor([2, 2, 3, 3])
    pred = torch.tensor([2, 3, 3, 3])
    # part 2: 1 / 2; part 3: 2 / 3; part 4: absent from both -> 1
    assert shape_iou(pred, target, PARTS[1]) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # a part predicted but absent from the truth counts 0, not 1
    assert shape_iou(torch.tensor([2, 2, 4, 4]), target, PARTS[1]) == pytest.approx(
        (1 + 0 + 0) / 3
    )  # 2: 2/2, 3: 0/2, 4: 0/2


def test_predictions_restricted_to_the_category_parts() -> None:
    mask = category_part_mask(PARTS, 5)
    assert mask.tolist() == [[True, True, False, False, False], [False, False, True, True, True]]
    logits = torch.tensor([[[0.0, 1.0, 9.0, 0.0, 0.0]], [[5.0, 0.0, 1.0, 3.0, 2.0]]])  # [2 shapes, 1 pt, 5]
    pred = restricted_argmax(logits, torch.tensor([0, 1]), mask)
    assert pred.tolist() == [[1], [3]]  # part 2 / part 0 win overall but belong to the other category
    split = {"parts": torch.tensor([[1], [2]]), "category": torch.tensor([0, 1])}
    ious, summary = segmentation_scores(pred, split, PARTS)
    # shape 0: part 1 right (1), part 0 absent (1) -> 1; shape 1: parts 2 and 3 wrong (0, 0), 4 absent (1)
    assert ious.tolist() == pytest.approx([1.0, 1 / 3])
    assert summary["instance_miou"] == pytest.approx(2 / 3)


def test_class_and_instance_averages_differ_when_unbalanced() -> None:
    ious = torch.tensor([1.0, 1.0, 1.0, 0.2])
    categories = torch.tensor([0, 0, 0, 1])
    summary = miou_summary(ious, categories)
    assert summary["instance_miou"] == pytest.approx(3.2 / 4)
    assert summary["class_miou"] == pytest.approx((1.0 + 0.2) / 2)
    balanced = miou_summary(torch.tensor([1.0, 0.2]), torch.tensor([0, 1]))
    assert balanced["class_miou"] == pytest.approx(balanced["instance_miou"])


def test_k_shot_sampling_exact_and_deterministic() -> None:
    categories = torch.tensor([0] * 7 + [1] * 3 + [2] * 5)[torch.randperm(15)]
    for k in (1, 3):
        idx = sample_k_shot(categories, k, seed=4)
        assert len(set(idx.tolist())) == len(idx)
        assert torch.bincount(categories[idx], minlength=3).tolist() == [k, k, k]
        assert torch.equal(idx, sample_k_shot(categories, k, seed=4))
    draws = {tuple(sample_k_shot(categories, 2, seed=s).tolist()) for s in range(6)}
    assert len(draws) > 1  # the seed changes the draw
    with pytest.raises(ValueError, match="fewer than n=4"):
        sample_k_shot(categories, 4, seed=0)


# ---------------------------------------------------------------- evaluator on synthetic data


class XYZEncoder(nn.Module):
    """Tokens are the coordinates themselves (plus a constant), so parts split by a plane are linear."""

    out_dim = 4
    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = torch.cat([x * self.scale, torch.ones_like(x[..., :1])], dim=-1)
        return {"tokens": tokens, "global": tokens.amax(dim=1)}


def _shape(category: int, n: int, index: int) -> dict:
    """Category 0: parts 0 / 1 by the sign of y. Category 1: parts 2 / 3 by the sign of x; its part 4
    never occurs (so it counts 1 whenever it is not predicted)."""
    pts = torch.rand(n, 3) * 2 - 1
    if category == 0:
        parts = torch.where(pts[:, 1] > 0, 1, 0)
    else:
        parts = torch.where(pts[:, 0] > 0, 3, 2)
    normals = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    return {"points": pts, "normals": normals, "parts": parts, "category": category, "index": index}


def _bundle(train_per_cat: int = 4, test_per_cat: tuple[int, int] = (3, 1), n: int = 48) -> DataBundle:
    train = [_shape(c, n, i) for c in (0, 1) for i in range(train_per_cat)]
    test = [_shape(c, n, i) for c in (0, 1) for i in range(test_per_cat[c])]
    acd = [
        {"points": s["points"], "normals": s["normals"], "acd": s["parts"], "index": i}
        for i, s in enumerate(train)
    ]
    taxonomy = PartTaxonomy(categories=["half", "bands"], parts_per_category=PARTS, num_parts=5)
    return DataBundle(pretrain=acd, eval_train=train, eval_test=test, extras=(taxonomy,))


def test_linear_variant_solves_a_linearly_separable_case(tmp_path) -> None:
    data = _bundle()
    encoder = XYZEncoder()
    out = EVALUATORS.get("part_segmentation")(
        encoder,
        data,
        EvalContext(device=torch.device("cpu"), seed=0, figures_dir=tmp_path),
        PartSegOptions(
            shots=(2,), seeds=2, finetune=False, linear_epochs=200, linear_batch_size=512, linear_lr=0.1
        ),
    )
    assert set(out) == {
        f"fewshot2_linear_{avg}_miou{std}" for avg in ("class", "instance") for std in ("", "_std")
    }
    # 96 support points per category: boundaries are close but not exact (random predictions: ~0.3)
    assert out["fewshot2_linear_instance_miou"] > 0.85 and out["fewshot2_linear_class_miou"] > 0.85
    assert (tmp_path / "partseg_2shot_linear.png").stat().st_size > 1000


def test_evaluator_finetune_keys_renders_and_untouched_encoder(tmp_path) -> None:
    data = _bundle()
    encoder = ENCODERS.build("dgcnn", **TINY_DGCNN)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    out = EVALUATORS.get("part_segmentation")(
        encoder,
        data,
        EvalContext(device=torch.device("cpu"), seed=3, figures_dir=tmp_path),
        PartSegOptions(
            shots=(1, 2),
            seeds=2,
            steps=3,
            batch_size=4,
            linear_epochs=2,
            supervised=True,
            acd_weight=1.0,
            num_renders=3,
        ),
    )
    for k in (1, 2):
        for variant in ("ft", "linear"):
            for avg in ("class", "instance"):
                key = f"fewshot{k}_{variant}_{avg}_miou"
                assert 0.0 <= out[key] <= 1.0 and out[f"{key}_std"] >= 0.0
    assert 0.0 <= out["supervised_ft_class_miou"] <= 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partseg_2shot_ft.png", "partseg_2shot_linear.png"]
    assert all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())
    assert encoder.training  # the caller's mode is restored


def test_finetune_is_deterministic_per_seed() -> None:
    data = _bundle()
    support = {
        "points": torch.stack([s["points"] for s in data.eval_train]),
        "normals": torch.stack([s["normals"] for s in data.eval_train]),
        "parts": torch.stack([s["parts"] for s in data.eval_train]),
        "category": torch.tensor([s["category"] for s in data.eval_train]),
    }
    encoder = ENCODERS.build("dgcnn", **{**TINY_DGCNN, "dropout": 0.5, "point_dims": (16, 16)})
    a = finetune_segmenter(encoder, support, 5, steps=2, batch_size=3, seed=1)
    b = finetune_segmenter(encoder, support, 5, steps=2, batch_size=3, seed=1)
    c = finetune_segmenter(encoder, support, 5, steps=2, batch_size=3, seed=2)
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_linear_init_starts_fine_tuning_from_the_probe() -> None:
    """With zero fine-tuning steps, linear-probe-then-fine-tune predicts exactly as the probe."""
    data = _bundle()
    train, test = load_split(data.eval_train), load_split(data.eval_test)
    encoder = ENCODERS.build("dgcnn", **TINY_DGCNN).eval()
    probe = linear_segmenter(encoder, train, 5, epochs=3, seed=0)
    tuned = finetune_segmenter(encoder, train, 5, steps=0, seed=0, head_init=probe.head)
    mask = category_part_mask(PARTS, 5)
    assert torch.equal(predict_parts(tuned, test, mask), predict_parts(probe, test, mask))
    out = EVALUATORS.get("part_segmentation")(
        encoder,
        data,
        EvalContext(device=torch.device("cpu"), seed=0),
        PartSegOptions(shots=(1,), seeds=1, steps=0, linear_epochs=3, linear_init=True),
    )
    assert out["fewshot1_ft_instance_miou"] == pytest.approx(out["fewshot1_linear_instance_miou"])


def test_too_many_shots_and_missing_info_are_reported() -> None:
    evaluator = EVALUATORS.get("part_segmentation")
    with pytest.raises(DataError, match="cannot draw 5 labelled shapes"):
        evaluator(XYZEncoder(), _bundle(), EvalContext(), PartSegOptions(shots=(5,), finetune=False))
    bare = DataBundle(pretrain=[], eval_train=[], eval_test=[])
    with pytest.raises(DataError, match="part_seg"):
        evaluator(XYZEncoder(), bare, EvalContext())


@pytest.mark.slow
def test_recipe_end_to_end_tiny(tmp_path, monkeypatch) -> None:
    """The shipped recipe through ``mmssl run`` (ACD labels switched off to stay fast)."""
    import json
    from pathlib import Path

    from mmssl.cli import main

    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "pointcloud" / "acd_10shot.yaml"
    overrides = [
        "data.acd.enabled=false",
        "data.num_points=64",
        "data.train_per_category=10",
        "data.test_per_category=2",
        "train.steps=2",
        "train.progress=false",
        "eval.part_segmentation.steps=2",
        "eval.part_segmentation.seeds=1",
        "eval.part_segmentation.linear_epochs=1",
        f"out_dir={tmp_path / 'run'}",
    ]
    assert main(["run", str(recipe), *overrides]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for column in (metrics["eval"], metrics["baselines"]["random_init"]):
        assert {"fewshot10_ft_class_miou", "fewshot10_linear_instance_miou_std"} <= set(column)
    assert (tmp_path / "run" / "figures" / "partseg_10shot_ft.png").is_file()


# ------------------------------------------------------------------------- small data: sizes that fit


def test_shots_are_checked_before_anything_is_fitted(monkeypatch) -> None:
    def no_fit(*args, **kwargs):
        raise AssertionError("a model was fitted before the shot counts were checked")

    monkeypatch.setattr(evaluator_module, "finetune_segmenter", no_fit)
    monkeypatch.setattr(evaluator_module, "linear_segmenter", no_fit)
    with pytest.raises(DataError) as info:
        EVALUATORS.get("part_segmentation")(
            XYZEncoder(), _bundle(train_per_cat=4), EvalContext(), PartSegOptions(shots=(1, 5))
        )
    assert str(info.value) == (
        "part_segmentation: cannot draw 5 labelled shapes per category (category 0 'half' has only 4 in "
        "eval_train); lower eval.part_segmentation.shots to at most 4 (asked: [1, 5]; categories: "
        "['half', 'bands'])"
    )


def test_finetuning_batch_larger_than_the_support_set_fits_it_and_says_so(caplog, monkeypatch) -> None:
    monkeypatch.setattr(evaluator_module, "_noted", set(), raising=False)
    with caplog.at_level(logging.WARNING, logger="mmssl.modalities.pointcloud.partseg.evaluator"):
        out = EVALUATORS.get("part_segmentation")(
            XYZEncoder(),
            _bundle(),
            EvalContext(),
            PartSegOptions(shots=(1,), seeds=1, steps=2, batch_size=8, linear=False),
        )
    assert 0.0 <= out["fewshot1_ft_class_miou"] <= 1.0
    assert caplog.messages == [
        "part_segmentation: eval.part_segmentation.batch_size=8 is more than the 2 shapes of the 1-shot "
        "training set; fine-tuning on batches of 2"
    ]


def test_pretraining_set_smaller_than_a_batch_trains_on_a_batch_that_fits(tmp_path, caplog, monkeypatch):
    """Part segmentation recipes on a small dataset: 5 shapes and train.batch_size=16 used to end in the
    sampler's "fewer than one global batch" traceback; the run now trains on batches of 5 and says so."""
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "pointcloud" / "simclr.yaml"
    overrides = ["data.train_per_category=1", "data.test_per_category=1", "data.num_points=32", "encoder.k=4"]
    overrides += ["train.batch_size=16", "train.steps=1", "train.ckpt_every=0", "train.progress=false"]
    cfg = load_recipe(recipe, [*overrides, f"out_dir={tmp_path / 'run'}"])
    data = pipeline.build_data(cfg)
    with caplog.at_level(logging.WARNING, logger="mmssl.pipeline"):
        _, _, result, run_dir = pipeline.train(cfg, data)
    assert result.steps == 1 and len(data.pretrain) == 5
    assert caplog.messages == [
        "train.batch_size=16 is more than the 5 pretraining samples of dataset 'procedural_parts': training "
        "with train.batch_size=5 (set it to at most 5 to silence this)"
    ]
    assert "batch_size: 5" in (run_dir / "config.yaml").read_text()
    assert cfg.train.batch_size == 16  # the caller's recipe is left as it was
