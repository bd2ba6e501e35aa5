"""The shared two-view methods (mmssl/core) on audio views: the same method gives the same loss on audio
tensors as on images when the encoder gives identical embeddings (checked against the formulas), and they
train on real audio crops through ``audio_cnn``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from mmssl.core.methods.byol import BYOL
from mmssl.core.methods.moco import MoCo
from mmssl.core.methods.simclr import SimCLR
from mmssl.data.keys import VIEWS
from mmssl.modalities.audio.encoders import AudioCNN
from mmssl.modalities.audio.procedural_clips import procedural_audio
from mmssl.modalities.audio.vit import AudioViT

B, D = 6, 12


class TableEncoder(nn.Module):
    """Row ``k`` of a fixed table (times a learnable scale) for an input whose first element is ``k``:
    the embedding depends on which sample comes in, not on its modality or shape."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.scale = nn.Parameter(torch.ones(()))
        self.out_dim = table.shape[1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = x.reshape(x.shape[0], -1)[:, 0].round().long()
        return {"global": self.table[idx] * self.scale}


def _tagged(x: torch.Tensor, first: int) -> torch.Tensor:
    """``x`` with its first element per sample set to ``first + i``: which table row it gets."""
    x = x.clone()
    x.view(x.shape[0], -1)[:, 0] = torch.arange(first, first + x.shape[0], dtype=x.dtype)
    return x


@pytest.fixture(scope="module")
def batches() -> dict[str, list[torch.Tensor]]:
    bundle = procedural_audio(
        num_classes=3, train_per_class=2, test_per_class=1, duration_s=0.5, views="crops"
    )
    items = default_collate([bundle.pretrain[i] for i in range(B)])
    audio = [_tagged(items[VIEWS][0], 0), _tagged(items[VIEWS][1], B)]
    assert audio[0].shape == (B, 16000)  # real audio crops, 1 s at 16 kHz
    images = [_tagged(torch.rand(B, 3, 8, 8), 0), _tagged(torch.rand(B, 3, 8, 8), B)]
    return {"audio": audio, "image": images}


def _run(make, views: list[torch.Tensor]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    table = torch.randn(2 * B, D, generator=torch.Generator().manual_seed(1))
    method = make(TableEncoder(table))
    loss = method({VIEWS: views})["loss"]
    loss.backward()
    return method, loss


def _nt_xent_by_loops(z: torch.Tensor, temperature: float) -> float:
    """SimCLR eq. 1 over 2N projections ``z`` (views of sample i at rows i and i + N)."""
    z = F.normalize(z.double(), dim=1)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / temperature) / denom)
    return total / n2


METHODS = {
    "simclr": lambda enc: SimCLR(enc, temperature=0.3, projector_hidden=16, projector_dim=8, gather=False),
    "byol": lambda enc: BYOL(enc, projector_hidden=16, projector_dim=8, predictor_hidden=16),
    "moco": lambda enc: MoCo(enc, queue_size=16, projector_hidden=16, projector_dim=8),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_loss_and_gradients_on_audio_and_images_for_identical_embeddings(name, batches) -> None:
    audio_method, audio_loss = _run(METHODS[name], batches["audio"])
    image_method, image_loss = _run(METHODS[name], batches["image"])
    assert torch.isfinite(audio_loss) and torch.equal(audio_loss, image_loss)
    for (pname, pa), (_, pi) in zip(audio_method.named_parameters(), image_method.named_parameters()):
        if pa.grad is not None or pi.grad is not None:
            assert torch.equal(pa.grad, pi.grad), pname


def test_simclr_loss_matches_the_formula(batches) -> None:
    method, loss = _run(METHODS["simclr"], batches["audio"])
    with torch.no_grad():  # one call per view, as the method (the projector's BatchNorm sees each view alone)
        table = method.encoder.table
        z = torch.cat([method.projector(table[:B]), method.projector(table[B:])])
    assert math.isclose(loss.item(), _nt_xent_by_loops(z, 0.3), rel_tol=1e-5)


def test_byol_loss_matches_the_formula(batches) -> None:
    torch.manual_seed(0)
    table = torch.randn(2 * B, D, generator=torch.Generator().manual_seed(1))
    method = METHODS["byol"](TableEncoder(table))
    with torch.no_grad():  # before the step: the target network is still a copy of the online one
        p = torch.cat(
            [method.predictor(method.projector(table[:B])), method.predictor(method.projector(table[B:]))]
        )
        t = torch.cat([method.projector(table[:B]), method.projector(table[B:])])
        cos = F.cosine_similarity
        # BYOL eq. 2, symmetrised: 2 - 2 cos(q(z1), z'2) and 2 - 2 cos(q(z2), z'1), averaged
        expected = 0.5 * ((2 - 2 * cos(p[:B], t[B:])).mean() + (2 - 2 * cos(p[B:], t[:B])).mean())
        loss = method({VIEWS: batches["audio"]})["loss"]
    assert torch.allclose(loss, expected, atol=1e-6)


@pytest.mark.parametrize("method_name", ["simclr", "byol"])
def test_a_few_steps_on_real_audio_crops(method_name, batches) -> None:
    torch.manual_seed(0)
    waves = [v.clone() for v in batches["audio"]]
    encoder = AudioCNN(
        n_mels=32, widths=(8, 16), stem_stride=2, spec_augment={"time_masks": 1, "time_width": 10}
    )
    method = METHODS[method_name](encoder)
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in encoder.parameters()]
    for step in range(3):
        loss = method({VIEWS: waves})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_train_step_end(step + 1, 3)
        assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))


def test_audio_vit_serves_two_view_methods_too(batches) -> None:
    torch.manual_seed(0)
    vit = AudioViT(n_mels=16, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    out = METHODS["simclr"](vit)({VIEWS: batches["audio"]})
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and vit.patch_embed.weight.grad is not None
