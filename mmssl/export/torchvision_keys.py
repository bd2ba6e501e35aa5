"""Encoder weights under torchvision's key names (ResNets and the image ViT).

- ``resnet18`` / ``resnet50`` (and any :class:`ResNetEncoder` depth): ``torchvision.models.resnetNN``;
  the trunk's ``stem.0`` / ``stem.1`` are torchvision's ``conv1`` / ``bn1``, the layers keep their
  names; only ``fc`` is absent. timm's ResNets use the same names (:mod:`mmssl.export.timm_keys`).
- ``video_resnet18``: the same keys (``layers.i`` is ``layer{i+1}``), but layer3 / layer4 keep stride 1
  (output stride 8): a mismatch, with the lines that patch torchvision's model.
- ``vit_tiny`` / ``vit_small`` / ``vit_base``: ``torchvision.models.VisionTransformer`` built with the
  encoder's sizes; ``blocks.i.attn.qkv`` is ``self_attention.in_proj_*`` (same q, k, v row order).

A CIFAR-stem ResNet (``small_stem``) or other input channels cannot load into the plain torchvision
model: those are mismatches, listed precisely (key, shapes) together with the patch that makes the
torchvision model match; :func:`mmssl.export.export_run` refuses them unless told to allow mismatches.
"""

from __future__ import annotations

import torch
from torch import nn

from mmssl.export.common import ExportError, KeyExport

#: (block class name, blocks per layer) -> torchvision / timm architecture name
RESNET_ARCHS = {
    ("BasicBlock", (2, 2, 2, 2)): "resnet18",
    ("BasicBlock", (3, 4, 6, 3)): "resnet34",
    ("Bottleneck", (3, 4, 6, 3)): "resnet50",
    ("Bottleneck", (3, 4, 23, 3)): "resnet101",
    ("Bottleneck", (3, 8, 36, 3)): "resnet152",
}

#: why an encoder has no timm / torchvision counterpart (the generic reason covers the rest)
NO_COUNTERPART = {
    "wide_resnet": (
        "it is the FixMatch WRN-28-2 (pre-activation basic blocks, LeakyReLU, 16/32/64k channels); "
        "torchvision's and timm's wide_resnet50_2 / wide_resnet101_2 are bottleneck ResNet-50/101s with "
        "other layers and key names"
    ),
    "small_cnn": "it is mmssl's own small conv-BN-ReLU stack, with no library counterpart",
    "bert_small": (
        "it is a transformers model: export it with "
        "mmssl.modalities.text.export.export_pretrained (save_pretrained folder)"
    ),
    "gpt2_small": (
        "it is a transformers model: export it with "
        "mmssl.modalities.text.export.export_pretrained (save_pretrained folder)"
    ),
    "timm": "it is a timm model: export it with --format timm (timm.create_model loads it as it is)",
}


def unsupported(name: str, library: str, supported: str) -> ExportError:
    reason = NO_COUNTERPART.get(name, f"no {library} model has the architecture of '{name}'")
    return ExportError(
        f"encoder '{name}' cannot be exported to {library}: {reason}. The {library} format supports "
        f"{supported}; --format safetensors and --format onnx export every encoder"
    )


# --------------------------------------------------------------------------------------- ResNet


def _resnet_arch(layers: list[nn.Sequential]) -> str:
    block = type(layers[0][0]).__name__
    counts = tuple(len(layer) for layer in layers)
    arch = RESNET_ARCHS.get((block, counts))
    if arch is None:  # a video ResNet cut after layer3: match on the layers it has
        arch = next(
            (a for (b, c), a in RESNET_ARCHS.items() if b == block and c[: len(counts)] == counts), None
        )
    if arch is None:
        raise ExportError(f"no torchvision ResNet has {block}s in layers of {counts} blocks")
    return arch


