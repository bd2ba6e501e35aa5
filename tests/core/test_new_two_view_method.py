"""A new two-view method is one subclass of TwoViewMethod: registered by one table line, trained as is.

SimSiam (Chen & He, CVPR 2021, eq. 1-2) is written here as the example (docs/extending.md):
``L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`` with ``D(p, z) = -cos(p, z)``, i.e. only its
``pair_loss``; a second one adds an EMA target network, which then gives the targets and follows the
online network with no more code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmssl.core.losses import simsiam_loss
from mmssl.core.method import method_class
from mmssl.core.target import TargetNetwork
from mmssl.core.two_view import TwoViewMethod
from mmssl.data import DataBundle
from mmssl.data.keys import VIEWS
from mmssl.options import builder_options
from mmssl.registry import Registry
from mmssl.train.config import TrainConfig
from mmssl.train.trainer import Trainer
from tests.core.two_view_helpers import Pairs, VecEncoder, two_view_batch


class SimSiam(TwoViewMethod):
    """SimSiam: projector + predictor, negative cosine to the other view's stop-gradient projection."""

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        projector_dim: int = 8,
        predictor_hidden: int = 4,
    ) -> None:
        super().__init__(
            encoder, projector_hidden=32, projector_dim=projector_dim, predictor_hidden=predictor_hidden
        )

    def pair_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return simsiam_loss(prediction, target)


class SimSiamWithTarget(SimSiam):
    """The same loss against an EMA target network's projection of the other view."""

    def __init__(self, encoder: nn.Module, data: DataBundle | None = None) -> None:
        super().__init__(encoder, data)
        self.teacher = TargetNetwork(encoder, self.projector, momentum_base=0.5, momentum_final=0.5)


def _train_one_step(method: TwoViewMethod) -> None:
    cfg = TrainConfig(
        steps=1, batch_size=16, optimizer="sgd", lr=0.1, ckpt_every=0, progress=False, device="cpu"
    )
    Trainer(cfg, method, Pairs(), run_dir=None).fit()


def test_a_subclass_registers_builds_and_trains_like_the_built_in_methods():
    methods = Registry("method")
    methods.register("simsiam", f"{__name__}:SimSiam")  # the one line in a components table
    builder = methods.get("simsiam")
    assert method_class(builder, "simsiam") is SimSiam
    assert builder.consumed_keys({}) == {VIEWS}
    options = builder_options(builder, {"projector_dim": 8}, "method", kind="method", name="simsiam")

    torch.manual_seed(0)
    data = DataBundle(pretrain=Pairs())
    method = builder(VecEncoder(), data, **options)  # as the pipeline calls every method builder
    batch = two_view_batch(16)
    x1, x2 = batch["views"]
    (z1, p1), (z2, p2) = method.online(x1), method.online(x2)
    expected = (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2
    torch.testing.assert_close(method(batch)["loss"], expected)

    before = {k: v.clone() for k, v in method.state_dict().items()}
    _train_one_step(method)
    after = method.state_dict()
    assert after.keys() == before.keys()
    for part in ("encoder", "projector", "predictor"):
        assert any(not torch.equal(before[k], v) for k, v in after.items() if k.startswith(part)), part


def test_a_subclass_with_a_target_network_has_it_follow_the_online_network():
    torch.manual_seed(0)
    method = SimSiamWithTarget(VecEncoder())
    assert not any(p.requires_grad for p in method.teacher.parameters())
    before = {k: v.clone() for k, v in method.teacher.module.named_parameters()}
    _train_one_step(method)
    online = {
        f"{part}.{k}": v
        for part in ("encoder", "projector")
        for k, v in getattr(method, part).named_parameters()
    }
    moved = []
    for key, value in method.teacher.module.named_parameters():
        # Initialised as a copy, then one EMA step at momentum 0.5 towards the stepped online network.
        torch.testing.assert_close(value, 0.5 * before[key] + 0.5 * online[key])
        moved.append(not torch.equal(value, before[key]))
    assert any(moved)
