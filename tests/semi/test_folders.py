"""semi_folder: the semi-supervised bundle from image folders (labelled draw, pool, OOD, val / test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmssl import pipeline
from mmssl.config import from_dict, load_recipe
from mmssl.errors import ConfigError, CorruptFileError, DataError
from mmssl.modalities.image.cifar import CIFAR10_FOLDER
from mmssl.modalities.image.folder import fit_square, load_image
from mmssl.options import builder_options
from mmssl.registry import DATASETS
from mmssl.semi.pool import UnlabelledPool
from tests.image.test_cifar import cifar_images, write_cifar10

REPO = Path(__file__).resolve().parents[2]
CIFAR_TRAIN = REPO.parent / "shared" / "data" / "images" / "cifar10" / "train"
CLASSES = ("cat", "dog", "fox")
SIZE = 8


def _write(path: Path, ident: int, size: tuple[int, int] = (12, 10)) -> None:
    """A constant-colour PNG whose (red, green) pixel encodes ``ident`` (survives resize and crop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (ident % 256, ident // 256, 7)).save(path)


def _ident(image: torch.Tensor) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[1, 0, 0])


def _idents(images: torch.Tensor) -> list[int]:
    return [_ident(im) for im in images]


def _class_folder(root: Path, per_class: int, start: int = 0) -> dict[int, tuple[int, int]]:
    """``root/<class>/img_XX.png``; returns ``{ident: (class, position in the sorted class list)}``."""
    info = {}
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            ident = start + 100 * c + i
            _write(root / name / f"img_{i:02d}.png", ident)
            info[ident] = (c, i)
    return info


def _pool(data) -> UnlabelledPool:
    return data.extra(UnlabelledPool, needed_by="the test")


def _build(**options):
    """As the runner builds it: the recipe's options checked and converted, then the builder."""
    builder = DATASETS.get("semi_folder")
    seed = options.pop("seed", 0)
    kwargs = builder_options(builder, options, "data", kind="dataset", name="semi_folder")
    return builder(seed=seed, **kwargs)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi_folders")
    info = _class_folder(root / "train", per_class=8)
    for i in range(5):  # flat and nested, one hidden file and one non-image left out
        _write(root / "unlab" / f"u{i}.png", 1000 + i)
        _write(root / "unlab" / "deep" / "er" / f"V{i}.PNG", 1100 + i)
    _write(root / "unlab" / ".hidden.png", 1999)
    (root / "unlab" / "notes.txt").write_text("not an image")
    for i in range(30):
        _write(root / "ood" / f"o{i:02d}.png", 2000 + i, size=(9, 9))
    test_info = _class_folder(root / "test", per_class=2, start=3000)
    return root, info, test_info


def test_labelled_draw_is_n_per_class_seeded_and_disjoint_from_pool_and_val(folders):
    root, info, _ = folders
    data = _build(
        labelled=str(root / "train"), labels_per_class=2, val={"last_per_class": 2}, image_size=SIZE
    )
    labelled, pool, val = (_idents(d.images) for d in (data.eval_train, _pool(data).dataset, data.eval_test))
    assert torch.bincount(data.eval_train.labels, minlength=3).tolist() == [2, 2, 2]
    assert [info[i][0] for i in labelled] == data.eval_train.labels.tolist()
    # val: the last 2 files of every class; pool: everything else; the three are disjoint and cover all.
    assert sorted(val) == sorted(i for i, (_, pos) in info.items() if pos >= 6)
    assert [info[i][0] for i in val] == data.eval_test.labels.tolist()
    assert not set(labelled) & set(pool) and not set(labelled) & set(val) and not set(pool) & set(val)
    assert sorted(labelled + pool + val) == sorted(info)
    # true labels of the pool are kept for reporting only, nothing is out of domain
    assert _pool(data).true_labels.tolist() == [info[i][0] for i in pool]
    assert not _pool(data).is_ood.any()
    assert (
        data.stats["eval_split"] == "val"
        and data.stats["num_val"] == 6
        and data.stats["num_unlabelled"] == 12
    )
    assert data.num_classes == 3 and data.stats["class_names"] == list(CLASSES)
    assert data.eval_train.images.shape[1:] == (3, SIZE, SIZE) and data.eval_train.images.dtype == torch.uint8

    same = _build(
        labelled=str(root / "train"), labels_per_class=2, val={"last_per_class": 2}, image_size=SIZE
    )
    other = _build(
        labelled=str(root / "train"), labels_per_class=2, val={"last_per_class": 2}, image_size=SIZE, seed=1
    )
    assert _idents(same.eval_train.images) == labelled
    assert _idents(other.eval_train.images) != labelled
    assert sorted(_idents(other.eval_test.images)) == sorted(val)  # val does not depend on the seed


def test_pool_from_another_folder_at_any_depth(folders):
    root, info, _ = folders
    # 4 readable images per class outside val, 4 labelled: no pool needed from this folder.
    data = _build(
        labelled=str(root / "train"),
        unlabelled=str(root / "unlab"),
        labels_per_class=4,
        val={"last_per_class": 4},
        image_size=SIZE,
        mu=2,
    )
    pool = _pool(data)
    assert sorted(_idents(pool.dataset.images)) == [*range(1000, 1005), *range(1100, 1105)]
    assert pool.true_labels is None and not pool.is_ood.any()
    assert len(data.eval_train) == 12 and data.stats["unlabelled_root"] == str(root / "unlab")
    assert len(data.pretrain) == 10 // 2


def test_pool_from_a_file_list(folders, tmp_path):
    """``unlabelled`` is listed as ``image_files``'s ``images``: a file list works too."""
    root = folders[0]
    listed = tmp_path / "pool.txt"
    listed.write_text(
        f"# three of them\n{root / 'unlab' / 'u1.png'}\n{root / 'unlab' / 'deep' / 'er' / 'V2.PNG'}\n"
    )
    (tmp_path / "u4.png").symlink_to(root / "unlab" / "u4.png")
    listed.write_text(listed.read_text() + "u4.png\n")  # relative to the list's folder
    data = _build(
        labelled=str(root / "train"),
        unlabelled=str(listed),
        labels_per_class=4,
        val={"last_per_class": 4},
        image_size=SIZE,
        mu=2,
    )
    assert _idents(_pool(data).dataset.images) == [1001, 1102, 1004]


def test_ood_fraction_is_flagged_and_drawn_from_the_other_folder(folders):
    root, info, _ = folders
    kw = dict(labelled=str(root / "train"), labels_per_class=1, val={"last_per_class": 1}, image_size=SIZE)
    clean = _build(**kw)
    data = _build(**kw, ood={"root": str(root / "ood"), "fraction": 0.25})
    pool, clean_pool = _pool(data), _pool(clean)
    n = round(0.25 * 18)
    assert int(pool.is_ood.sum()) == n == data.stats["num_ood"]
    ids = _idents(pool.dataset.images)
    assert all(2000 <= i < 2030 for i, flag in zip(ids, pool.is_ood.tolist(), strict=True) if flag)
    assert all(i in info for i, flag in zip(ids, pool.is_ood.tolist(), strict=True) if not flag)
    assert (pool.true_labels[pool.is_ood] == -1).all()
    assert torch.equal(pool.true_labels[~pool.is_ood], clean_pool.true_labels[~pool.is_ood])
    assert torch.equal(pool.dataset.images[~pool.is_ood], clean_pool.dataset.images[~pool.is_ood])
    again = _build(**kw, ood={"root": str(root / "ood"), "fraction": 0.25})
    assert torch.equal(_pool(again).dataset.images, pool.dataset.images)  # seeded
    with pytest.raises(ConfigError, match="fraction must be in"):
        _build(**kw, ood={"root": str(root / "ood"), "fraction": 1.0})


def test_test_folder_is_the_evaluation_split_when_given(folders):
    root, info, test_info = folders
    data = _build(labelled=str(root / "train"), test=str(root / "test"), labels_per_class=2, image_size=SIZE)
    assert data.stats["eval_split"] == "test" and data.stats["num_val"] == 0
    assert sorted(_idents(data.eval_test.images)) == sorted(test_info)
    assert len(_pool(data).dataset) == 3 * 8 - 6  # no val carved: the rest of the folder is the pool
    with pytest.raises(DataError, match="class folders of .* differ"):
        _build(labelled=str(root / "train"), test=str(root / "unlab"), image_size=SIZE)
    with pytest.raises(DataError, match="needs an evaluation split"):
        _build(labelled=str(root / "train"), image_size=SIZE)


def test_labelled_and_test_from_a_cifar_python_folder(tmp_path):
    """A CIFAR python folder through the image readers: ``labelled`` reads its training batches, ``test``
    its test batch; ``val`` is carved in batch order (last N per class, or a seeded fraction)."""
    train, labels = cifar_images(18, 0), [i % 3 for i in range(18)]  # 6 per class, classes interleaved
    test_images, test_labels = cifar_images(3, 1), [2, 1, 0]
    write_cifar10(
        tmp_path / CIFAR10_FOLDER,
        [(train[:10], labels[:10]), (train[10:], labels[10:])],
        (test_images, test_labels),
    )
    rows = {bytes(image.tobytes()): i for i, image in enumerate(train)}

    def ids(images: torch.Tensor) -> list[int]:
        return [rows[bytes(im.numpy().tobytes())] for im in images]

    data = _build(labelled=str(tmp_path), val={"last_per_class": 1}, labels_per_class=2, mu=2)
    assert data.stats["class_names"] == ["plane", "car", "bird"] and data.num_classes == 3
    labelled, pool, val = (
        ids(data.eval_train.images),
        ids(_pool(data).dataset.images),
        ids(data.eval_test.images),
    )
    assert sorted(val) == [15, 16, 17] and data.eval_test.labels.tolist() == [0, 1, 2]
    assert sorted(labelled + pool + val) == list(range(18)) and len(set(labelled + pool + val)) == 18
    assert [labels[i] for i in labelled] == data.eval_train.labels.tolist()
    assert _pool(data).true_labels.tolist() == [labels[i] for i in pool]
    assert data.stats["val_split"].startswith("last 1 per class of")

    tested = _build(
        labelled=str(tmp_path), test=str(tmp_path), val={"fraction": 0.34}, labels_per_class=1, image_size=16
    )
    assert tested.stats["eval_split"] == "test" and tested.stats["num_val"] == 6  # round(0.34 * 6) per class
    assert tested.eval_test.labels.tolist() == test_labels and tested.eval_test.images.shape == (3, 3, 16, 16)
    assert len(tested.eval_train) + len(_pool(tested).dataset) == 18 - 6
    with pytest.raises(DataError, match=r"data\.labelled: not found"):
        _build(labelled=str(tmp_path / "missing"), test=str(tmp_path))


def test_a_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    info = _class_folder(tmp_path / "train", per_class=6)
    bad = tmp_path / "train" / "dog" / "img_02.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    kw = dict(
        labelled=str(tmp_path / "train"), labels_per_class=2, val={"last_per_class": 1}, image_size=SIZE
    )
    with pytest.raises(CorruptFileError, match="img_02.png"):
        _build(**kw)
    data = _build(**kw, skip_bad=True)
    assert data.stats["num_skipped"] == 1 and data.stats["skipped_files"] == [str(bad)]
    ids = (
        _idents(data.eval_train.images) + _idents(_pool(data).dataset.images) + _idents(data.eval_test.images)
    )
    assert sorted(ids) == sorted(i for i in info if i != 100 + 2)  # left out, nothing in its place
    assert torch.bincount(data.eval_train.labels, minlength=3).tolist() == [2, 2, 2]
    again = _build(**kw, skip_bad=True)  # decoded once per process, still counted
    assert again.stats["num_skipped"] == 1
    with pytest.raises(CorruptFileError, match="img_02.png"):  # and still named without skip_bad
        _build(**kw)