def resnet_keys(encoder: nn.Module, name: str, library: str) -> KeyExport:
    """:class:`ResNetEncoder` or :class:`VideoResNet18` weights under torchvision / timm ResNet keys."""
    video = hasattr(encoder, "layers")
    layers = (
        list(encoder.layers) if video else [encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4]
    )
    arch = _resnet_arch(layers)
    state: dict[str, torch.Tensor] = {}
    for key, value in encoder.state_dict().items():
        head, _, rest = key.partition(".")
        if head == "stem":
            index, _, rest = rest.partition(".")
            new = {"0": "conv1", "1": "bn1"}[index] + "." + rest
        elif head == "layers":
            index, _, rest = rest.partition(".")
            new = f"layer{int(index) + 1}.{rest}"
        else:
            new = key
        state[new] = value
    conv1: nn.Conv2d = encoder.stem[0]
    in_ch, width = conv1.in_channels, conv1.out_channels
    mismatches: list[str] = []
    patch: list[str] = []
    small_stem = conv1.kernel_size == (3, 3)
    if small_stem:
        mismatches.append(
            f"conv1.weight has shape {tuple(conv1.weight.shape)} (the CIFAR stem: 3x3 convolution, stride 1) "
            f"where {library}'s {arch} has ({width}, {in_ch}, 7, 7) (7x7, stride 2), and the CIFAR stem has "
            f"no 3x3/2 max-pool after it ({library}'s maxpool must become an identity)"
        )
        patch += [
            f"model.conv1 = torch.nn.Conv2d({in_ch}, {width}, 3, stride=1, padding=1, bias=False)",
            "model.maxpool = torch.nn.Identity()",
        ]
    elif in_ch != 3 and library == "torchvision":
        mismatches.append(
            f"conv1.weight has shape {tuple(conv1.weight.shape)} ({in_ch} input channel{'s' * (in_ch > 1)}) "
            f"where torchvision's {arch} takes 3 channels ({width}, 3, 7, 7)"
        )
        patch.append(f"model.conv1 = torch.nn.Conv2d({in_ch}, {width}, 7, stride=2, padding=3, bias=False)")
    if video:
        strided = [f"layer{i}" for i in (3, 4) if i <= len(layers)]
        mismatches.append(
            f"{' and '.join(strided)} {'keep' if len(strided) > 1 else 'keeps'} stride 1 in the first block "
            f"(output stride 8, as CRW) where {library}'s {arch} uses stride 2 there"
        )
        patch += [
            f"for layer in ({''.join('model.' + s + ', ' for s in strided).rstrip()}):",
            "    layer[0].conv1.stride = (1, 1)",
            "    layer[0].downsample[0].stride = (1, 1)",
        ]
        if len(layers) == 3:
            mismatches.append(
                f"the encoder stops after layer3 (out_layer='layer3'): {library}'s layer4.* weights are "
                "not part of it"
            )
            patch.append("model.layer4 = torch.nn.Identity()")
    if library == "timm":
        extra = f", in_chans={in_ch}" if in_ch != 3 and not small_stem else ""
        builder = f"timm.create_model({arch!r}, pretrained=False{extra})"
        drop_head = "model.reset_classifier(0)"
        config = {
            "architecture": arch,
            "num_classes": 0,
            "num_features": int(encoder.out_dim),
            "global_pool": "avg",
            "model_args": {"in_chans": in_ch} if in_ch != 3 and not small_stem else {},
            "pretrained_cfg": {"num_classes": 0, "input_size": [in_ch, 224, 224]},
        }
    else:
        builder = f"torchvision.models.{arch}(weights=None)"
        drop_head = "model.fc = torch.nn.Identity()"
        config = {"builder": f"torchvision.models.{arch}", "kwargs": {"weights": None}}
    return KeyExport(
        library=library,
        state_dict=state,
        builder=builder,
        config=config,
        drop_head=drop_head,
        head_keys=["fc.weight", "fc.bias"],
        mismatches=mismatches,
        patch=patch,
    )


# ------------------------------------------------------------------------------------------ ViT


def vit_sizes(encoder: nn.Module) -> dict[str, int | float | bool | str]:
    """The build options of an image :class:`VisionTransformer`, read off the module itself."""
    block = encoder.blocks[0]
    return {
        "img_size": int(encoder.patch_embed.img_size),
        "patch_size": int(encoder.patch_embed.patch_size),
        "in_channels": int(encoder.patch_embed.proj.in_channels),
        "embed_dim": int(encoder.embed_dim),
        "depth": len(encoder.blocks),
        "num_heads": int(block.attn.num_heads),
        "mlp_dim": int(block.mlp[0].out_features),
        "qkv_bias": block.attn.qkv.bias is not None,
        "global_pool": str(encoder.global_pool),
    }


