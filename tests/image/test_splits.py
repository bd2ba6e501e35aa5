"""``image_folder``'s ``splits``: labelled splits from several folders or CIFAR python folders, val carved
from train (last N per class, seeded fraction), checks, and the recipe override of the test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmssl.config import apply_overrides, from_dict
from mmssl.errors import ConfigError, DataError
from mmssl.modalities.image.cifar import CIFAR10_FOLDER
from mmssl.modalities.image.splits import HoldOut, ImageSplits, carve, resolve_splits
from mmssl.pipeline import build_data
from mmssl.registry import DATASETS
from tests.image.test_cifar import cifar_images, write_cifar10

REAL_CIFAR_TRAIN = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "images" / "cifar10" / "train"
)


def make_folder(root: Path, per_class: dict[str, int], start: int = 0) -> Path:
    """``root/<class>/<i>.png`` (8 x 8, a colour unique to (class, i)); returns ``root``."""
    for c, (name, n) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            Image.new("RGB", (8, 8), (40 * c, 10 * i, 7)).save(root / name / f"{i:03d}.png")
    return root


def names(ds) -> list[str]:
    return [Path(p).name for p, _ in ds.samples]


@pytest.fixture
def three_folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    train = make_folder(tmp_path / "train", {"cat": 6, "dog": 5})
    val = make_folder(tmp_path / "val", {"cat": 2, "dog": 2}, start=50)
    test = make_folder(tmp_path / "official_test", {"cat": 3, "dog": 1}, start=90)
    return train, val, test


def test_splits_from_several_folders(three_folders) -> None:
    train, val, test = three_folders
    bundle = DATASETS.build(
        "image_folder", splits={"train": str(train), "val": str(val), "test": str(test)}, augment="per_sample"
    )
    assert bundle.num_classes == 2 and len(bundle.pretrain) == 11 and len(bundle.eval_train) == 11
    assert len(bundle.eval_test) == 4 and bundle.eval_test.base.root == test  # test wins over val
    assert bundle.stats["eval_split"] == f"test ({test})" and bundle.stats["num_val"] == 4
    assert bundle.stats["val_split"] == str(val) and bundle.stats["train_split"] == str(train)
    assert [v.shape for v in bundle.pretrain[0]["views"]] == [(3, 32, 32)] * 2
    item = bundle.eval_test[3]
    assert item["label"] == 1 and item["input"].shape == (3, 32, 32)
    # without test, the figures are measured on val
    bundle = DATASETS.build("image_folder", splits={"train": str(train), "val": str(val)})
    assert bundle.eval_test.base.root == val and bundle.stats["eval_split"] == f"val ({val})"
    # neither: no labelled evaluation set, said so
    bundle = DATASETS.build("image_folder", splits={"train": str(train)}, views=None)
    assert bundle.eval_test is None and bundle.stats["eval_split"] == "none"
    assert set(bundle.pretrain[0]) == {"image", "label", "index"}


def test_last_per_class_holds_out_the_last_files(three_folders) -> None:
    train, _, test = three_folders
    resolved = resolve_splits(ImageSplits(train=str(train), val=HoldOut(last_per_class=2)))
    assert names(resolved.val) == ["004.png", "005.png", "003.png", "004.png"]
    assert resolved.val.targets == [0, 0, 1, 1]
    assert names(resolved.train) == [
        "000.png",
        "001.png",
        "002.png",
        "003.png",
        "000.png",
        "001.png",
        "002.png",
    ]
    assert not set(resolved.train.sample_ids()) & set(resolved.val.sample_ids())
    assert resolved.eval_split == f"val (last 2 per class of {train})"
    # the carved parts read their own images
    img, label = resolved.val[2]
    with Image.open(train / "dog" / "003.png") as ref:
        assert torch.equal(img, torch.from_numpy(np.array(ref)).permute(2, 0, 1)) and label == 1
    # pretraining and eval_train are train minus val
    bundle = DATASETS.build(
        "image_folder", splits={"train": str(train), "val": {"last_per_class": 2}}, augment="per_sample"
    )
    assert len(bundle.pretrain) == len(bundle.eval_train) == 7 and len(bundle.eval_test) == 4
    assert bundle.stats["num_train"] == 7 and bundle.stats["num_test"] == 4


def test_fraction_is_stratified_seeded_and_disjoint() -> None:
    targets = [0] * 20 + [1] * 10 + [2] * 30
    classes = ["a", "b", "c"]
    train, val = carve(targets, classes, HoldOut(fraction=0.1), "x")
    assert sorted(train + val) == list(range(60)) and not set(train) & set(val)
    assert np.bincount([targets[i] for i in val]).tolist() == [2, 1, 3]
    assert carve(targets, classes, HoldOut(fraction=0.1, seed=0), "x")[1] == val  # seed 0 is the default
    other = [carve(targets, classes, HoldOut(fraction=0.1, seed=s), "x")[1] for s in (1, 2)]
    assert val not in other and other[0] != other[1]
    # a class's draw does not depend on the other classes
    fewer = carve([0] * 20 + [2] * 30, classes, HoldOut(fraction=0.1), "x")[1]
    assert [i for i in val if targets[i] == 0] == [i for i in fewer if i < 20]


def test_holdout_and_splits_are_checked(three_folders, tmp_path: Path) -> None:
    train, val, test = three_folders
    with pytest.raises(DataError, match="class 'dog' .* has 5 samples; holding out 5"):
        resolve_splits(ImageSplits(train=str(train), val=HoldOut(last_per_class=5)))
    for bad, message in [
        ({}, "exactly one of"),
        ({"last_per_class": 2, "fraction": 0.1}, "exactly one of"),
        ({"fraction": 1.0}, r"must lie in \(0, 1\)"),
        ({"last_per_class": 2, "seed": 1}, "seed applies to fraction only"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ImageSplits(train=str(train), val=bad)
    with pytest.raises(ConfigError, match="train is required"):
        ImageSplits(test=str(test))
    # class names must agree, and are named
    odd = make_folder(tmp_path / "odd", {"cat": 1, "cow": 1})
    with pytest.raises(
        DataError, match=r"data\.splits: class names differ .* only in train: dog; only in test: cow"
    ):
        resolve_splits(ImageSplits(train=str(train), test=str(odd)))
    # a split that repeats train's files is refused
    with pytest.raises(DataError, match=r"test .* shares 11 sample\(s\) with train"):
        resolve_splits(ImageSplits(train=str(train), test=str(train) + "/"))
    with pytest.raises(DataError, match=r"data\.splits\.val: not found: .*nope"):
        resolve_splits(ImageSplits(train=str(train), val=str(tmp_path / "nope")))
    with pytest.raises(DataError, match=r"data\.splits\.test: no class sub-folders"):
        resolve_splits(ImageSplits(train=str(train), test=str(tmp_path / "odd" / "cat")))
    with pytest.raises(ConfigError, match="exactly one of data.root .* and data.splits"):
        DATASETS.build("image_folder", root=str(tmp_path), splits={"train": str(train)})
    with pytest.raises(ConfigError, match="exactly one of data.root"):
        DATASETS.build("image_folder")


def test_cifar_python_folder_as_splits(tmp_path: Path) -> None:
    a, b, t = cifar_images(6, 0), cifar_images(6, 1), cifar_images(3, 2)
    la, lb = [0, 1, 2, 0, 1, 2], [2, 1, 0, 2, 1, 0]
    folder = write_cifar10(tmp_path / CIFAR10_FOLDER, [(a, la), (b, lb)], (t, [1, 1, 2]))
    splits = {"train": str(tmp_path), "val": {"last_per_class": 1}, "test": str(tmp_path)}
    bundle = DATASETS.build("image_folder", splits=splits, views=None)
    # train: data batches less the last of each class in batch order (indices 9, 10, 11); test: test_batch
    assert bundle.num_classes == 3 and len(bundle.pretrain) == 9 and len(bundle.eval_test) == 3
    assert bundle.eval_test.base.targets == [1, 1, 2] and "test_batch" in bundle.stats["eval_split"]
    assert np.array_equal(bundle.eval_train.base.images.numpy(), np.concatenate([a, b[:3]]))
    assert bundle.stats["eval_split"].startswith(f"test ({folder} (CIFAR-10 python")
    # the folder as val reads its test part too; one batch file reads that file
    resolved = resolve_splits(ImageSplits(train=str(folder / "data_batch_1"), val=str(folder)))
    assert resolved.train.targets == la and resolved.val.targets == [1, 1, 2]


def test_recipe_override_of_the_test_split(three_folders) -> None:
    train, _, test = three_folders
    raw = {
        "name": "splits",
        "modality": "image",
        "method": {"name": "simclr"},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "image_folder", "splits": {"train": str(train), "val": {"last_per_class": 1}}},
        "eval": {"knn": {"k": 3}},
    }
    cfg = from_dict(raw)
    assert build_data(cfg).stats["eval_split"] == f"val (last 1 per class of {train})"
    cfg = from_dict(apply_overrides(raw, [f"data.splits.test={test}"]))
    data = build_data(cfg)
    assert data.stats["eval_split"] == f"test ({test})" and len(data.eval_test) == 4
    assert len(data.pretrain) == 9  # the training data does not change
    with pytest.raises(ConfigError, match=r"unknown key 'data\.splits\.vall' \(did you mean 'val'\?\)"):
        from_dict(apply_overrides(raw, ["data.splits.vall=x"]))
    with pytest.raises(
        ConfigError, match=r"unknown key 'val\.last_per_clas' \(did you mean 'last_per_class'\?\)"
    ):
        from_dict(apply_overrides(raw, ["data.splits.val.last_per_clas=2"]))
    with pytest.raises(ConfigError, match="exactly one of data.root"):
        from_dict(apply_overrides(raw, [f"data.root={train}"]))


def test_real_cifar10_last_500_per_class_by_file_name() -> None:
    if not REAL_CIFAR_TRAIN.is_dir():
        pytest.skip(f"CIFAR-10 ImageFolder train split not found: {REAL_CIFAR_TRAIN}")
    resolved = resolve_splits(ImageSplits(train=str(REAL_CIFAR_TRAIN), val=HoldOut(last_per_class=500)))
    assert len(resolved.classes) == 10 and len(resolved.val) == 5000 and len(resolved.train) == 45000
    assert np.bincount(resolved.val.targets).tolist() == [500] * 10
    train_names = {f"{p.parent.name}/{p.name}" for p, _ in resolved.train.samples}
    val_names = {f"{p.parent.name}/{p.name}" for p, _ in resolved.val.samples}
    assert not train_names & val_names and len(val_names) == 5000
    # the last 500 in sorted file order: every val file sorts after every train file of its class
    for c in resolved.classes:
        assert max(n for n in train_names if n.startswith(c + "/")) < min(
            n for n in val_names if n.startswith(c + "/")
        )