def test_unknown_nested_keys_are_named_with_their_dotted_path(folders):
    root = folders[0]
    raw = {
        "name": "x",
        "modality": "image",
        "method": {"name": "fixmatch"},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "semi_folder", "labelled": str(root / "train"), "val": {"last_per_clas": 2}},
    }
    with pytest.raises(ConfigError, match=r"data\.val\.last_per_clas.*did you mean 'last_per_class'"):
        from_dict(raw)
    raw["data"] = {"name": "semi_folder", "labelled": "x", "test": "y", "ood": {"root": "z", "fractoin": 0.1}}
    with pytest.raises(ConfigError, match=r"data\.ood\.fractoin.*did you mean 'fraction'"):
        from_dict(raw)
    raw["data"] = {"name": "semi_folder", "labeled": "x"}
    with pytest.raises(ConfigError, match=r"data\.labeled.*did you mean 'labelled'"):
        from_dict(raw)


def test_fixmatch_trains_two_steps_through_the_pipeline(folders, tmp_path):
    root = folders[0]
    raw = {
        "name": "semi_folder_tiny",
        "modality": "image",
        "method": {"name": "fixmatch", "ema_decay": 0.9, "pool_batch_size": 16},
        "encoder": {"name": "small_cnn", "widths": [8, 16], "stem_stride": 2},
        "data": {
            "name": "semi_folder",
            "labelled": str(root / "train"),
            "labels_per_class": 1,
            "val": {"last_per_class": 1},
            "ood": {"root": str(root / "ood"), "fraction": 0.25},
            "mu": 2,
            "image_size": 16,
        },
        "train": {
            "steps": 2,
            "batch_size": 4,
            "lr": 0.03,
            "progress": False,
            "log_every": 1,
            "num_threads": 1,
        },
        "eval": {
            "baselines": [
                {"supervised_only": ["method.unlabelled_weight=0", "data.mu=1", "data.strong=none"]}
            ],
            "classifier_accuracy": {"batch_size": 16},
        },
        "out_dir": str(tmp_path / "run"),
    }
    metrics = pipeline.run(from_dict(raw))
    assert metrics["steps"] == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["data"]["eval_split"] == "val" and saved["data"]["num_ood"] == 4
    for section in (saved["eval"], saved["baselines"]["supervised_only"]):
        assert 0.0 <= section["classifier_top1"] <= 1.0
        assert section["pool_size"] == 18 and section["pool_ood"] == 4
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("mask_rate" in row for row in logged)