def vit_torchvision(encoder: nn.Module) -> KeyExport:
    """Image ViT weights under ``torchvision.models.VisionTransformer`` keys."""
    s = vit_sizes(encoder)
    state: dict[str, torch.Tensor] = {}
    renames = {
        "cls_token": "class_token",
        "pos_embed": "encoder.pos_embedding",
        "patch_embed.proj.weight": "conv_proj.weight",
        "patch_embed.proj.bias": "conv_proj.bias",
        "norm.weight": "encoder.ln.weight",
        "norm.bias": "encoder.ln.bias",
    }
    in_block = {
        "norm1": "ln_1",
        "attn.qkv.weight": "self_attention.in_proj_weight",
        "attn.qkv.bias": "self_attention.in_proj_bias",
        "attn.proj": "self_attention.out_proj",
        "norm2": "ln_2",
        "mlp.0": "mlp.0",
        "mlp.2": "mlp.3",
    }
    for key, value in encoder.state_dict().items():
        if key in renames:
            state[renames[key]] = value
            continue
        _, index, rest = key.split(".", 2)  # blocks.<i>.<rest>
        for old, new in in_block.items():
            if rest == old or rest.startswith(old + "."):
                state[f"encoder.layers.encoder_layer_{index}.{new}{rest[len(old) :]}"] = value
                break
        else:
            raise ExportError(f"ViT key '{key}' has no torchvision counterpart")
    if not s["qkv_bias"]:  # nn.MultiheadAttention always has an input bias: zeros are the same function
        for i in range(int(s["depth"])):
            state[f"encoder.layers.encoder_layer_{i}.self_attention.in_proj_bias"] = torch.zeros(
                3 * int(s["embed_dim"])
            )
    kwargs = {
        "image_size": s["img_size"],
        "patch_size": s["patch_size"],
        "num_layers": s["depth"],
        "num_heads": s["num_heads"],
        "hidden_dim": s["embed_dim"],
        "mlp_dim": s["mlp_dim"],
    }
    mismatches: list[str] = []
    patch: list[str] = []
    if s["in_channels"] != 3:
        mismatches.append(
            f"conv_proj.weight has {s['in_channels']} input channels where torchvision's VisionTransformer "
            "always takes 3"
        )
        d, p = s["embed_dim"], s["patch_size"]
        patch.append(f"model.conv_proj = torch.nn.Conv2d({s['in_channels']}, {d}, {p}, stride={p})")
    if s["global_pool"] != "cls":
        mismatches.append(
            "the encoder's global feature is the mean of the patch tokens (global_pool='mean') where "
            "torchvision's VisionTransformer returns the CLS token: the patch replaces model.forward by the "
            "mean of the patch outputs (--format timm has global_pool='avg' built in)"
        )
        patch += [
            "def mean_of_patch_tokens(x, m=model):  # the encoder's global_pool='mean'",
            "    tokens = m._process_input(x)",
            "    tokens = torch.cat([m.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)",
            "    return m.encoder(tokens)[:, 1:].mean(dim=1)",
            "model.forward = mean_of_patch_tokens",
        ]
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return KeyExport(
        library="torchvision",
        state_dict=state,
        builder=f"torchvision.models.VisionTransformer({args})",
        config={"builder": "torchvision.models.VisionTransformer", "kwargs": kwargs},
        drop_head="model.heads = torch.nn.Identity()",
        head_keys=["heads.head.weight", "heads.head.bias"],
        mismatches=mismatches,
        patch=patch,
    )


# ------------------------------------------------------------------------------------- dispatch


def encoder_kind(encoder: nn.Module) -> str | None:
    """``"resnet"``, ``"vit"``, ``"timm"`` (the ``timm`` encoder, a timm model already) or None (no key
    mapping), by the encoder's class."""
    from mmssl.modalities.image.encoders import ResNetEncoder, VisionTransformer
    from mmssl.modalities.image.timm_encoder import TimmEncoder  # imports timm only to build one

    if isinstance(encoder, ResNetEncoder):
        return "resnet"
    if isinstance(encoder, VisionTransformer):
        return "vit"
    if isinstance(encoder, TimmEncoder):
        return "timm"
    if type(encoder).__name__ == "VideoResNet18":
        from mmssl.modalities.video.encoders import VideoResNet18

        if isinstance(encoder, VideoResNet18):
            return "resnet"
    return None


SUPPORTED = (
    "the ResNets (resnet18, resnet50, video_resnet18) and the image ViTs (vit_tiny, vit_small, vit_base)"
)


def to_torchvision(encoder: nn.Module, name: str) -> KeyExport:
    kind = encoder_kind(encoder)
    if kind == "resnet":
        return resnet_keys(encoder, name, "torchvision")
    if kind == "vit":
        return vit_torchvision(encoder)
    raise unsupported(name, "torchvision", SUPPORTED)  # a timm encoder too: NO_COUNTERPART says why
