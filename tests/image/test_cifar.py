"""torchvision's CIFAR python format: tiny batches written here, read back pixel for pixel; pickles that
name anything outside the format are refused without running it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mmssl.errors import CorruptFileError, DataError
from mmssl.modalities.image.cifar import CIFAR10_FOLDER, CifarImages, load_pickle, locate_cifar

CLASSES = ["plane", "car", "bird"]


def cifar_images(n: int, seed: int) -> np.ndarray:
    """``n`` random images uint8 [n, 3, 32, 32]."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def write_batch(
    path: Path, images: np.ndarray, labels: list[int], label_key: str = "labels", protocol: int = 4
) -> None:
    """One batch in the format torchvision reads: ``{b"data": uint8 [N, 3072], b"<label_key>": [...]}``."""
    batch = {b"batch_label": b"tiny", label_key.encode(): labels, b"data": images.reshape(len(images), -1)}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar10(
    folder: Path, batches: list[tuple[np.ndarray, list[int]]], test: tuple[np.ndarray, list[int]]
) -> Path:
    """A ``cifar-10-batches-py`` folder with ``data_batch_1..N``, ``test_batch`` and ``batches.meta``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (images, labels) in enumerate(batches, start=1):
        write_batch(folder / f"data_batch_{i}", images, labels)
    write_batch(folder / "test_batch", *test)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


@pytest.fixture
def cifar10(tmp_path: Path) -> tuple[Path, np.ndarray, list[int], np.ndarray, list[int]]:
    """A torchvision root with a 2-batch CIFAR-10 folder: (root, train images, labels, test images, labels)"""
    a, b, t = cifar_images(4, 0), cifar_images(3, 1), cifar_images(3, 2)
    la, lb, lt = [0, 1, 2, 0], [1, 2, 2], [2, 1, 0]
    write_cifar10(tmp_path / CIFAR10_FOLDER, [(a, la), (b, lb)], (t, lt))
    return tmp_path, np.concatenate([a, b]), la + lb, t, lt


def test_round_trip_train_and_test_parts(cifar10) -> None:
    root, train_images, train_labels, test_images, test_labels = cifar10
    for path in (root, root / CIFAR10_FOLDER):  # torchvision's root, or the batches folder itself
        train = CifarImages.open(path, "train")
        assert train.classes == CLASSES and train.targets == train_labels and len(train) == 7
        for i in range(len(train)):
            img, label = train[i]
            assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and label == train_labels[i]
            assert np.array_equal(img.numpy(), train_images[i])
    test = CifarImages.open(root, "test")
    assert test.targets == test_labels
    assert np.array_equal(torch.stack([test[i][0] for i in range(3)]).numpy(), test_images)
    assert "data_batch_1, data_batch_2" in train.source and "test_batch" in test.source
    # ids name the file and the index in it; train and test share none
    assert train.sample_ids()[4].endswith(f"{CIFAR10_FOLDER}/data_batch_2#0")
    assert not set(train.sample_ids()) & set(test.sample_ids())


def test_one_batch_file_and_subset(cifar10) -> None:
    root, train_images, train_labels, *_ = cifar10
    second = CifarImages.open(root / CIFAR10_FOLDER / "data_batch_2")
    assert second.targets == train_labels[4:] and np.array_equal(second.images.numpy(), train_images[4:])
    part = CifarImages.open(root).subset([6, 1])
    assert part.targets == [train_labels[6], train_labels[1]]
    assert np.array_equal(part[0][0].numpy(), train_images[6])
    assert part.sample_ids()[1].endswith("data_batch_1#1") and part.classes == CLASSES


@pytest.mark.parametrize("protocol", [2, 5])
def test_other_pickle_protocols_and_str_keys(tmp_path: Path, protocol: int) -> None:
    # protocol 2 writes bytes via _codecs.encode; 5 writes arrays via numeric._frombuffer
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = cifar_images(5, 3)
    write_batch(folder / "train", images, [0, 1, 2, 3, 4], label_key="fine_labels", protocol=protocol)
    write_batch(folder / "test", images[:2], [4, 4], label_key="fine_labels", protocol=protocol)
    # the official files were written by Python 2: str keys and names
    names = {"fine_label_names": [f"c{i}" for i in range(5)], "coarse_label_names": ["x"]}
    (folder / "meta").write_bytes(pickle.dumps(names, protocol=protocol))
    train = CifarImages.open(tmp_path, "train")
    assert train.classes == [f"c{i}" for i in range(5)] and train.targets == [0, 1, 2, 3, 4]
    assert np.array_equal(train.images.numpy(), images)
    assert CifarImages.open(folder, "test").targets == [4, 4]


class RunsShell:
    """What an attacker would pickle: loading it calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    folder = write_cifar10(
        tmp_path / CIFAR10_FOLDER, [(cifar_images(2, 0), [0, 1])], (cifar_images(1, 1), [0])
    )
    marker = tmp_path / "pwned"
    evil = folder / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": RunsShell(f"touch {marker}"), b"labels": [0]}))
    with pytest.raises(CorruptFileError) as info:
        CifarImages.open(folder, "train")
    assert info.value.path == evil and str(evil) in str(info.value)
    assert "system" in str(info.value)  # the refused name is reported
    assert not marker.exists()
    # any other global is refused too, e.g. builtins.eval
    evil.write_bytes(b"cbuiltins\neval\n(Vprint(1)\ntR.")
    with pytest.raises(CorruptFileError, match="builtins.eval"):
        load_pickle(evil)


def test_damaged_batches_are_named(tmp_path: Path) -> None:
    folder = write_cifar10(
        tmp_path / CIFAR10_FOLDER, [(cifar_images(2, 0), [0, 1])], (cifar_images(1, 1), [0])
    )
    batch = folder / "data_batch_1"
    cases = {
        b"\x80\x04garbage": "not a readable pickle",
        pickle.dumps([1, 2, 3]): "expected a pickled dict",
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}): "uint8 array",
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}): "2 images but 1 labels",
        pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [7]}): "labels outside",
        pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}): "no 'labels' entry",
    }
    for content, message in cases.items():
        batch.write_bytes(content)
        with pytest.raises(CorruptFileError, match=message) as info:
            CifarImages.open(folder)
        assert info.value.path == batch
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="has no 'test_batch'"):
        CifarImages.open(folder, "test")
    (folder / "batches.meta").unlink()
    assert locate_cifar(folder) is None  # no meta file: not a CIFAR folder
    with pytest.raises(DataError, match="not a CIFAR python folder"):
        CifarImages.open(folder)
