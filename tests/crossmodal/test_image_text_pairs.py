"""The JSONL / CSV image–caption loader on tiny files written here: good files, missing images, missing
columns and fields (errors naming the file and line), skip_bad, and the image_text_pairs bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmssl.crossmodal.image_text.datasets import image_text_pairs
from mmssl.crossmodal.image_text.extras import zero_shot_tasks
from mmssl.crossmodal.image_text.pair_files import read_pair_file
from mmssl.crossmodal.image_text.tokens import CaptionTokenizer
from mmssl.data import SkipBadFiles
from mmssl.data.extras import HeldOutPairs
from mmssl.errors import CorruptFileError, DataError

CIFAR_JPG = Path(__file__).resolve().parents[3] / "shared" / "data" / "images" / "cifar10_jpg"
# Every word of the held-out captions (every third: 2 and 5) also occurs in a training caption.
CAPTIONS = ["a red square", "a blue circle", "a red circle", "a blue square", "a red star", "a blue star"]


def _png(path: Path, value: int, size: tuple[int, int] = (20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.fixture()
def folder(tmp_path) -> Path:
    for i in range(len(CAPTIONS)):
        _png(tmp_path / "img" / f"{i}.png", 40 * i)
    return tmp_path


def test_jsonl_and_csv_list_the_same_pairs_relative_to_their_folder(folder):
    jsonl = _write_jsonl(
        folder / "pairs.jsonl", [{"image": f"img/{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)]
    )
    csv = folder / "pairs.csv"
    csv.write_text(
        "caption,image,extra\n" + "".join(f'"{c}",img/{i}.png,x\n' for i, c in enumerate(CAPTIONS))
    )
    for path in (jsonl, csv):
        pairs = read_pair_file(path)
        assert [p.caption for p in pairs] == CAPTIONS
        assert [p.image for p in pairs] == [folder / "img" / f"{i}.png" for i in range(len(CAPTIONS))]
    assert read_pair_file(jsonl)[2].where == f"{jsonl}:3"
    assert read_pair_file(csv)[2].where == f"{csv}:4"  # the header is line 1


def test_missing_image_names_the_file_and_line(folder):
    records = [{"image": "img/0.png", "caption": "a"}, {"image": "img/nope.png", "caption": "b"}]
    path = _write_jsonl(folder / "pairs.jsonl", records)
    with pytest.raises(CorruptFileError, match=r"pairs\.jsonl \(line 2: image not found: .*nope\.png"):
        read_pair_file(path)
    csv = folder / "pairs.csv"
    csv.write_text("image,caption\nimg/0.png,a\n\nimg/gone.png,b\n")
    with pytest.raises(CorruptFileError, match=r"pairs\.csv \(line 4: image not found: .*gone\.png"):
        read_pair_file(csv)


def test_missing_column_or_field_is_named(folder):
    csv = folder / "pairs.csv"
    csv.write_text("path,text\nimg/0.png,a\n")
    with pytest.raises(DataError, match=r"pairs\.csv: no column 'image', 'caption'.*columns: path, text"):
        read_pair_file(csv)
    assert [p.caption for p in read_pair_file(csv, image_field="path", caption_field="text")] == ["a"]
    path = _write_jsonl(
        folder / "pairs.jsonl", [{"image": "img/0.png", "caption": "a"}, {"image": "img/1.png"}]
    )
    with pytest.raises(CorruptFileError, match=r"line 2: no 'caption'.*fields: image"):
        read_pair_file(path)
    bad_json = _write_jsonl(folder / "bad.jsonl", ["{not json"])
    with pytest.raises(CorruptFileError, match="line 1: not JSON"):
        read_pair_file(bad_json)
    with pytest.raises(DataError, match="must be a .jsonl or .csv"):
        read_pair_file(folder / "pairs.txt")


def test_skip_bad_leaves_out_bad_lines_and_undecodable_images(folder):
    (folder / "img" / "broken.png").write_bytes(b"not a png")
    records = [
        {"image": "img/0.png", "caption": "kept one"},
        {"image": "img/missing.png", "caption": "x"},
        {"image": "img/1.png"},
        "[1, 2]",
        {"image": "img/broken.png", "caption": "y"},
        {"image": "img/2.png", "caption": "kept two"},
    ]
    path = _write_jsonl(folder / "pairs.jsonl", records)
    skipping = SkipBadFiles(skip=True)
    pairs = read_pair_file(path, skipping=skipping)
    assert [p.caption for p in pairs] == ["kept one", "kept two"]
    assert {str(p) for p in skipping.bad_files} == {
        f"{path}:2",
        f"{path}:3",
        f"{path}:4",
        str(folder / "img" / "broken.png"),
    }
    # Without skip_bad the undecodable image is listed, and raises naming it when read.
    bundle = image_text_pairs(
        str(_write_jsonl(folder / "b.jsonl", [{"image": "img/broken.png", "caption": "y"}] * 4)),
        test_every=2,
        min_frequency=1,
        cache_dir=str(folder / "cache"),
    )
    with pytest.raises(CorruptFileError, match=r"broken\.png"):
        bundle.pretrain[0]


def test_bundle_splits_tokenizes_and_gives_held_out_pairs(folder):
    records = [{"image": f"img/{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)]
    path = _write_jsonl(folder / "pairs.jsonl", records)
    bundle = image_text_pairs(
        str(path), test_every=3, image_size=16, max_length=8, min_frequency=1, cache_dir=str(folder / "c")
    )
    assert bundle.stats["num_train"] == 4 and bundle.stats["num_test"] == 2
    tokens = bundle.find_extra(CaptionTokenizer)
    item = bundle.pretrain[0]
    assert set(item) == {"image", "text", "index"} == set(bundle.produces)
    assert item["image"].shape == (3, 16, 16) and item["text"].shape == (8,)
    assert tokens.tokenizer.decode(item["text"], skip_special_tokens=True) == CAPTIONS[0]
    held = bundle.find_extra(HeldOutPairs).dataset
    assert [tokens.tokenizer.decode(held[i]["text"], skip_special_tokens=True) for i in range(2)] == [
        CAPTIONS[2],
        CAPTIONS[5],
    ]
    # The held-out image is the listed file (grey level 40 * 2), resized, centre-cropped and normalised.
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(held[0]["image"], ((torch.full((3, 16, 16), 80 / 255) - mean) / std))
    assert bundle.eval_test is None and not zero_shot_tasks(bundle.extras)


def test_eval_image_folder_gives_a_zero_shot_task_named_by_its_classes(folder):
    for split, n in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(n):
                _png(folder / "labelled" / split / name / f"{i}.png", 50 + i)
    records = [{"image": f"img/{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)]
    bundle = image_text_pairs(
        str(_write_jsonl(folder / "pairs.jsonl", records)),
        test_every=3,
        image_size=16,
        min_frequency=1,
        cache_dir=str(folder / "c"),
        eval={"train": str(folder / "labelled" / "train"), "test": str(folder / "labelled" / "test")},
    )
    (task,) = zero_shot_tasks(bundle.extras)
    assert task.name == "classes" and task.class_names == ("cat", "dog") and len(task.dataset) == 4
    assert bundle.num_classes == 2 and len(bundle.eval_train) == 6


@pytest.mark.skipif(not CIFAR_JPG.is_dir(), reason=f"shared data not found: {CIFAR_JPG}")
def test_real_images_listed_in_a_csv(tmp_path):
    rows = []
    for cls in ("cat", "ship"):
        for f in sorted((CIFAR_JPG / "train" / cls).glob("*.jpg"))[:4]:
            rows.append(f"{f},a photo of a {cls}\n")
    csv = tmp_path / "pairs.csv"
    csv.write_text("image,caption\n" + "".join(rows))
    bundle = image_text_pairs(
        str(csv), test_every=4, image_size=32, min_frequency=1, cache_dir=str(tmp_path / "c")
    )
    item = bundle.pretrain[0]
    assert item["image"].shape == (3, 32, 32) and torch.isfinite(item["image"]).all()
    assert bundle.stats["num_train"] == 6 and bundle.stats["num_test"] == 2
