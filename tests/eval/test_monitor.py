"""The online kNN monitor: logged every N steps, a real accuracy, and training untouched by it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmssl.config import from_dict
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.eval.monitor import KNNMonitor, MonitorOptions, fixed_subset
from mmssl.train.config import TrainConfig
from mmssl.train.trainer import Trainer


class Clusters(Dataset):
    """Two well separated Gaussian clusters in 8-d, label = cluster; items for pretraining and evaluation."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = torch.randn(n, 8, generator=g) + 4.0 * self.y[:, None].float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        noisy = [self.x[i] + 0.1 * torch.randn(8), self.x[i] + 0.1 * torch.randn(8)]
        return {"views": noisy, "index": i, "input": self.x[i], "label": int(self.y[i])}


class TinyMethod(Method):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = _Encoder()

    def forward(self, batch):
        a, b = (self.encoder(v)["global"] for v in batch["views"])
        return {"loss": (a - b).pow(2).mean() + 0.01 * a.pow(2).mean()}


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5))
        self.out_dim = 8

    def forward(self, x):
        return {"global": self.net(x)}


def _bundle() -> DataBundle:
    return DataBundle(
        pretrain=Clusters(), eval_train=Clusters(seed=1), eval_test=Clusters(seed=2), num_classes=2
    )


def _cfg() -> TrainConfig:
    return TrainConfig(
        steps=6, batch_size=8, optimizer="sgd", lr=0.1, ckpt_every=0, log_every=2, progress=False
    )


def test_monitor_is_logged_every_n_steps_and_leaves_training_bit_identical(tmp_path) -> None:
    plain = TinyMethod()
    Trainer(_cfg(), plain, Clusters(), run_dir=tmp_path / "plain").fit()
    monitored = TinyMethod()
    monitor = KNNMonitor(
        _bundle(), MonitorOptions(every=2, bank_size=40, query_size=30, k=5), torch.device("cpu")
    )
    Trainer(_cfg(), monitored, Clusters(), run_dir=tmp_path / "mon", monitors=[monitor]).fit()
    for a, b in zip(plain.state_dict().values(), monitored.state_dict().values()):
        assert torch.equal(a, b)  # same weights and BN statistics: the monitor changed nothing
    assert monitored.training and all(m.training for m in monitored.modules())
    rows = [json.loads(line) for line in (tmp_path / "mon" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "monitor_knn_top1" in r]
    assert steps == [2, 4, 6]
    # The clusters are 4 standard deviations apart: a near-identity encoder separates them.
    assert all(r["monitor_knn_top1"] > 0.9 for r in rows if "monitor_knn_top1" in r)


def test_monitor_accuracy_equals_a_direct_knn_on_the_same_subsets() -> None:
    data = _bundle()
    monitor = KNNMonitor(data, MonitorOptions(every=1, bank_size=20, query_size=10, k=3), torch.device("cpu"))
    method = TinyMethod()
    method.encoder.net = nn.Identity()  # features = inputs: the kNN answer can be computed by hand
    bank = fixed_subset(data.eval_train, 20, 0)
    queries = fixed_subset(data.eval_test, 10, 1)
    xb = torch.stack([bank[i]["input"] for i in range(20)])
    yb = torch.tensor([bank[i]["label"] for i in range(20)])
    correct = 0
    for i in range(10):
        q = queries[i]
        sims = torch.nn.functional.normalize(xb, dim=1) @ torch.nn.functional.normalize(q["input"], dim=0)
        top = sims.topk(3)
        votes = torch.zeros(2).index_add_(0, yb[top.indices], (top.values / 0.07).exp())
        correct += int(votes.argmax()) == q["label"]
    assert monitor(method)["monitor_knn_top1"] == pytest.approx(correct / 10)


def test_recipe_monitor_section_is_validated() -> None:
    raw = {
        "name": "t",
        "modality": "image",
        "method": {"name": "simclr"},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "procedural_shapes"},
        "eval": {"monitor": {"every": 50, "bank_size": 100}},
    }
    assert from_dict(raw).eval["monitor"]["every"] == 50
    raw["eval"]["monitor"] = {"evry": 5}
    with pytest.raises(ConfigError, match="eval.monitor.evry.*did you mean 'every'"):
        from_dict(raw)
