"""Encoder weights under timm's key names, with the ``config.json`` timm reads.

- Image ViTs (``vit_tiny`` / ``vit_small`` / ``vit_base``): ``timm.create_model('vit_<size>_patch16_224',
  **model_args)`` with the encoder's ``img_size``, ``patch_size``, ``depth``, ... as ``model_args``. The
  keys are the same except the MLP (``mlp.0`` / ``mlp.2`` are timm's ``mlp.fc1`` / ``mlp.fc2``). The
  encoder's pooling maps to ``global_pool='token'`` (CLS) or ``'avg'`` with ``fc_norm=False`` (the final
  norm before the mean of the patch tokens, as the encoder does).
- ResNets: timm's ResNets share torchvision's names (:func:`mmssl.export.torchvision_keys.resnet_keys`);
  ``in_chans`` covers other input channels.

The folder (``model.safetensors`` + ``config.json``) loads offline with
``timm.create_model('local-dir:FOLDER', pretrained=True)`` (``num_classes=0``: the pooled features).
"""

from __future__ import annotations

import torch
from torch import nn

from mmssl.export.common import KeyExport
from mmssl.export.torchvision_keys import SUPPORTED, encoder_kind, resnet_keys, unsupported, vit_sizes

#: embed_dim -> the timm ViT whose defaults are closest (model_args override every size)
TIMM_VITS = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224"}


def vit_timm(encoder: nn.Module) -> KeyExport:
    """Image ViT weights under timm ``VisionTransformer`` keys, and its ``config.json``."""
    s = vit_sizes(encoder)
    state: dict[str, torch.Tensor] = {}
    for key, value in encoder.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks" and parts[2] == "mlp":
            parts[3] = {"0": "fc1", "2": "fc2"}[parts[3]]
        state[".".join(parts)] = value
    arch = TIMM_VITS.get(int(s["embed_dim"]), "vit_base_patch16_224")
    model_args = {
        "img_size": s["img_size"],
        "patch_size": s["patch_size"],
        "in_chans": s["in_channels"],
        "embed_dim": s["embed_dim"],
        "depth": s["depth"],
        "num_heads": s["num_heads"],
        "mlp_ratio": int(s["mlp_dim"]) / int(s["embed_dim"]),
        "qkv_bias": s["qkv_bias"],
        "class_token": True,
        "global_pool": "token" if s["global_pool"] == "cls" else "avg",
        "fc_norm": False,
    }
    args = ", ".join(f"{k}={v!r}" for k, v in model_args.items())
    size = int(s["img_size"])
    config = {
        "architecture": arch,
        "num_classes": 0,
        "num_features": s["embed_dim"],
        "global_pool": model_args["global_pool"],
        "model_args": model_args,
        "pretrained_cfg": {
            "num_classes": 0,
            "input_size": [s["in_channels"], size, size],
            "fixed_input_size": True,
        },
    }
    return KeyExport(
        library="timm",
        state_dict=state,
        builder=f"timm.create_model({arch!r}, pretrained=False, {args})",
        config=config,
        drop_head="model.reset_classifier(0)",
        head_keys=["head.weight", "head.bias"],
    )


def to_timm(encoder: nn.Module, name: str) -> KeyExport:
    kind = encoder_kind(encoder)
    if kind == "resnet":
        return resnet_keys(encoder, name, "timm")
    if kind == "vit":
        return vit_timm(encoder)
    raise unsupported(name, "timm", SUPPORTED)
