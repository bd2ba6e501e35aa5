"""Image encoders, registered in ``mmssl.registry.ENCODERS`` with ``modality="image"``.

Every encoder follows the toolkit contract: an ``nn.Module`` with ``out_dim`` whose ``forward(x)``
takes ``[B, C, H, W]`` and returns ``{"global": [B, out_dim], "tokens": [B, N, out_dim]}``, where
the tokens are the cells of the final feature map (CNNs) or the patch outputs (ViT).

- ``resnet18`` / ``resnet50``: torchvision ResNets, never pretrained, classifier removed; the
  ``small_stem`` variant (3x3 conv, stride 1, no max-pool) is the CIFAR ResNet used by SimCLR and
  solo-learn for 32-px images.
- ``small_cnn``: a few conv-BN-ReLU blocks, for CPU demos.
- ``vit_tiny`` / ``vit_small``: a plain pre-norm ViT with fixed 2-D sin-cos positions (as MAE)
  whose pieces (``patch_embed``, ``pos_embed``, ``cls_token``, ``blocks``, ``norm``,
  ``forward_tokens``) are exposed so masked image modelling can encode only visible patches. Initial
  weights (``weights: PATH``) from a ViT of another image size get their position table resampled
  (:meth:`VisionTransformer.adapt_initial_weights`).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models import resnet as tv_resnet

from mmssl.core.masked import init_mae_weights_
from mmssl.core.transformer import Attention, Block, sincos_pos_embed_2d

log = logging.getLogger(__name__)


def _feature_map_outputs(fmap: torch.Tensor) -> dict[str, torch.Tensor]:
    """``[B, C, h, w]`` -> global average pool ``[B, C]`` and cell tokens ``[B, h*w, C]``."""
    return {"global": fmap.mean(dim=(2, 3)), "tokens": fmap.flatten(2).transpose(1, 2)}


# --------------------------------------------------------------------------------------- ResNet


class ResNetEncoder(nn.Module):
    """A torchvision ResNet trunk (everything before the classifier).

    With ``small_stem`` the 7x7/2 convolution and the 3x3/2 max-pool are replaced by one 3x3/1
    convolution, so a 32x32 input leaves the trunk as a 4x4 map (total stride 8) instead of 1x1
    (total stride 32).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        small_stem: bool = False,
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        builders = {
            "resnet18": tv_resnet.resnet18,
            "resnet34": tv_resnet.resnet34,
            "resnet50": tv_resnet.resnet50,
        }
        if arch not in builders:
            raise ValueError(f"unknown ResNet '{arch}'; available: {', '.join(builders)}")
        # weights=None: random init, nothing is ever downloaded.
        net = builders[arch](weights=None, zero_init_residual=zero_init_residual)
        if small_stem or in_channels != 3:
            kernel, stride, padding = (3, 1, 1) if small_stem else (7, 2, 3)
            net.conv1 = nn.Conv2d(in_channels, 64, kernel, stride=stride, padding=padding, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        if small_stem:
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_dim: int = 512 * (4 if arch == "resnet50" else 1)
        self.small_stem = small_stem

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return _feature_map_outputs(self.feature_map(x))


def resnet18(
    small_stem: bool = False, zero_init_residual: bool = False, in_channels: int = 3
) -> ResNetEncoder:
    """ResNet-18 trunk, ``out_dim`` 512.

    ``small_stem``: CIFAR variant (3x3/1 stem, no max-pool) for 32-px inputs.
    ``zero_init_residual``: start each residual block's last BN at zero (block = identity).
    ``in_channels``: input channels (3 for RGB).
    """
    return ResNetEncoder("resnet18", small_stem, zero_init_residual, in_channels)


def resnet50(
    small_stem: bool = False, zero_init_residual: bool = False, in_channels: int = 3
) -> ResNetEncoder:
    """ResNet-50 trunk, ``out_dim`` 2048. Options as for ``resnet18``."""
    return ResNetEncoder("resnet50", small_stem, zero_init_residual, in_channels)


# ------------------------------------------------------------------------------------ Small CNN


def conv_stages(
    in_channels: int, widths: Sequence[int], convs_per_block: int, stem_stride: int, pool: nn.Module
) -> nn.Sequential:
    """Stages of ``convs_per_block`` x (conv3x3-BN-ReLU), one per width, with ``pool`` between stages;
    the very first convolution has stride ``stem_stride``. Shared by the small image and audio CNNs."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, width in enumerate(widths):
        if i > 0:
            layers.append(copy.deepcopy(pool))
        for j in range(convs_per_block):
            stride = stem_stride if i == 0 and j == 0 else 1
            layers += [
                nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """``len(widths)`` blocks of conv3x3-BN-ReLU (x ``convs_per_block``), 2x2 max-pool between
    blocks, global average pool. With the default widths a 32x32 image ends as a 4x4x256 map;
    about 15 MMAC per image, so it trains on a laptop CPU.

    ``stem_stride=2`` lets the first convolution downsample: on CPU the full-resolution first block
    (BN/ReLU over 32x32 maps) costs as much time as the rest, so this roughly halves a step.
    """

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128, 256),
        in_channels: int = 3,
        convs_per_block: int = 1,
        stem_stride: int = 1,
    ):
        super().__init__()
        if not widths:
            raise ValueError("small_cnn needs at least one width")
        self.features = conv_stages(in_channels, widths, convs_per_block, stem_stride, nn.MaxPool2d(2))
        self.out_dim: int = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return _feature_map_outputs(self.features(x))


def small_cnn(
    widths: Sequence[int] = (32, 64, 128, 256),
    in_channels: int = 3,
    convs_per_block: int = 1,
    stem_stride: int = 1,
) -> SmallCNN:
    """A small fast CNN for CPU demos; ``out_dim`` = ``widths[-1]`` (256 by default).

    ``widths``: channels of each block (a 2x2 max-pool separates blocks).
    ``convs_per_block``: conv-BN-ReLU layers per block.
    ``stem_stride``: stride of the first convolution (2 = faster, coarser: 2x2 final map at 32 px).
    """
    return SmallCNN(tuple(widths), in_channels, convs_per_block, stem_stride)


# ------------------------------------------------------------------------------------------ ViT


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches, each projected linearly: ``[B, C, H, W] -> [B, N, D]``."""

    def __init__(self, img_size: int, patch_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"ViT built for {self.img_size}x{self.img_size} inputs got {tuple(x.shape[-2:])}; "
                "set the encoder's img_size to the image size"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Plain ViT (Dosovitskiy et al., 2021) with a CLS token and a final LayerNorm.

    ``forward(x)``: ``t = patch_embed(x) + pos_embed[:, 1:]`` then ``forward_tokens(t)``;
    returns ``{"global": CLS output, "tokens": patch outputs}``.
    ``pos_embed`` is ``[1, 1 + N, D]`` with the CLS position first; with ``pos_embed="sincos"``
    (default, as MAE) it is a fixed, non-trainable parameter.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pos_embed: str = "sincos",
        global_pool: str = "cls",
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        if global_pool not in ("cls", "mean"):
            raise ValueError(f"global_pool must be 'cls' or 'mean', got '{global_pool}'")
        self.global_pool = global_pool
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got '{pos_embed}'")
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, embed_dim)
        self.pos_embed_kind = pos_embed
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos_embed == "sincos":
            table = sincos_pos_embed_2d(embed_dim, self.patch_embed.grid_size).unsqueeze(0)
            self.pos_embed = nn.Parameter(table, requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.embed_dim = embed_dim
        self.out_dim: int = embed_dim
        self.num_patches = num_patches
        self.patch_size = patch_size
        self._init_weights()

    def _init_weights(self) -> None:
        # MAE / timm recipe: patch projection like a Linear (xavier on the flattened kernel),
        # CLS ~ N(0, 0.02), Linear xavier-uniform with zero bias, LayerNorm (1, 0).
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        init_mae_weights_(self, self.cls_token)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, M, D]`` patch tokens that already carry their positions (any subset, any order)
        -> ``[B, 1 + M, D]``: CLS (+ its position) prepended, blocks, final norm."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        # Activation checkpointing (Chen et al. 2016): keep only each block's input and recompute its
        # activations in the backward pass, trading ~1/3 more compute for memory that grows with depth.
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]
        out = self.forward_tokens(tokens)
        # MAE evaluates either the CLS token or the mean of patch tokens (He et al. 2022, Sec. A.1).
        pooled = out[:, 0] if self.global_pool == "cls" else out[:, 1:].mean(dim=1)
        return {"global": pooled, "tokens": out[:, 1:]}

    def adapt_initial_weights(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``encoder.weights`` from a ViT trained at another image size (same patch size, another grid of
        patches): only the position table depends on the grid, so it is the one entry changed.

        - ``pos_embed: learned``: the file's table is resampled to this grid (:func:`resample_pos_embed`:
          CLS position kept, the grid bicubically interpolated), so that the positions keep their learned
          2-D layout; the same table when the grids already match.
        - ``pos_embed: sincos``: the table is a fixed function of the grid, not learned, so this ViT's own
          replaces the file's.

        A table of another width cannot be resized: a ``ValueError`` (reported naming ``encoder.weights``
        by :func:`mmssl.encoders.load_initial_weights`)."""
        state = dict(state)
        table = state.get("pos_embed")
        if table is None:
            return state  # reported as a missing key
        own = self.pos_embed
        if table.ndim != 3 or table.shape[0] != 1 or table.shape[-1] != own.shape[-1]:
            raise ValueError(
                f"pos_embed has shape {tuple(table.shape)} where this ViT's is {tuple(own.shape)} "
                f"(embed_dim {own.shape[-1]}): a position table of another width cannot be resized; "
                "the file holds a ViT of another size"
            )
        grid = self.patch_embed.grid_size
        if self.pos_embed_kind == "sincos":
            if table.shape != own.shape or not torch.equal(table, own.detach()):
                log.info(
                    "initial weights: pos_embed %s replaced by this ViT's fixed sin-cos table for its "
                    "%dx%d grid (pos_embed: sincos is not learned)",
                    tuple(table.shape),
                    grid,
                    grid,
                )
            state["pos_embed"] = own.detach().clone()
        elif table.shape != own.shape:
            state["pos_embed"] = resample_pos_embed(table, grid)
            old = math.isqrt(table.shape[1] - 1)
            log.info(
                "initial weights: learned pos_embed resampled from a %dx%d to a %dx%d grid (bicubic)",
                old,
                old,
                grid,
                grid,
            )
        return state


def resample_pos_embed(table: torch.Tensor, grid: int) -> torch.Tensor:
    """``[1, 1 + n*n, D]`` (CLS position first) -> ``[1, 1 + grid*grid, D]``: the CLS position kept, the
    ``n x n`` grid part resampled as a ``D``-channel image, bicubic with ``align_corners=False`` and no
    antialiasing (timm's ``resample_abs_pos_embed``), so a ViT fine-tuned at a new resolution starts from
    positions that keep their learned 2-D layout (Dosovitskiy et al. 2021, Sec. 3.2)."""
    cells = table.shape[1] - 1
    side = math.isqrt(max(cells, 0))
    if cells <= 0 or side * side != cells:
        raise ValueError(
            f"pos_embed of shape {tuple(table.shape)} is not a CLS position and a square grid of positions"
        )
    dim = table.shape[-1]
    square = table[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(square, size=(grid, grid), mode="bicubic", align_corners=False, antialias=False)
    resized = resized.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(table.dtype)
    return torch.cat([table[:, :1], resized], dim=1)


# (width, default depth, heads) per size, as in DeiT / timm.
_VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12)}


def _vit_builder(name: str, doc: str) -> Callable[..., VisionTransformer]:
    """The registered builder of one ViT size of ``_VIT_SIZES``: its options (the recipe keys the
    registry reads from the signature) are the same for every size, only width and heads differ."""
    dim, default_depth, heads = _VIT_SIZES[name]

    def build(
        img_size: int = 32,
        patch_size: int = 4,
        depth: int = default_depth,
        in_channels: int = 3,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
        global_pool: str = "cls",
        grad_checkpointing: bool = False,
    ) -> VisionTransformer:
        return VisionTransformer(
            img_size,
            patch_size,
            in_channels,
            dim,
            depth,
            heads,
            mlp_ratio,
            True,
            pos_embed,
            global_pool,
            grad_checkpointing,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


vit_tiny = _vit_builder(
    "vit_tiny",
    """ViT-Tiny: width 192, 3 heads, ``depth`` blocks (12 by default); ``out_dim`` 192.

    ``img_size`` must equal the input side; ``patch_size`` 4 gives 64 patches on 32-px images
    (16 is the ImageNet choice at 224 px). ``pos_embed``: ``"sincos"`` (fixed) or ``"learned"``.
    ``global_pool``: ``"cls"`` (the CLS output) or ``"mean"`` (mean of patch tokens).
    ``grad_checkpointing``: recompute each block's activations in the backward pass (less memory).
    """,
)
vit_small = _vit_builder(
    "vit_small",
    """ViT-Small: width 384, 6 heads, ``depth`` blocks (12 by default); ``out_dim`` 384.
    Options as for ``vit_tiny``.""",
)
vit_base = _vit_builder(
    "vit_base",
    """ViT-Base: width 768, 12 heads, ``depth`` blocks (12 by default); ``out_dim`` 768 (ViT-B/16 with
    ``img_size=224, patch_size=16``). Options as for ``vit_tiny``.""",
)


def num_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Parameter count (for logs and benchmark tables)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ResNetEncoder",
    "SmallCNN",
    "VisionTransformer",
    "PatchEmbed",
    "Block",
    "Attention",
    "sincos_pos_embed_2d",
    "resample_pos_embed",
    "num_parameters",
    "resnet18",
    "resnet50",
    "small_cnn",
    "vit_tiny",
    "vit_small",
    "vit_base",
]
