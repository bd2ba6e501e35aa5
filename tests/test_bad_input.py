"""Bad input gets a clear error naming the file or key, through the CLI a user runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmssl.cli import main

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CIFAR = SHARED / "images" / "cifar10_jpg"

TINY = [
    "train.steps=2",
    "train.batch_size=16",
    "train.progress=false",
    "train.num_workers=0",
    "data.image_size=32",
    "eval.few_shot.shots=[1]",
    "eval.few_shot.seeds=2",
    "eval.knn.k=3",
    "eval.linear.epochs=2",
]


@pytest.fixture
def small_folder(tmp_path):
    """A 3-class ImageFolder copied from the real CIFAR-10 sample (skip when it is absent)."""
    if not CIFAR.is_dir():
        pytest.skip(f"real image sample not found: {CIFAR}")
    root = tmp_path / "imgs"
    for split, n in (("train", 8), ("test", 3)):
        for cls in ("airplane", "cat", "ship"):
            dst = root / split / cls
            dst.mkdir(parents=True)
            for f in sorted((CIFAR / split / cls).glob("*.jpg"))[:n]:
                shutil.copy(f, dst / f.name)
    return root


def test_corrupt_image_is_named(small_folder, capsys):
    bad = small_folder / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    code = main(
        [
            "run",
            "quickstart",
            *_folder_overrides(small_folder),
            *TINY,
            f"out_dir={small_folder.parent / 'run'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err


def test_corrupt_image_skipped_under_skip_bad(small_folder, capsys):
    (small_folder / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    code = main(
        [
            "run",
            "quickstart",
            *_folder_overrides(small_folder),
            "data.skip_bad=true",
            *TINY,
            f"out_dir={small_folder.parent / 'run'}",
        ]
    )
    assert code == 0


def _folder_overrides(root: Path) -> list[str]:
    # The quickstart recipe names procedural_shapes; switch the whole data section to image_folder.
    return [f"data={{name: image_folder, root: {root}, views: simclr, image_size: 32}}"]


def test_unknown_data_root_is_named(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = main(["run", "quickstart", *_folder_overrides(missing), *TINY, f"out_dir={tmp_path / 'run'}"])
    assert code == 1
    assert str(missing) in capsys.readouterr().err
