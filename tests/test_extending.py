"""docs/extending.md, checked: a new modality is a new folder (no existing file edited) and its data runs
with the core's two-view methods and the generic evaluators unchanged; a new evaluator is one function plus
one table line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import mmssl.modalities
from mmssl import pipeline, registry
from mmssl.config import from_dict
from mmssl.errors import ConfigError

FILES = {
    "__init__.py": '"""Sonar: 1-d echo profiles (a modality added in a test, outside the mmssl tree)."""\n',
    "components.py": """
        MODALITY = "sonar"
        ENCODERS = {"echo_mlp": "mmssl.modalities.sonar.encoders:EchoMLP"}
        DATASETS = {"echoes": "mmssl.modalities.sonar.data:echoes"}
        EVALUATORS = {"echo_energy": "mmssl.modalities.sonar.evaluators:echo_energy"}
    """,
    "encoders.py": """
        import torch
        from torch import nn

        class EchoMLP(nn.Module):
            def __init__(self, length: int = 16, width: int = 8) -> None:
                super().__init__()
                self.net = nn.Sequential(nn.Linear(length, width), nn.ReLU(), nn.Linear(width, width))
                self.out_dim = width

            def forward(self, x: torch.Tensor) -> dict:
                return {"global": self.net(x)}
    """,
    "data.py": """
        import torch
        from torch.utils.data import Dataset

        from mmssl.data import DataBundle, LabelledItems, MultiViewItems, MultiViewTransform, data_source
        from mmssl.data.keys import INDEX, VIEWS

        class Echoes(Dataset):
            '''Class c: a bump at position 4c of a 16-sample profile, plus noise.'''

            def __init__(self, n: int, seed: int) -> None:
                g = torch.Generator().manual_seed(seed)
                self.targets = [i % 3 for i in range(n)]
                self.x = 0.1 * torch.randn(n, 16, generator=g)
                for i, c in enumerate(self.targets):
                    self.x[i, 4 * c : 4 * c + 3] += 1.0

            def __len__(self) -> int:
                return len(self.targets)

            def __getitem__(self, i: int):
                return self.x[i], self.targets[i]

        def jitter(x):
            return x + 0.05 * torch.randn_like(x)

        @data_source(produces={VIEWS, INDEX})
        def echoes(*, seed: int = 0, num: int = 48) -> DataBundle:
            train, test = Echoes(num, seed), Echoes(num, seed + 1)
            return DataBundle(
                pretrain=MultiViewItems(train, MultiViewTransform.repeated(jitter, 2)),
                eval_train=LabelledItems(train),
                eval_test=LabelledItems(test),
                num_classes=3,
                name="echoes",
            )
    """,
    "evaluators.py": """
        import torch

        from mmssl.eval.context import EvalContext
        from mmssl.eval.features import extract_features

        def echo_energy(encoder, data, ctx: EvalContext, *, batch_size: int = 16) -> dict:
            '''Mean squared feature of the held-out echoes (a toy evaluator).'''
            feats, _ = extract_features(encoder, data.eval_test, batch_size=batch_size, device=ctx.device)
            return {"echo_energy": float(feats.pow(2).mean())}
    """,
}


@pytest.fixture
def sonar_modality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A ``sonar`` modality package in a temporary folder, found by the registry as a built-in one."""
    package = tmp_path / "sonar"
    package.mkdir()
    for name, text in FILES.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setattr(mmssl.modalities, "__path__", [*mmssl.modalities.__path__, str(tmp_path)])
    saved = {reg: (dict(reg._targets), dict(reg._modality)) for reg in registry.REGISTRIES.values()}
    monkeypatch.setattr(registry, "_loaded", False)
    yield
    for reg, (targets, modality) in saved.items():
        reg._targets, reg._modality = targets, modality
    for module in [m for m in sys.modules if m.startswith("mmssl.modalities.sonar")]:
        del sys.modules[module]


RECIPE = {
    "name": "sonar_simclr",
    "modality": "sonar",
    "method": {"name": "simclr", "projector_hidden": 8, "projector_dim": 4},
    "encoder": {"name": "echo_mlp"},
    "data": {"name": "echoes"},
    "train": {"steps": 4, "batch_size": 8, "lr": 0.05, "ckpt_every": 0, "progress": False, "device": "cpu"},
    "eval": {"baselines": ["random_init"], "knn": {"k": 5}, "echo_energy": {"batch_size": 4}},
}


def test_a_new_modality_folder_registers_and_runs_with_core_methods(sonar_modality, tmp_path) -> None:
    assert registry.ENCODERS.modality_of("echo_mlp") == "sonar"
    assert "echoes" in registry.DATASETS.names("sonar")
    metrics = pipeline.run(from_dict({**RECIPE, "out_dir": str(tmp_path / "run")}))
    assert 0.0 <= metrics["eval"]["knn_top1"] <= 1.0 and metrics["eval"]["echo_energy"] > 0
    assert set(metrics["baselines"]["random_init"]) == {"knn_top1", "echo_energy"}
    # The contract is checked for the new modality too: rotation reads single images.
    with pytest.raises(ConfigError, match="method 'rotation' reads batch key.*'image'.*'echoes'"):
        from_dict({**RECIPE, "method": {"name": "rotation"}})
    with pytest.raises(ConfigError, match="'eval.echo_energy.batch_sise'.*did you mean 'batch_size'"):
        from_dict({**RECIPE, "eval": {"echo_energy": {"batch_sise": 4}}})
