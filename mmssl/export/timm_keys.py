"""Encoder weights under timm's key names, with the ``config.json`` timm reads.

- Image ViTs (``vit_tiny`` / ``vit_small`` / ``vit_base``): ``timm.create_model('vit_<size>_patch16_224',
  **model_args)`` with the encoder's ``img_size``, ``patch_size``, ``depth``, ... as ``model_args``. The
  keys are the same except the MLP (``mlp.0`` / ``mlp.2`` are timm's ``mlp.fc1`` / ``mlp.fc2``). The
  encoder's pooling maps to ``global_pool='token'`` (CLS) or ``'avg'`` with ``fc_norm=False`` (the final
  norm before the mean of the patch tokens, as the encoder does).
- ResNets: timm's ResNets share torchvision's names (:func:`mmssl.export.torchvision_keys.resnet_keys`);
  ``in_chans`` covers other input channels.
- The ``timm`` encoder (``encoder: {name: timm, model: ...}``) already holds a timm model: its state dict
  with the wrapper's ``model.`` prefix stripped, for ``timm.create_model(model, pretrained=False,
  num_classes=0, **create_args)`` with the arguments the encoder was built with; every key matches
  (``strict=True``). A model whose head adds a hidden layer of another width (MobileNetV3) is a mismatch:
  the encoder's ``global`` is the mean of its tokens there (see :mod:`mmssl.modalities.image.timm_encoder`).

The folder (``model.safetensors`` + ``config.json``) loads offline with
``timm.create_model('local-dir:FOLDER', pretrained=True)`` (``num_classes=0``: the pooled features).
"""

from __future__ import annotations

import torch
from torch import nn

from mmssl.export.common import KeyExport
from mmssl.export.samples import fixed_input_size
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


#: the keys of timm's ``pretrained_cfg`` that describe the input (copied into ``config.json``)
INPUT_CFG_KEYS = ("interpolation", "crop_pct", "crop_mode", "mean", "std", "first_conv")


def wrapped_timm(encoder: nn.Module) -> KeyExport:
    """The ``timm`` encoder's inner model: its own keys and the ``create_model`` call that built it."""
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in encoder.state_dict().items()}
    arch = str(encoder.model_name)
    model_args = dict(encoder.create_args)
    args = "".join(f", {k}={v!r}" for k, v in model_args.items())
    cfg = dict(getattr(encoder.model, "pretrained_cfg", None) or {})
    in_chans = int(model_args.get("in_chans", 3))
    size = fixed_input_size(encoder) or tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    pretrained_cfg = {k: cfg[k] for k in INPUT_CFG_KEYS if k in cfg}
    pretrained_cfg.update(
        num_classes=0,
        input_size=[in_chans, *size],
        fixed_input_size=bool(cfg.get("fixed_input_size", False)),
    )
    mismatches: list[str] = []
    patch: list[str] = []
    if not encoder.own_pooling:
        head = getattr(encoder.model, "head_hidden_size", "?")
        mismatches.append(
            f"the encoder's global feature is the mean of its {encoder.out_dim}-wide tokens where timm's "
            f"{arch} (num_classes=0) returns its head's {head}-wide hidden layer: the patch replaces "
            "model.forward by that mean"
        )
        cells = "(1, 2)" if encoder.channels_last_output else "(2, 3)"  # [B, h, w, C] or [B, C, h, w]
        patch += [
            "def mean_of_tokens(x, m=model):  # the encoder's global feature",
            "    features = m.forward_features(x)",
            "    if features.ndim == 3:  # tokens: drop the prefix (class) tokens",
            f"        return features[:, {encoder.num_prefix_tokens}:].mean(dim=1)",
            f"    return features.mean(dim={cells})  # the feature map's cells",
            "model.forward = mean_of_tokens",
        ]
    return KeyExport(
        library="timm",
        state_dict=state,
        builder=f"timm.create_model({arch!r}, pretrained=False, num_classes=0{args})",
        config={
            "architecture": arch,
            "num_classes": 0,
            "num_features": int(encoder.out_dim),
            "model_args": model_args,
            "pretrained_cfg": pretrained_cfg,
        },
        drop_head="",  # built without a classifier
        head_keys=[],
        mismatches=mismatches,
        patch=patch,
    )


def to_timm(encoder: nn.Module, name: str) -> KeyExport:
    kind = encoder_kind(encoder)
    if kind == "resnet":
        return resnet_keys(encoder, name, "timm")
    if kind == "vit":
        return vit_timm(encoder)
    if kind == "timm":
        return wrapped_timm(encoder)
    raise unsupported(name, "timm", SUPPORTED + " and any timm model (encoder 'timm')")
