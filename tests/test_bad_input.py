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


# ------------------------------------------------------------------ loading never runs the file's code


class RunsCode:
    """Unpickling this calls ``exec``, which would write ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _disguised(path: Path, marker: Path, as_torch_file: bool, outer: dict) -> Path:
    """A file named like a checkpoint or encoder whose pickle calls ``exec``: written by ``torch.save``
    (a zip, as real ones are) or as a bare pickle."""
    import pickle

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**outer, "state_dict": RunsCode(marker)}
    if as_torch_file:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, for the bare pickle
@pytest.mark.parametrize("as_torch_file", [True, False], ids=["torch.save", "bare_pickle"])
def test_pickled_payload_as_a_checkpoint_is_refused_without_running(tmp_path, as_torch_file):
    from mmssl.train.checkpoint import FORMAT, load_checkpoint

    marker = tmp_path / "pwned"
    last = _disguised(tmp_path / "run" / "checkpoints" / "last.pt", marker, as_torch_file, {"format": FORMAT})
    with pytest.raises(ValueError) as info:
        load_checkpoint(last)
    assert f"cannot read checkpoint {last}" in str(info.value) and not marker.exists()


@pytest.mark.parametrize("as_torch_file", [True, False], ids=["torch.save", "bare_pickle"])
def test_pickled_payload_as_an_encoder_file_is_refused_with_a_clear_error(tmp_path, as_torch_file):
    from mmssl.encoders import ENCODER_FORMAT, load_encoder
    from mmssl.errors import CorruptFileError

    marker = tmp_path / "pwned"
    outer = {"format": ENCODER_FORMAT, "name": "resnet18", "kwargs": {}}
    encoder_pt = _disguised(tmp_path / "run" / "encoder.pt", marker, as_torch_file, outer)
    with pytest.raises(CorruptFileError) as info:
        load_encoder(encoder_pt)
    assert info.value.path == encoder_pt and not marker.exists()
    if as_torch_file:  # the refused callable is named; torch's advice to load with weights_only=False is not
        assert str(info.value) == (
            f"corrupt or unreadable file: {encoder_pt} (refused: not a weights-only file, loading it would "
            "call exec; mmssl loads tensors and plain values only, never code)"
        )
    else:  # this torch stops at the pickle's first opcode it does not support (FRAME, protocol 4)
        assert str(info.value).startswith(
            f"corrupt or unreadable file: {encoder_pt} (refused: not a weights-only"
        )
        assert "mmssl loads tensors and plain values only" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def _calls(tree):
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = ast.unparse(func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
            yield node.lineno, name, keywords


def test_every_loader_in_the_code_is_a_safe_one():
    """yaml.safe_load is the only YAML loader; every torch.load has weights_only=True; np.load never
    allows pickles; pickle is unpickled only by the CIFAR reader's RestrictedUnpickler."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    files = [
        p for folder in ("mmssl", "data_tools", "benchmarks") for p in sorted((repo / folder).rglob("*.py"))
    ]
    problems = []
    for path in files:
        rel = path.relative_to(repo).as_posix()
        for line, name, keywords in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{rel}:{line}: {name}"
            if name.startswith("yaml.") and name not in ("yaml.safe_load", "yaml.safe_dump", "yaml.dump"):
                problems.append(f"{where} (only yaml.safe_load reads YAML)")
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                problems.append(f"{where} without weights_only=True")
            if name in ("np.load", "numpy.load") and keywords.get("allow_pickle", "False") != "False":
                problems.append(f"{where} with allow_pickle")
            if name.split(".")[-1] in ("loads", "load", "Unpickler") and name.split(".")[0] in (
                "pickle",
                "cPickle",
                "dill",
                "joblib",
                "marshal",
            ):
                problems.append(f"{where} (unpickles; use a restricted unpickler)")
    assert files and not problems, "\n".join(problems)
