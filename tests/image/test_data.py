"""Image data: procedural dataset determinism and caching, ImageFolder reader, registered builders."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmssl.data import DataBundle
from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.folder import ImageFolderDataset
from mmssl.procedural import shapes as procedural_shapes_module
from mmssl.procedural.shapes import SHAPE_CLASSES, ProceduralShapes
from mmssl.registry import DATASETS

CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "images" / "cifar10_jpg"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def need_cifar() -> Path:
    if not CIFAR.is_dir():
        pytest.skip(f"CIFAR-10 JPEG sample not found: {CIFAR}")
    return CIFAR


# ------------------------------------------------------------------------------ procedural shapes


def test_procedural_deterministic_and_splits_differ() -> None:
    a = ProceduralShapes(3, use_cache=False)
    b = ProceduralShapes(3, use_cache=False)
    assert a.images.dtype == torch.uint8 and a.images.shape == (30, 3, 32, 32)
    assert a.images.numpy().tobytes() == b.images.numpy().tobytes()
    test = ProceduralShapes(3, split="test", use_cache=False)
    other_seed = ProceduralShapes(3, seed=1, use_cache=False)
    for other in (test, other_seed):
        # no image of one draw appears in the other
        same = (a.images[:, None] == other.images[None]).flatten(2).all(-1)
        assert not same.any()
    # a sample depends on (seed, split, index) only, not on how many are drawn
    more = ProceduralShapes(5, use_cache=False)
    assert torch.equal(more.images[:30], a.images)


def test_procedural_balanced_labels_and_item() -> None:
    ds = ProceduralShapes(4, num_classes=6, image_size=24, use_cache=False)
    assert ds.class_names == list(SHAPE_CLASSES[:6])
    assert torch.bincount(ds.labels).tolist() == [4] * 6
    img, label = ds[7]
    assert img.shape == (3, 24, 24) and img.dtype == torch.uint8 and label == 7 % 6
    assert isinstance(label, int)
    assert img.float().std() > 10  # actually drawn, not blank
    with pytest.raises(DataError, match="num_classes"):
        ProceduralShapes(2, num_classes=len(SHAPE_CLASSES) + 1, use_cache=False)


def test_procedural_colour_does_not_reveal_class() -> None:
    # Colours are random per sample: a classifier on per-image mean colour should be near chance (0.1).
    from sklearn.linear_model import LogisticRegression

    train = ProceduralShapes(30, use_cache=False)
    test = ProceduralShapes(20, split="test", use_cache=False)

    def mean_colour(ds: ProceduralShapes) -> np.ndarray:
        return ds.images.float().mean(dim=(2, 3)).numpy() / 255

    clf = LogisticRegression(max_iter=1000).fit(mean_colour(train), train.targets)
    assert clf.score(mean_colour(test), test.targets) < 0.25


def test_procedural_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ProceduralShapes(2, cache_dir=tmp_path)
    assert first.cache_path is not None and first.cache_path.is_file()
    assert first.cache_path.parent == tmp_path and "seed0" in first.cache_path.name

    def boom(self, n):  # a cache hit must not render again
        raise AssertionError("rendered despite a cache hit")

    monkeypatch.setattr(ProceduralShapes, "render", boom)
    second = ProceduralShapes(2, cache_dir=tmp_path)
    assert second.images.numpy().tobytes() == first.images.numpy().tobytes()
    # another parameter is another key
    with pytest.raises(AssertionError, match="rendered"):
        ProceduralShapes(2, cache_dir=tmp_path, seed=3)


def test_procedural_cache_location_and_corrupt_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path))
    ds = ProceduralShapes(2)
    assert ds.cache_path is not None and ds.cache_path.parent == tmp_path / "procedural_shapes"
    reference = ds.images.clone()
    ds.cache_path.write_bytes(b"not a numpy file")
    again = ProceduralShapes(2)  # re-rendered, and identical
    assert torch.equal(again.images, reference)
    with np.load(ds.cache_path) as z:  # and the cache was repaired
        assert z["images"].shape == (20, 3, 32, 32)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "pickle"])
def test_procedural_damaged_cache_is_named_and_rendered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, damage: str
) -> None:
    """Cut short, one byte of the pixels altered (header intact, same size: the zip CRC-32 tells), or a
    pickle that would run code in its place: never used, never executed."""
    ds = ProceduralShapes(2, cache_dir=tmp_path)
    reference = ds.images.clone()
    data = bytearray(ds.cache_path.read_bytes())
    marker = tmp_path / "pwned"
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:
        import pickle

        class RunsCode:
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

        data = bytearray(pickle.dumps(RunsCode()))
    ds.cache_path.write_bytes(bytes(data))
    rendered = []
    monkeypatch.setattr(ProceduralShapes, "render", lambda self, n: rendered.append(n) or reference.numpy())
    with caplog.at_level(logging.WARNING):
        again = ProceduralShapes(2, cache_dir=tmp_path)
    assert rendered == [20] and torch.equal(again.images, reference) and not marker.exists()
    assert f"ignoring unreadable cache {ds.cache_path}" in caplog.text and "re-rendering" in caplog.text


# ------------------------------------------------------------------------------------ ImageFolder


def test_image_folder_on_cifar_sample() -> None:
    root = need_cifar()
    train = ImageFolderDataset(root / "train")
    test = ImageFolderDataset(root / "test")
    assert train.classes == CIFAR_CLASSES and test.classes == CIFAR_CLASSES
    assert len(train) == 300 and len(test) == 100
    assert np.bincount(train.targets).tolist() == [30] * 10
    img, label = train[35]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8 and label == 1  # automobile
    with Image.open(train.samples[35][0]) as ref:
        assert torch.equal(img, torch.from_numpy(np.array(ref.convert("RGB"))).permute(2, 0, 1))


def _jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="JPEG")
    return buf.getvalue()


def write_folder_with_bad_files(root: Path) -> Path:
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "a_good.jpg").write_bytes(_jpeg_bytes((200, 10, 10)))
    (root / "cat" / "b_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = _jpeg_bytes((10, 200, 10))
    (root / "dog" / "a_truncated.jpg").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (16, 16), (10, 10, 200)).save(root / "dog" / "b_good.png")
    (root / "dog" / "notes.txt").write_text("not an image, not listed")
    return root


@pytest.fixture
def folder_with_bad_files(tmp_path: Path) -> Path:
    return write_folder_with_bad_files(tmp_path)


def test_corrupt_file_raises_naming_it(folder_with_bad_files: Path) -> None:
    ds = ImageFolderDataset(folder_with_bad_files)
    assert len(ds) == 4 and ds.classes == ["cat", "dog"]
    assert ds[0][0].shape == (3, 16, 16)
    for index, name in [(1, "b_garbage.jpg"), (2, "a_truncated.jpg")]:
        with pytest.raises(CorruptFileError) as info:
            ds[index]
        assert str(folder_with_bad_files / ds.classes[ds.targets[index]] / name) in str(info.value)
        assert info.value.path.name == name


def test_skip_bad_leaves_bad_files_out_of_the_index(folder_with_bad_files: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(folder_with_bad_files, skip_bad=True)  # every file decoded once, here
    assert ds.num_skipped == 2 and {p.name for p in ds.bad_files} == {"b_garbage.jpg", "a_truncated.jpg"}
    assert "b_garbage.jpg" in caplog.text and "a_truncated.jpg" in caplog.text
    # no readable sample stands in for a bad one: each index is a distinct file with its own label
    assert len(ds) == 2 and [p.name for p, _ in ds.samples] == ["a_good.jpg", "b_good.png"]
    items = [ds[i] for i in range(len(ds))]
    assert [label for _, label in items] == ds.targets == [0, 1]
    assert items[0][0][0].float().mean() > 150 and items[1][0][2].float().mean() > 150  # red, blue
    assert ds.subset([1]).bad_files == ds.bad_files  # a subset reports its folder's bad files


def test_image_folder_skip_bad_counts_skips_in_the_bundle_stats(tmp_path: Path) -> None:
    write_folder_with_bad_files(tmp_path / "train")
    for cls in ("cat", "dog"):
        (tmp_path / "test" / cls).mkdir(parents=True)
        (tmp_path / "test" / cls / "t.jpg").write_bytes(_jpeg_bytes((0, 0, 0)))
    (tmp_path / "test" / "dog" / "broken.jpg").write_bytes(b"broken")
    data = DATASETS.get("image_folder")(root=str(tmp_path), views=None, image_size=16, skip_bad=True)
    assert data.stats["num_skipped"] == 3 and data.stats["num_train"] == 2 and data.stats["num_test"] == 2
    names = sorted(Path(p).name for p in data.stats["bad_files"])
    assert names == ["a_truncated.jpg", "b_garbage.jpg", "broken.jpg"]
    assert [data.eval_train[i]["label"] for i in range(2)] == [0, 1]  # the bad cat is not replaced by a dog


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFolderDataset(tmp_path)


# ---------------------------------------------------------------------------------- builders


def test_procedural_bundle_contract(tmp_path: Path) -> None:
    bundle = DATASETS.build(
        "procedural_shapes",
        train_per_class=2,
        test_per_class=1,
        cache_dir=str(tmp_path),
        augment="per_sample",
    )
    assert isinstance(bundle, DataBundle) and bundle.num_classes == 10
    assert len(bundle.pretrain) == 20 and len(bundle.eval_train) == 20 and len(bundle.eval_test) == 10
    assert bundle.eval_train.base.class_names == list(SHAPE_CLASSES)
    # reporting only: plain values for metrics.json; nothing in the untyped info channel
    assert json.loads(json.dumps(bundle.stats)) == bundle.stats and not hasattr(bundle, "info")
    assert bundle.stats["num_train"] == 20 and bundle.stats["augment"] == "per_sample"
    assert bundle.name == "procedural_shapes"
    item = bundle.pretrain[3]
    assert set(item) == {"views", "index"} and item["index"] == 3
    assert [v.shape for v in item["views"]] == [(3, 32, 32)] * 2
    batch = next(iter(DataLoader(bundle.pretrain, batch_size=4)))
    assert len(batch["views"]) == 2 and batch["views"][0].shape == (4, 3, 32, 32)
    labelled = bundle.eval_train[3]
    assert set(labelled) == {"input", "label"} and labelled["label"] == 3
    assert labelled["input"].dtype == torch.float32
    # evaluation items are deterministic; pretraining views are not
    assert torch.equal(bundle.eval_train[3]["input"], labelled["input"])
    # the same train images feed pretraining and eval_train; test images differ
    train_img = bundle.eval_train.base.images[3]
    assert torch.equal(bundle.pretrain.base.images[3], train_img)
    assert not torch.equal(bundle.eval_test.base.images[3], train_img)


def test_procedural_bundle_batched_views(tmp_path: Path) -> None:
    """Default augment="batch": uint8 images per item, both views made by bundle.batch_transform."""
    bundle = DATASETS.build("procedural_shapes", train_per_class=2, test_per_class=1, cache_dir=str(tmp_path))
    item = bundle.pretrain[3]
    assert set(item) == {"images", "index"} and item["images"].dtype == torch.uint8
    batch = bundle.batch_transform(next(iter(DataLoader(bundle.pretrain, batch_size=4))))
    assert len(batch["views"]) == 2 and batch["views"][0].shape == (4, 3, 32, 32)
    assert batch["views"][0].dtype == torch.float32 and not torch.equal(*batch["views"])
    assert torch.equal(batch["index"], torch.arange(4))


def test_single_image_mode_and_bad_views(tmp_path: Path) -> None:
    bundle = DATASETS.build(
        "procedural_shapes", views=None, train_per_class=1, test_per_class=1, cache_dir=str(tmp_path)
    )
    item = bundle.pretrain[4]
    assert set(item) == {"image", "label", "index"} and item["label"] == 4 and item["index"] == 4
    assert torch.equal(item["image"], bundle.eval_train[4]["input"])
    with pytest.raises(DataError, match="unknown views"):
        DATASETS.build("procedural_shapes", views="simclrr", cache_dir=str(tmp_path))


def test_image_folder_bundle_on_cifar_sample() -> None:
    root = need_cifar()
    bundle = DATASETS.build("image_folder", root=str(root), views="byol", augment="per_sample")
    assert bundle.num_classes == 10 and bundle.eval_train.base.classes == CIFAR_CLASSES
    assert bundle.stats["root"] == str(root) and bundle.stats["num_test"] == 100
    assert len(bundle.pretrain) == 300 and len(bundle.eval_test) == 100
    v1, v2 = bundle.pretrain[0]["views"]
    assert v1.shape == v2.shape == (3, 32, 32)
    assert bundle.eval_test[99]["label"] == 9


def test_image_folder_bundle_mismatched_classes(tmp_path: Path) -> None:
    for split, cls in [("train", "a"), ("train", "b"), ("test", "a")]:
        (tmp_path / split / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "x.png")
    with pytest.raises(DataError, match="class folders differ"):
        DATASETS.build("image_folder", root=str(tmp_path))
    with pytest.raises(DataError, match="root not found"):
        DATASETS.build("image_folder", root=str(tmp_path / "nope"))


def test_render_is_a_function_of_the_generator() -> None:
    # Same generator state -> same picture; the module's own sample_rng is what makes indices reproducible.
    a = procedural_shapes_module.render_shape_image(3, procedural_shapes_module.sample_rng(0, "train", 5), 32)
    b = procedural_shapes_module.render_shape_image(3, procedural_shapes_module.sample_rng(0, "train", 5), 32)
    c = procedural_shapes_module.render_shape_image(3, procedural_shapes_module.sample_rng(0, "test", 5), 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
