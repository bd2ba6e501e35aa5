"""The generic data layer: batch keys, the produced/consumed check, extras, wrappers, N views, skipping."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmssl.config import from_dict
from mmssl.data import (
    DataBundle,
    LabelledItems,
    MultiViewItems,
    MultiViewTransform,
    SingleItems,
    SkipBadFiles,
    data_source,
)
from mmssl.data.keys import IMAGE, INDEX, LABEL, VIEWS, batch_key, check_batch_keys, describe
from mmssl.errors import ConfigError, CorruptFileError, DataError


class Pairs(Dataset):
    """``(x, y)`` items: x = [i, i], y = i % 2."""

    def __init__(self, n: int = 6) -> None:
        self.n = n
        self.targets = [i % 2 for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor([float(i), float(i)]), i % 2


def test_batch_keys_are_plain_strings_that_survive_worker_processes() -> None:
    # exactly str, not a subclass: torch 2.11's Dynamo cannot compare a str subclass with a batch's keys
    assert (
        IMAGE == "image" and type(IMAGE) is str and type(VIEWS) is str and describe(IMAGE).startswith("[B, 3")
    )
    restored = pickle.loads(pickle.dumps({IMAGE: 1, VIEWS: 2}))
    assert restored == {"image": 1, "views": 2}
    assert batch_key("image", describe(IMAGE)) == IMAGE  # declaring the same meaning again is harmless
    with pytest.raises(ValueError, match="batch key 'image' is already declared"):
        batch_key("image", "something else")
    # Through a real DataLoader worker (items are pickled on the way back).
    loader = DataLoader(SingleItems(Pairs(), None, IMAGE), batch_size=3, num_workers=1)
    batch = next(iter(loader))
    assert set(batch) == {"image", "label", "index"} and batch["index"].tolist() == [0, 1, 2]


def test_missing_batch_keys_name_method_dataset_and_what_exists() -> None:
    check_batch_keys({VIEWS}, {VIEWS, INDEX}, "simclr", "shapes")
    with pytest.raises(ConfigError, match=r"method 'simclr' reads batch key\(s\) 'views'.*'image', 'index'"):
        check_batch_keys({VIEWS}, {IMAGE, INDEX}, "simclr", "shapes")


RECIPE = {
    "name": "t",
    "modality": "image",
    "method": {"name": "simclr"},
    "encoder": {"name": "small_cnn"},
    "data": {"name": "procedural_shapes", "views": "simclr"},
}


def test_recipe_loader_rejects_a_two_view_method_on_single_images() -> None:
    assert from_dict(RECIPE).method["name"] == "simclr"
    bad = {**RECIPE, "data": {"name": "procedural_shapes", "views": None}}
    with pytest.raises(ConfigError, match="method 'simclr' reads batch key.*'views'.*procedural_shapes"):
        from_dict(bad)
    # rotation reads single images: the same data with views=null is right for it, two views are not.
    rotation = {**RECIPE, "method": {"name": "rotation"}}
    with pytest.raises(ConfigError, match="method 'rotation' reads batch key.*'image'"):
        from_dict(rotation)
    assert from_dict({**rotation, "data": {"name": "procedural_shapes", "views": None}})


def test_data_source_declares_keys_from_options_with_defaults() -> None:
    @data_source(produces=lambda o: {VIEWS, INDEX} if o["views"] else {IMAGE, LABEL, INDEX})
    def tiny(*, seed: int = 0, views: str | None = "two") -> DataBundle:
        return DataBundle(pretrain=Pairs())

    assert tiny.produced_keys({}) == {"views", "index"}  # the builder's default applies
    assert tiny.produced_keys({"views": None}) == {"image", "label", "index"}
    assert tiny(views=None).produces == {"image", "label", "index"}
    assert tiny.__name__ == "tiny"
    with pytest.raises(TypeError, match="must take a 'seed'"):
        data_source(produces={IMAGE})(lambda: DataBundle(pretrain=Pairs()))


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]


def test_extras_are_found_by_type_and_a_missing_one_is_named() -> None:
    bundle = DataBundle(pretrain=Pairs(), extras=(Vocabulary(("a", "b")),), name="corpus")
    assert bundle.extra(Vocabulary, needed_by="method 'mlm'").words == ("a", "b")
    assert DataBundle(pretrain=Pairs()).find_extra(Vocabulary) is None
    with pytest.raises(ConfigError, match="method 'mlm' needs Vocabulary.*'shapes' provides none"):
        DataBundle(pretrain=Pairs(), name="shapes").extra(Vocabulary, needed_by="method 'mlm'")


def test_wrappers_give_the_contract_dicts() -> None:
    base = Pairs()
    labelled = LabelledItems(base, lambda x: 2 * x)
    assert labelled.targets == base.targets
    item = labelled[3]
    assert torch.equal(item["input"], torch.tensor([6.0, 6.0])) and item["label"] == 1
    views = MultiViewItems(base, MultiViewTransform([lambda x: x + 1, lambda x: x - 1]))[2]
    assert views["index"] == 2 and [v.tolist() for v in views["views"]] == [[3.0, 3.0], [1.0, 1.0]]
    single = SingleItems(base, None, IMAGE)[4]
    assert torch.equal(single["image"], torch.tensor([4.0, 4.0])) and single["label"] == 0


def test_multiview_transform_draws_each_view_independently() -> None:
    noisy = MultiViewTransform.repeated(lambda x: x + torch.randn(()), 3)
    torch.manual_seed(0)
    views = noisy(torch.zeros(()))
    torch.manual_seed(0)
    expected = [torch.randn(()) for _ in range(3)]  # the same draws, in view order
    assert len(noisy) == 3 and [v.item() for v in views] == [e.item() for e in expected]
    with pytest.raises(ValueError):
        MultiViewTransform([])


def _loader(path: Path) -> str:
    if "bad" in path.name:
        raise CorruptFileError(path, "cannot decode")
    return path.name.upper()


def test_skip_bad_files_raises_by_default_and_counts_once_when_skipping(caplog) -> None:
    paths = [Path("a.jpg"), Path("bad.jpg"), Path("c.jpg")]
    with pytest.raises(CorruptFileError, match="bad.jpg"):
        SkipBadFiles().load(paths[1], lambda: _loader(paths[1]))
    skipping = SkipBadFiles(skip=True)
    kept = skipping.keep_readable(paths, lambda p: p, _loader)
    assert [item for item, _ in kept] == [paths[0], paths[2]] and skipping.num_skipped == 1
    # next_readable: index 1 is bad, so index 2 is returned; the same bad file is counted once.
    assert skipping.next_readable(1, paths, lambda i: _loader(paths[i]), "folder") == "C.JPG"
    assert skipping.bad_files == [Path("bad.jpg")]
    assert sum("bad.jpg" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(DataError, match="no readable file under folder"):
        SkipBadFiles(skip=True).next_readable(0, [Path("bad1")], lambda i: _loader(Path("bad1")), "folder")


def test_evaluators_of_labelled_splits_need_a_dataset_that_has_them(tmp_path) -> None:
    unlabelled = {"name": "image_files", "images": str(tmp_path), "views": "simclr"}
    recipe = {**RECIPE, "data": unlabelled, "eval": {"knn": {"k": 5}, "monitor": {"every": 10}}}
    with pytest.raises(ConfigError, match="eval.knn, eval.monitor score.*'image_files' has none"):
        from_dict(recipe)
    assert from_dict({**recipe, "eval": {}})  # pretraining alone is fine
    labelled = {**unlabelled, "eval": {"train": str(tmp_path), "test": str(tmp_path)}}
    assert from_dict({**recipe, "data": labelled})  # checked when built: here only the declaration
