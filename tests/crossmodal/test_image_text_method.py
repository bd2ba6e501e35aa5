"""CLIP-style training of an image tower and a BERT-style text tower: the loss against a hand computation,
CLIP's temperature, the text tower checked against the caption tokenizer, and a few training steps."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.config import ConfigError
from mmssl.crossmodal import CrossModalContrastive
from mmssl.crossmodal.image_text.datasets import procedural_image_text
from mmssl.registry import ENCODERS

TEXT_TOWER = {
    "name": "bert_small",
    "vocab_size": 160,
    "hidden_size": 16,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 32,
    "max_length": 16,
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return procedural_image_text(
        train_size=24, test_size=8, image_size=16, seed=0, cache_dir=str(tmp_path_factory.mktemp("cache"))
    )


def _method(bundle, **kw) -> CrossModalContrastive:
    torch.manual_seed(0)
    image_tower = ENCODERS.build("small_cnn", widths=[4, 8])
    towers = {"text": dict(TEXT_TOWER, **kw.pop("text", {}))}
    return CrossModalContrastive(
        image_tower, bundle, towers=towers, projector_layers=1, projector_bn=False, **kw
    )


def _batch(bundle, n: int = 6) -> dict:
    items = [bundle.pretrain[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "text")}


def hand_clip_loss(z_img: torch.Tensor, z_txt: torch.Tensor, t: float) -> float:
    """CLIP's Fig. 3 loss written out in float64 Python: normalise, logits / t, cross-entropy both ways."""
    a = [row / row.norm() for row in z_img.double()]
    b = [row / row.norm() for row in z_txt.double()]
    n = len(a)
    logits = [[float(a[i] @ b[j]) / t for j in range(n)] for i in range(n)]
    img_to_txt = sum(math.log(sum(math.exp(x) for x in logits[i])) - logits[i][i] for i in range(n)) / n
    txt_to_img = (
        sum(math.log(sum(math.exp(logits[i][j]) for i in range(n))) - logits[j][j] for j in range(n)) / n
    )
    return (img_to_txt + txt_to_img) / 2


def test_loss_equals_a_hand_computed_clip_loss_on_a_small_batch(bundle):
    method = _method(bundle).eval()  # no dropout: embed() and forward() see the same towers
    batch = _batch(bundle)
    out = method(batch)
    with torch.no_grad():
        z_img = method.embed("image", batch["image"])
        z_txt = method.embed("text", batch["text"])
    assert out["temperature"].item() == pytest.approx(0.07)
    assert out["loss"].item() == pytest.approx(hand_clip_loss(z_img, z_txt, 0.07), rel=1e-5)
    # The text embedding is the mean over real tokens only: padding does not change it.
    ids = batch["text"]
    real = int((ids != 0).sum(dim=1).max())
    assert real < ids.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(
            method.tower("text")(ids[:, :real])["global"], method.tower("text")(ids)["global"]
        )


def test_logit_scale_is_clamped_at_100_and_the_temperature_learns(bundle):
    method = _method(bundle).train()
    out = method(_batch(bundle))
    out["loss"].backward()
    assert method.temperature.log_scale.grad is not None and method.temperature.log_scale.grad.item() != 0
    with torch.no_grad():
        method.temperature.log_scale.fill_(math.log(1000.0))  # a logit scale of 1000
    assert 1 / method.temperature().item() == pytest.approx(100.0)
    method.on_train_step_end(1, 1)
    assert method.temperature.log_scale.item() == pytest.approx(math.log(100.0))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ({"vocab_size": 20}, "method.towers.text.vocab_size"),
        ({"pad_token_id": 3}, "method.towers.text.pad_token_id"),
        ({"max_length": 8}, "method.towers.text.max_length"),
    ],
)
def test_a_text_tower_that_cannot_read_the_captions_is_named(bundle, text, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        _method(bundle, text=text)


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch(bundle):
    method = _method(bundle, text={"dropout": 0.0}).train()
    batch = _batch(bundle, 8)
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        loss = method(batch)["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_train_step_end(step + 1, 6)
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_every_trainable_parameter_gets_a_gradient_so_ddp_can_reduce(bundle):
    # DistributedDataParallel waits for a gradient of every parameter that requires one: the text tower's
    # LM head (not used by the contrastive loss) must be frozen, while its tied input embedding still learns.
    method = _method(bundle).train()
    method(_batch(bundle))["loss"].backward()
    missing = [name for name, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    frozen = [name for name, p in method.named_parameters() if not p.requires_grad]
    assert frozen and all(".cls." in f".{name}" or name.startswith("partner.model.cls") for name in frozen)
    embeddings = method.partner.model.base_model.embeddings.word_embeddings.weight
    assert embeddings.requires_grad and embeddings.grad is not None
