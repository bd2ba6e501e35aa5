"""``image_files``: pretraining on unlabelled images from a nested folder or a file list, corrupt files
named or skipped (and left out of the index), optional labelled evaluation splits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mmssl.config import from_dict
from mmssl.errors import ConfigError, CorruptFileError, DataError
from mmssl.modalities.image.unlabelled import UnlabelledImages, list_images
from mmssl.registry import DATASETS
from tests.image.test_splits import make_folder


def write_image(path: Path, colour: tuple[int, int, int], fmt: str | None = None, size: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format=fmt)
    return path


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    """Five images at three depths, mixed-case extensions, plus files that are not listed."""
    root = tmp_path / "photos"
    write_image(root / "a.png", (255, 0, 0))
    write_image(root / "trip" / "B.JPG", (0, 255, 0), "JPEG")
    write_image(root / "trip" / "day2" / "c.Jpeg", (0, 0, 255), "JPEG")
    write_image(root / "trip" / "day2" / "d.webp", (9, 9, 9), "WEBP", size=20)
    write_image(root / "z" / "e.bmp", (200, 200, 0), "BMP")
    write_image(root / ".thumbs" / "hidden.png", (1, 1, 1))  # hidden folder
    write_image(root / "trip" / ".f.png", (1, 1, 1))  # hidden file
    (root / "notes.txt").write_text("not an image")
    return root


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_nested_folder_any_depth_case_insensitive(nested: Path) -> None:
    ds = UnlabelledImages(nested)
    assert rel(ds.paths, nested) == ["a.png", "trip/B.JPG", "trip/day2/c.Jpeg", "trip/day2/d.webp", "z/e.bmp"]
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 12, 12) and label == -1
    assert img[0].float().mean() == 255 and ds[3][0].shape == (3, 20, 20)


def test_text_and_csv_lists_relative_to_their_folder(nested: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "files.txt").write_text(
        f"# my subset\n../photos/trip/B.JPG\n\n  ../photos/a.png  \n{nested / 'z' / 'e.bmp'}\n"
    )
    assert rel(list_images(lists / "files.txt"), tmp_path) == [
        "lists/../photos/trip/B.JPG",
        "lists/../photos/a.png",
        "photos/z/e.bmp",
    ]
    (nested / "index.csv").write_text("id,path,note\n1,trip/day2/c.Jpeg,x\n2,a.png,y\n")
    ds = UnlabelledImages(nested / "index.csv")
    assert rel(ds.paths, nested) == ["trip/day2/c.Jpeg", "a.png"] and ds[0][0][2].float().mean() > 200
    (nested / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(DataError, match=r"no 'path' column \(columns: file\)"):
        list_images(nested / "bad.csv")
    (lists / "stale.txt").write_text("../photos/a.png\n../photos/gone.png\n")
    with pytest.raises(DataError, match=r"1 listed image\(s\) of .*stale.txt not found: .*gone.png"):
        UnlabelledImages(lists / "stale.txt")
    with pytest.raises(DataError, match="images not found"):
        list_images(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(empty)


def test_corrupt_file_named_or_skipped_and_counted(nested: Path, caplog) -> None:
    bad = nested / "trip" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    truncated = nested / "z" / "f.jpg"
    good = (nested / "trip" / "B.JPG").read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    ds = UnlabelledImages(nested)
    assert len(ds) == 7
    with pytest.raises(CorruptFileError) as info:
        ds[ds.paths.index(bad)]
    assert info.value.path == bad and str(bad) in str(info.value)
    with caplog.at_level(logging.WARNING):
        skipping = UnlabelledImages(nested, skip_bad=True, workers=2)
    assert skipping.num_skipped == 2 and set(skipping.bad_files) == {bad, truncated}
    assert "broken.png" in caplog.text and "f.jpg" in caplog.text
    # the bad files left the index: every index is a distinct readable image, none stands in for them
    assert len(skipping) == 5 and bad not in skipping.paths and truncated not in skipping.paths
    images = [skipping[i][0] for i in range(len(skipping))]
    assert len({tuple(img[:, 0, 0].tolist()) for img in images}) == 5
    bundle = DATASETS.build("image_files", images=str(nested), skip_bad=True)
    assert bundle.stats["num_skipped"] == 2 and bundle.stats["num_pretrain"] == len(bundle.pretrain) == 5


def test_image_files_bundle_pretraining_items(nested: Path) -> None:
    bundle = DATASETS.build("image_files", images=str(nested), image_size=16)
    assert bundle.produces == {"views", "index"} and bundle.name == "image_files"
    assert bundle.eval_train is None and bundle.eval_test is None and bundle.num_classes == 0
    assert bundle.stats["eval_split"] == "none" and bundle.stats["images"] == str(nested)
    batch = bundle.batch_transform(next(iter(DataLoader(bundle.pretrain, batch_size=5))))
    assert len(batch["views"]) == 2 and batch["views"][0].shape == (5, 3, 16, 16)
    per_sample = DATASETS.build("image_files", images=str(nested), augment="per_sample", views="byol")
    assert [v.shape for v in per_sample.pretrain[3]["views"]] == [(3, 32, 32)] * 2
    # single images carry no label: there is none
    single = DATASETS.build("image_files", images=str(nested), views="mae")
    assert single.produces == {"image", "index"} and set(single.pretrain[2]) == {"image", "index"}
    assert set(DATASETS.build("image_files", images=str(nested), views=None).pretrain[0]) == {
        "image",
        "index",
    }
    # view options reach the pipeline, as for image_folder
    with pytest.raises(ConfigError, match="view_options needs data.views"):
        DATASETS.build("image_files", images=str(nested), views=None, view_options={"flip_prob": 0.0})


def test_image_files_with_labelled_evaluation(nested: Path, tmp_path: Path) -> None:
    train = make_folder(tmp_path / "labelled" / "train", {"x": 3, "y": 3})
    test = make_folder(tmp_path / "labelled" / "test", {"x": 2, "y": 1}, start=20)
    bundle = DATASETS.build("image_files", images=str(nested), eval={"train": str(train), "test": str(test)})
    assert len(bundle.pretrain) == 5 and len(bundle.eval_train) == 6 and len(bundle.eval_test) == 3
    assert bundle.num_classes == 2 and bundle.stats["eval_split"] == f"test ({test})"
    item = bundle.eval_test[2]
    assert set(item) == {"input", "label"} and item["label"] == 1 and item["input"].shape == (3, 32, 32)
    carved = DATASETS.build(
        "image_files", images=str(nested), eval={"train": str(train), "val": {"fraction": 0.34}}
    )
    assert len(carved.eval_train) == 4 and len(carved.eval_test) == 2
    assert carved.stats["eval_split"].startswith("val (fraction 0.34 per class (seed 0)")
    with pytest.raises(DataError, match=r"data\.eval\.test: not found"):
        DATASETS.build(
            "image_files", images=str(nested), eval={"train": str(train), "test": str(tmp_path / "no")}
        )


def test_image_files_recipe(nested: Path) -> None:
    raw = {
        "name": "unlabelled",
        "modality": "image",
        "method": {"name": "rotation"},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "image_files", "images": str(nested), "views": None},
    }
    assert from_dict(raw).component("data")[1]["images"] == str(nested)
    raw["data"]["eval"] = {"train": str(nested), "tset": "x"}
    with pytest.raises(ConfigError, match=r"unknown key 'data\.eval\.tset' \(did you mean 'test'\?\)"):
        from_dict(raw)
    raw["data"] = {"name": "image_files", "images": str(nested)}
    raw["method"] = {"name": "simclr"}
    from_dict(raw)  # two views from unlabelled images
