"""kNN classifier against a brute-force reference, and the shared feature extraction / cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mmssl.data import DataBundle
from mmssl.eval import knn_evaluator
from mmssl.eval.context import EvalContext
from mmssl.eval.features import cached_features, clear_feature_cache, extract_features
from mmssl.eval.knn import knn_accuracy, knn_classify
from mmssl.eval.options import KNNOptions


def brute_force_knn(train, train_labels, test, num_classes, k, temperature):
    """Per test sample: cosine similarities, sort, keep the top k, add exp(sim / T) to each class."""
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    preds = []
    for q in test:
        sims = [float(q @ t) / (np.linalg.norm(q) * np.linalg.norm(t)) for t in train]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(train_labels[i])] += np.exp(sims[i] / temperature)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


@pytest.mark.parametrize("k,temperature", [(1, 0.07), (7, 0.07), (20, 0.5), (60, 0.1), (500, 0.07)])
def test_knn_matches_brute_force(k, temperature):
    gen = torch.Generator().manual_seed(k)
    train = torch.randn(60, 8, generator=gen)
    labels = torch.randint(0, 5, (60,), generator=gen)
    test = torch.randn(25, 8, generator=gen)
    expected = brute_force_knn(train.numpy(), labels.numpy(), test.numpy(), 5, min(k, 60), temperature)
    got = knn_classify(train, labels, test, num_classes=5, k=k, temperature=temperature)
    assert got.dtype == torch.long and got.shape == (25,)
    np.testing.assert_array_equal(got.numpy(), expected)
    # Chunking the test set must not change anything.
    np.testing.assert_array_equal(
        knn_classify(train, labels, test, 5, k, temperature, chunk_size=4).numpy(), expected
    )


def test_tiny_temperature_reduces_to_nearest_neighbour_without_overflow():
    gen = torch.Generator().manual_seed(1)
    train, labels, test = (
        torch.randn(50, 6, generator=gen),
        torch.randint(0, 4, (50,), generator=gen),
        torch.randn(30, 6, generator=gen),
    )
    one_nn = brute_force_knn(train.numpy(), labels.numpy(), test.numpy(), 4, k=1, temperature=1.0)
    got = knn_classify(train, labels, test, 4, k=20, temperature=1e-4)  # exp(1/1e-4) would overflow
    np.testing.assert_array_equal(got.numpy(), one_nn)


def _clusters(n_per_class, num_classes, dim, noise, gen):
    centers = torch.randn(num_classes, dim, generator=gen) * 5
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centers[labels] + noise * torch.randn(len(labels), dim, generator=gen), labels


def test_knn_perfect_on_separated_clusters():
    gen = torch.Generator().manual_seed(2)
    x_tr, y_tr = _clusters(30, 6, 16, 0.1, gen)
    x_te, y_te = _clusters(10, 6, 16, 0.1, torch.Generator().manual_seed(2))  # same centers, new noise
    assert knn_accuracy(x_tr, y_tr, x_te, y_te, 6, k=20) == 1.0


def test_knn_near_chance_on_random_labels():
    gen = torch.Generator().manual_seed(3)
    x_tr, y_tr = torch.randn(2000, 16, generator=gen), torch.randint(0, 10, (2000,), generator=gen)
    x_te, y_te = torch.randn(1000, 16, generator=gen), torch.randint(0, 10, (1000,), generator=gen)
    acc = knn_accuracy(x_tr, y_tr, x_te, y_te, 10, k=50)
    assert 0.05 < acc < 0.16  # chance 0.1; the binomial std with 1000 samples is ~0.01


def test_knn_rejects_labels_outside_num_classes():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        knn_classify(torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 0]), torch.randn(2, 2), num_classes=3)


# --- feature extraction ------------------------------------------------------------------------


class TinyEncoder(nn.Module):
    """Follows the encoder contract; BatchNorm makes eval vs train mode observable."""

    def __init__(self, in_dim: int = 6, out_dim: int = 4) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return {"global": self.net(x), "tokens": x.unsqueeze(1)}


class Labelled(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input": self.x[i], "label": int(self.y[i])}


@pytest.mark.parametrize("training", [True, False])
def test_extract_features_shapes_eval_mode_and_restores_mode(training):
    torch.manual_seed(0)
    enc = TinyEncoder()
    with torch.no_grad():  # non-trivial running statistics, so train-mode BN would give other values
        enc.net[1].running_mean.uniform_(-1, 1)
        enc.net[1].running_var.uniform_(0.5, 2)
    x, y = torch.randn(10, 6), torch.arange(10) % 3
    enc.train(training)
    feats, labels = extract_features(enc, Labelled(x, y), batch_size=4)
    assert enc.training is training
    assert feats.shape == (10, 4) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert labels.tolist() == y.tolist() and labels.dtype == torch.long
    enc.eval()
    with torch.no_grad():
        expected = enc.net(x)
    torch.testing.assert_close(feats, expected)
    assert not feats.requires_grad


def test_cached_features_reuses_and_notices_parameter_updates():
    clear_feature_cache()
    enc, ds = TinyEncoder(), Labelled(torch.randn(8, 6), torch.zeros(8))
    first = cached_features(enc, ds, batch_size=8)
    second = cached_features(enc, ds, batch_size=8)
    assert enc.calls == 1 and second[0] is first[0]
    with torch.no_grad():  # an in-place update, like an optimiser step
        enc.net[0].weight.add_(1.0)
    third = cached_features(enc, ds, batch_size=8)
    assert enc.calls == 2
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(third[0], enc.net(ds.x))
    cached_features(enc, ds, batch_size=8, cache=False)
    assert enc.calls == 3
    clear_feature_cache()


class ConvEncoder(nn.Module):
    """A 2-D CNN that records the memory format of every input it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 5
        self.net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.nhwc_inputs: list[bool] = []

    def forward(self, x):
        self.nhwc_inputs.append(x.is_contiguous(memory_format=torch.channels_last))
        return {"global": self.net(x)}


