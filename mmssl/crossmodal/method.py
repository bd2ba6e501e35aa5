"""Cross-modal contrastive learning: two encoders, one shared space, symmetric InfoNCE.

Two towers read two keys of a paired item (a video frame and the sound around it, a picture and its
caption ...). Each tower's ``global`` feature is projected into a shared space and the pair is
pulled together against every other pairing of the (global) batch, in both directions (CLIP,
Radford et al. 2021; for audio-visual correspondence Arandjelović & Zisserman 2017 use a binary
"do these match?" head instead and Owens & Efros 2018 a synchronisation pretext; the contrastive
form learns the same correspondence with all in-batch mismatches as negatives)::

    z_a = g_a(f_a(x_a)),  z_b = g_b(f_b(x_b)),  L = symmetric_info_nce(z_a, z_b, t)   (t learned)

Recipe: the recipe's ``encoder:`` section is the tower for ``method.encoder_key`` (default
``image``) -- it is ``method.encoder``, what the standard evaluators measure and what the pipeline
saves as ``encoder.pt``; ``method.towers`` names the partner tower by its item key and builds it
from the encoder registry::

    encoder: {name: small_cnn}
    method:
      name: crossmodal_contrastive
      encoder_key: image
      towers: {audio: {name: audio_cnn}}

The partner is saved alone as ``encoders/<key>.pt`` (same format as ``encoder.pt``; the pipeline
writes what :meth:`CrossModalContrastive.extra_encoders` returns), so both load with
:func:`mmssl.encoders.load_encoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.losses import LearnableTemperature, symmetric_info_nce
from mmssl.core.method import Method
from mmssl.crossmodal.specs import build_tower, check_item_keys, check_towers_with_extras
from mmssl.data import DataBundle
from mmssl.errors import ConfigError
from mmssl.option_markers import Components
from mmssl.options import component_sections
from mmssl.registry import ENCODERS


class CrossModalContrastive(Method):
    """Cross-modal contrastive pretraining of the recipe's encoder with a partner tower (CLIP-style): two
    towers with projection heads into a shared space, trained with symmetric InfoNCE.

    ``encoder``: the recipe's encoder, reading item key ``encoder_key``; exposed as ``self.encoder``
    (evaluated and saved). ``towers``: the partner, ``{item_key: {name: <encoder>, ...kwargs}}``, built
    from the encoder registry and saved alone (:meth:`extra_encoders`); a module in place of the section
    is used as it is (built by hand: nothing to save it by). ``projector_dim`` / ``projector_hidden`` /
    ``projector_layers`` / ``projector_bn``: the two projection heads (``projector_layers=1`` is CLIP's
    single linear projection). ``temperature``: initial value (0.07 as CLIP), learned in log space unless
    ``learn_temperature`` is false, clamped to ``[min_temperature, max_temperature]`` (0.01: CLIP's logit
    scale <= 100). ``gather``: negatives from every process (exact gradients through the gather).
    ``data`` (given by the runner): the tower keys are checked against a pretraining item, and each tower
    against the bundle's extras that constrain it (:func:`~mmssl.crossmodal.specs.check_towers_with_extras`).
    """

    @classmethod
    def consumed_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        # Each tower reads the item key it is named by: the encoder's, then the partner's.
        encoder_key = str(options.get("encoder_key", "image"))
        return frozenset({encoder_key, partner_key_of(options.get("towers") or {}, encoder_key)})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        towers: Annotated[dict[str, Any], Components("encoder")],
        encoder_key: str = "image",
        projector_dim: int = 128,
        projector_hidden: int = 512,
        projector_layers: int = 2,
        projector_bn: bool = True,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        gather: bool = True,
    ) -> None:
        super().__init__()
        partner_key = partner_key_of(towers, encoder_key)
        where = f"method.towers.{partner_key}"
        (partner,) = towers.values()
        spec = None
        if not isinstance(partner, nn.Module):
            spec = component_sections({partner_key: partner}, ENCODERS, "method.towers")[partner_key]
        if data is not None:
            check_item_keys({encoder_key: "method.encoder_key", partner_key: where}, data.pretrain)
        self.encoder = encoder
        self.partner = partner if spec is None else build_tower(spec, where)
        self.encoder_key, self.partner_key = encoder_key, partner_key
        if data is not None:  # e.g. a text tower whose vocabulary is smaller than the caption tokenizer's
            towers_by_key = {encoder_key: (encoder, "encoder"), partner_key: (self.partner, where)}
            check_towers_with_extras(towers_by_key, data.extras)
        self.partner_spec = spec
        # A text tower carries its LM head (it belongs to the exported language model) but the contrastive
        # objective uses only its features: the head gets no gradient, which DistributedDataParallel
        # would wait for at every step. Frozen, it is left out of DDP's reduction and of the optimiser.
        from mmssl.modalities.text.encoders import HFTextEncoder  # here: module loads stay modality-free

        for tower in (self.encoder, self.partner):
            if isinstance(tower, HFTextEncoder):
                for param in tower.lm_head_only_parameters():
                    param.requires_grad_(False)
        self.heads = nn.ModuleDict(
            {
                key: ProjectionHead(
                    tower.out_dim,
                    projector_hidden,
                    projector_dim,
                    num_layers=projector_layers,
                    batch_norm=projector_bn,
                )
                for key, tower in ((encoder_key, self.encoder), (partner_key, self.partner))
            }
        )
        self.temperature = LearnableTemperature(
            temperature, min_temperature, max_temperature, learnable=learn_temperature
        )
        self.gather = gather

    @property
    def tower_keys(self) -> tuple[str, str]:
        """``(encoder_key, partner_key)``: the item keys the two towers read."""
        return self.encoder_key, self.partner_key

    def tower(self, key: str) -> nn.Module:
        """The encoder that reads item key ``key``."""
        if key == self.encoder_key:
            return self.encoder
        if key == self.partner_key:
            return self.partner
        raise KeyError(f"no tower reads '{key}'; towers: {', '.join(self.tower_keys)}")

    def embed(self, key: str, x: Tensor) -> Tensor:
        """Shared-space embedding [B, projector_dim] (not normalised) of a batch of ``key`` inputs."""
        return self.heads[key](self.tower(key)(x)["global"])

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        z_a = self.embed(self.encoder_key, batch[self.encoder_key])
        z_b = self.embed(self.partner_key, batch[self.partner_key])
        t = self.temperature()
        loss = symmetric_info_nce(z_a, z_b, temperature=t, gather=self.gather)
        return {"loss": loss, "temperature": t.detach()}

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        # CLIP clips the learned logit scale after every optimiser step.
        self.temperature.clamp_()

    def extra_encoders(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """Encoders besides ``self.encoder`` to save alone: ``{item_key: (module, spec)}``."""
        if self.partner_spec is None:
            return {}
        return {self.partner_key: (self.partner, self.partner_spec)}


def partner_key_of(towers: Mapping[str, Any], encoder_key: str, where: str = "method") -> str:
    """The one partner tower's item key; a ConfigError unless ``towers`` names exactly one, other than
    ``encoder_key`` (the recipe's encoder is the other tower)."""
    keys = [str(k) for k in towers]
    if len(keys) != 1 or encoder_key in keys:
        raise ConfigError(
            f"'{where}.towers' must name exactly one partner tower with a key other than "
            f"'{where}.encoder_key' ('{encoder_key}', the recipe's encoder); got {', '.join(keys)}"
        )
    return keys[0]
