"""The cross-modal method: loss, towers from the registry, recipe errors, clamped temperature, saving."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mmssl.config import ConfigError, from_dict, load_recipe
from mmssl.core.losses import symmetric_info_nce
from mmssl.crossmodal import CrossModalContrastive
from mmssl.data import DataBundle
from mmssl.encoders import load_encoder, save_encoder
from mmssl.registry import ENCODERS
from tests.crossmodal._helpers import ListDataset, TinyTower, paired_items

AUDIO_TOWER = {"name": "small_cnn", "widths": [4, 8], "in_channels": 1}


def _bundle(n: int = 8) -> DataBundle:
    return DataBundle(pretrain=ListDataset(paired_items(n)))


def _batch(n: int = 8) -> dict:
    items = paired_items(n)
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "audio")}


def _method(**kw) -> CrossModalContrastive:
    torch.manual_seed(0)
    encoder = ENCODERS.build("small_cnn", widths=[4, 8])
    return CrossModalContrastive(encoder, towers={"audio": dict(AUDIO_TOWER)}, data=_bundle(), **kw)


def test_forward_is_symmetric_info_nce_of_the_projected_towers():
    method = _method(projector_dim=16, projector_hidden=32)
    assert method.tower_keys == ("image", "audio") and method.tower("audio") is method.partner
    batch = _batch()
    out = method(batch)
    z_img = method.heads["image"](method.encoder(batch["image"])["global"])
    z_aud = method.heads["audio"](method.partner(batch["audio"])["global"])
    expected = symmetric_info_nce(z_img, z_aud, temperature=0.07)
    torch.testing.assert_close(out["loss"], expected)
    assert out["temperature"].item() == pytest.approx(0.07)
    out["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None, name  # both towers, both heads and the temperature learn


def test_temperature_stays_clamped_during_training():
    method = CrossModalContrastive(
        TinyTower(3 * 64, 8),
        towers={"audio": TinyTower(64, 8)},
        projector_bn=False,
        min_temperature=0.05,
        max_temperature=0.5,
    )
    opt = torch.optim.SGD(method.parameters(), lr=50.0)  # a huge step on log(1/t)
    batch = _batch()
    seen = []
    for step in range(5):
        method(batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
        method.on_train_step_end(step + 1, 5)
        seen.append(method.temperature.log_scale.item())
        assert 0.05 - 1e-6 <= method.temperature().item() <= 0.5 + 1e-6
    assert all(math.log(2.0) - 1e-6 <= v <= math.log(20.0) + 1e-6 for v in seen)
    assert any(abs(v - math.log(1 / 0.07)) > 0.1 for v in seen)  # it did move


def test_partner_tower_saves_and_loads_alone(tmp_path):
    method = _method()
    with torch.no_grad():  # make the weights differ from any fresh build
        for p in method.partner.parameters():
            p.add_(0.1)
    method.eval()
    ((key, (module, spec)),) = method.extra_encoders().items()
    assert key == "audio" and module is method.partner
    save_encoder(module, spec, tmp_path / "audio.pt")
    loaded = load_encoder(tmp_path / "audio.pt").eval()
    x = _batch()["audio"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["global"], method.partner(x)["global"], rtol=0, atol=0)
    # A hand-built partner has no registry spec, so nothing is saved for it.
    assert CrossModalContrastive(TinyTower(4, 4), towers={"audio": TinyTower(4, 4)}).extra_encoders() == {}


def _recipe(towers, **method_kw) -> dict:
    return {
        "name": "t",
        "modality": "audiovisual",
        "method": {"name": "crossmodal_contrastive", "towers": towers, **method_kw},
        "encoder": {"name": "small_cnn"},
        "data": {"name": "procedural_audio_visual"},
    }


@pytest.mark.parametrize(
    ("towers", "method_kw", "expected"),
    [
        ({"audio": {"name": "small_cnn", "widht": [4]}}, {}, r"'method\.towers\.audio\.widht'.*'widths'"),
        ({"audio": {"name": "smal_cnn"}}, {}, r"'method\.towers\.audio\.name'.*did you mean 'small_cnn'"),
        ({"audio": {"widths": [4]}}, {}, r"'method\.towers\.audio' needs a 'name'"),
        ({"image": {"name": "small_cnn"}}, {}, r"exactly one partner tower"),
        ({"audio": "small_cnn", "text": "small_cnn"}, {}, r"exactly one partner tower"),
        (None, {}, r"'method\.towers' is required"),
    ],
)
def test_recipe_errors_name_the_tower_key(towers, method_kw, expected):
    raw = _recipe(towers, **method_kw)
    if towers is None:
        del raw["method"]["towers"]
    with pytest.raises(ConfigError, match=expected):
        from_dict(raw)


def test_valid_recipe_loads_and_item_keys_are_checked_against_the_data():
    cfg = from_dict(_recipe({"audio": dict(AUDIO_TOWER)}))
    assert cfg.method["towers"]["audio"]["name"] == "small_cnn"
    encoder = ENCODERS.build("small_cnn", widths=[4])
    with pytest.raises(
        ConfigError, match=r"'method\.towers\.audoi'.*no key 'audoi' \(did you mean 'audio'\?\)"
    ):
        CrossModalContrastive(encoder, towers={"audoi": dict(AUDIO_TOWER)}, data=_bundle())
    with pytest.raises(ConfigError, match=r"'method\.encoder_key'.*no key 'imgae'"):
        CrossModalContrastive(
            encoder, towers={"audio": dict(AUDIO_TOWER)}, encoder_key="imgae", data=_bundle()
        )


def test_shipped_recipe_loads_and_a_mistyped_tower_key_is_named():
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "crossmodal" / "audio_visual.yaml"
    cfg = load_recipe(recipe)
    assert cfg.method["towers"]["audio"]["name"] == "audio_cnn" and cfg.method["encoder_key"] == "image"
    with pytest.raises(ConfigError, match=r"'method\.towers\.audio\.n_mel'.*did you mean 'n_mels'"):
        load_recipe(recipe, ["method.towers.audio.n_mel=32"])
    with pytest.raises(ConfigError, match=r"'eval\.modality_few_shot\.datasets\.fsdd\.roott'.*'root'"):
        load_recipe(
            recipe,
            [
                "eval.modality_few_shot.datasets.fsdd.name=fsdd",
                "eval.modality_few_shot.datasets.fsdd.roott=/x",
            ],
        )