def test_channels_last_extraction_changes_the_layout_not_the_features():
    clear_feature_cache()
    torch.manual_seed(0)
    enc, ds = ConvEncoder(), Labelled(torch.randn(6, 3, 8, 8), torch.arange(6) % 2)
    nchw, _ = cached_features(enc, ds, batch_size=4)
    assert enc.nhwc_inputs == [False, False]
    nhwc, labels = cached_features(enc, ds, batch_size=4, channels_last=True)
    assert enc.nhwc_inputs[2:] == [True, True]  # not served from the NCHW entry of the cache
    torch.testing.assert_close(nhwc, nchw)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    clear_feature_cache()


def test_knn_evaluator_on_bundle_and_missing_split_error():
    gen = torch.Generator().manual_seed(4)
    x_tr, y_tr = _clusters(20, 3, 6, 0.05, gen)
    x_te, y_te = _clusters(5, 3, 6, 0.05, torch.Generator().manual_seed(4))
    enc = TinyEncoder(6, 6)
    with torch.no_grad():  # identity features so the clusters stay separated
        enc.net[0].weight.copy_(torch.eye(6))
        enc.net[0].bias.zero_()
    data = DataBundle(
        pretrain=Labelled(x_tr, y_tr),
        eval_train=Labelled(x_tr, y_tr),
        eval_test=Labelled(x_te, y_te),
        num_classes=3,
    )
    out = knn_evaluator(enc, data, EvalContext(device=torch.device("cpu"), seed=0), KNNOptions(k=10))
    assert out == {"knn_top1": 1.0}
    with pytest.raises(ValueError, match="eval_train"):
        knn_evaluator(
            enc, DataBundle(pretrain=data.pretrain), EvalContext(device=torch.device("cpu"), seed=0)
        )


def test_evaluators_are_registered_for_every_modality():
    from mmssl.eval import few_shot_evaluator, finetune_evaluator, linear_evaluator
    from mmssl.options import whole_section_type
    from mmssl.registry import EVALUATORS

    expected = {
        "knn": knn_evaluator,
        "linear": linear_evaluator,
        "few_shot": few_shot_evaluator,
        "finetune": finetune_evaluator,
    }
    for name, fn in expected.items():
        assert EVALUATORS.get(name) is fn and EVALUATORS.modality_of(name) is None
    knn_options = {f.name for f in dataclasses.fields(whole_section_type(EVALUATORS.get("knn")))}
    assert {"k", "temperature", "batch_size"} <= knn_options