def test_images_are_resized_and_centre_cropped_to_the_image_size():
    image = torch.zeros(3, 10, 20, dtype=torch.uint8)
    image[:, :, 3:17] = 255  # black left and right edges, cut off by the centre crop
    out = fit_square(image, 6)
    assert out.shape == (3, 6, 6) and int(out.min()) == 255
    assert fit_square(out, 6) is out


@pytest.mark.skipif(not CIFAR_TRAIN.is_dir(), reason=f"real CIFAR-10 images not found at {CIFAR_TRAIN}")
def test_real_cifar10_slice():
    """The first 12 files of each CIFAR-10 class: 4 labels, the last 3 as val, the rest the pool."""
    data = _build(labelled=str(CIFAR_TRAIN), labels_per_class=4, val={"last_per_class": 3}, max_per_class=12)
    assert data.stats["class_names"][:2] == ["airplane", "automobile"] and data.num_classes == 10
    assert (len(data.eval_train), len(_pool(data).dataset), len(data.eval_test)) == (40, 50, 30)
    assert torch.bincount(data.eval_train.labels, minlength=10).tolist() == [4] * 10
    # val = the last 3 of the 12 files of each class, decoded as they are (32x32 already)
    expected = torch.stack([load_image(CIFAR_TRAIN / "truck" / f"{i:04d}.jpg") for i in (9, 10, 11)])
    assert torch.equal(data.eval_test.images[-3:], expected)
    item = data.pretrain[0]
    batch = {k: torch.stack([torch.as_tensor(data.pretrain[i][k]) for i in range(2)]) for k in item}
    views = data.batch_transform(batch)
    assert views["u_strong"].shape == (2, 7, 3, 32, 32) and views["x_l"].shape == (2, 3, 32, 32)


SEMI_CIFAR10 = sorted(p.stem for p in (REPO / "recipes" / "semi" / "cifar10").glob("*.yaml"))


def test_every_semi_method_has_cifar10_cpu_and_gpu_profiles():
    from mmssl.semi import components

    methods = set(components.METHODS)
    assert {s for s in SEMI_CIFAR10 if not s.endswith("_gpu")} == methods
    assert {s[: -len("_gpu")] for s in SEMI_CIFAR10 if s.endswith("_gpu")} == methods


@pytest.mark.parametrize("name", SEMI_CIFAR10)
def test_cifar10_recipes_validate(name):
    path = REPO / "recipes" / "semi" / "cifar10" / f"{name}.yaml"
    cfg = load_recipe(path, ["data.labels_per_class=25"])
    assert cfg.data["name"] == "semi_folder" and cfg.data["labels_per_class"] == 25
    assert cfg.data["labelled"] == "../shared/data/images/cifar10/train"
    assert cfg.data["val"] == {"last_per_class": 500}
    assert load_recipe(path).data["labels_per_class"] == 4
    (baseline,) = cfg.eval["baselines"]
    assert "method.unlabelled_weight=0" in baseline["supervised_only"]
