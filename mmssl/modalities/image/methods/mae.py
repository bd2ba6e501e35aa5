"""Masked image modelling on a ViT: MAE and context-encoder inpainting.

Both are configurations of the generic :class:`~mmssl.core.masked.MaskedModel`; the image adapter
only says what a token is (a ``p x p`` patch embedded by the ViT's ``patch_embed`` plus its
position) and what it should be reconstructed as (its normalised pixels, ``p * p * 3`` values):

- ``mae`` (He et al., CVPR 2022): a random 75% of the patches is removed per image; the encoder
  sees the other 25% (+ CLS); a light decoder with fixed 2-D sin-cos positions predicts the pixels
  of the removed patches; MSE on those only, each target patch normalised by its own mean and
  variance (``norm_pix_loss``).
- ``inpainting`` (Pathak et al., CVPR 2016, "context encoders"): one contiguous block (the
  central quarter of the image by default, or a random position), or several smaller blocks at
  random places, is removed and reconstructed from its context, with a plain pixel L2 loss on the
  hole. Pathak et al. also add an adversarial loss for sharper fills; it is left out here since
  only the representation is evaluated.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor, nn

from mmssl.core.masked import MaskedDecoder, MaskedModel
from mmssl.core.masking import BLOCK_POSITIONS, TokenMasker
from mmssl.core.transformer import sincos_pos_embed_2d
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE
from mmssl.eval.features import eval_mode
from mmssl.modalities.image.figures import figure_inputs, save_image_rows
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, N, p*p*C]``: patches in row-major order (the ViT token order), each
    flattened as (row in patch, column in patch, channel), as MAE's reference."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: Tensor, patch_size: int, grid: tuple[int, int] | None = None) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, N, p*p*C]`` -> ``[B, C, h*p, w*p]`` (square grid by default)."""
    b, n, d = patches.shape
    p = patch_size
    if grid is None:
        side = int(round(n**0.5))
        grid = (side, side)
    gh, gw = grid
    if gh * gw != n or d % (p * p):
        raise ValueError(f"cannot unpatchify {n} tokens of {d} values into a {gh}x{gw} grid of {p}px patches")
    c = d // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)


def vit_tokenize(encoder: nn.Module, images: Tensor) -> Tensor:
    """Patch embeddings with their positions, ``[B, N, D]`` (the ViT's own first step)."""
    return encoder.patch_embed(images) + encoder.pos_embed[:, 1:]


def _check_vit(encoder: nn.Module) -> None:
    needed = ("patch_embed", "pos_embed", "forward_tokens")
    missing = [a for a in needed if not hasattr(encoder, a)]
    if missing:
        raise ValueError(
            "masked image modelling needs a ViT encoder (vit_tiny / vit_small) exposing "
            f"{', '.join(needed)}; "
            f"{type(encoder).__name__} lacks {', '.join(missing)}"
        )


class MaskedImageModel(MaskedModel):
    """:class:`MaskedModel` over ViT patches, plus a reconstruction figure.

    Args:
        encoder: a ViT (``patch_embed``, ``pos_embed``, ``forward_tokens``; CLS is the prefix token).
        masker: which patches to hide (:class:`~mmssl.core.masking.TokenMasker`).
        norm_pix_loss: per-patch normalised targets (MAE); off for inpainting.
        decoder_dim / decoder_depth / decoder_heads / decoder_mlp_ratio: the light decoder.
        decoder_pos_embed: ``"sincos"`` (fixed 2-D, MAE) or ``"learned"``.
        name: used for the figure's file name.
    """

    consumes = frozenset({IMAGE})

    def __init__(
        self,
        encoder: nn.Module,
        *,
        masker: TokenMasker,
        norm_pix_loss: bool,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        decoder_mlp_ratio: float = 4.0,
        decoder_pos_embed: str = "sincos",
        name: str = "mae",
    ) -> None:
        _check_vit(encoder)
        if decoder_pos_embed not in ("sincos", "learned"):
            raise ValueError(
                f"method.decoder_pos_embed must be 'sincos' or 'learned', got '{decoder_pos_embed}'"
            )
        patch = encoder.patch_embed.patch_size
        grid = encoder.patch_embed.grid_size
        channels = encoder.patch_embed.proj.in_channels
        decoder = MaskedDecoder(
            in_dim=encoder.out_dim,
            out_dim=patch * patch * channels,
            num_tokens=grid * grid,
            embed_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            mlp_ratio=decoder_mlp_ratio,
            pos_embed=sincos_pos_embed_2d(decoder_dim, grid, cls_token=False)
            if decoder_pos_embed == "sincos"
            else None,
            num_prefix_tokens=1,
        )
        super().__init__(
            encoder,
            tokenize=functools.partial(vit_tokenize, encoder),
            encode_visible=encoder.forward_tokens,
            targets=functools.partial(patchify, patch_size=patch),
            decoder=decoder,
            masker=masker,
            norm_target=norm_pix_loss,
            input_key="image",
        )
        self.patch_size, self.grid_size, self.name = patch, grid, name

    @torch.no_grad()
    def save_figures(
        self, figures_dir: Path, data: DataBundle, device: torch.device, num_images: int = 8
    ) -> Path | None:
        """Save a PNG grid, one column per test image; rows: original / masked input /
        reconstruction with the visible patches pasted back. With ``norm_pix_loss`` the predicted
        patches are in per-patch normalised units; they are mapped back with the true patch's mean
        and standard deviation for display only (as MAE's visualisations do)."""
        images = figure_inputs(data, num_images, device)
        if images is None:
            return None
        with eval_mode(self):
            pred, mask = self.reconstruct(images, generator=torch.Generator().manual_seed(0))
        target = patchify(images, self.patch_size)
        pred = pred.float()
        if self.norm_target:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1e-6).sqrt() + mean
        m = mask.mask.unsqueeze(-1)
        mean_c = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std_c = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

        def to_rgb(patches: Tensor) -> Tensor:
            return (unpatchify(patches, self.patch_size) * std_c + mean_c).clamp(0, 1)

        original = to_rgb(target)
        grey = torch.full_like(original, 0.5)
        masked_pixels = unpatchify(m.expand_as(target), self.patch_size) > 0
        masked = torch.where(masked_pixels, grey, original)
        recon = to_rgb(pred * m + target * (1 - m))
        return save_image_rows(
            [original, masked, recon],
            ["original", "masked", "reconstruction"],
            Path(figures_dir) / f"{self.name}_reconstructions.png",
            title=f"{self.name}: {mask.num_masked}/{mask.num_tokens} patches masked"
            + (
                "; predictions rescaled by each true patch's mean/std (norm_pix_loss)"
                if self.norm_target
                else ""
            ),
        )


def mae(
    encoder: nn.Module,
    data: DataBundle | None = None,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = True,
    decoder_dim: int = 512,
    decoder_depth: int = 8,
    decoder_heads: int = 16,
    decoder_mlp_ratio: float = 4.0,
    decoder_pos_embed: str = "sincos",
) -> MaskedImageModel:
    """MAE (He et al., CVPR 2022): mask a random ``mask_ratio`` of the patches per image, encode
    the rest, reconstruct the masked patches' pixels; ``L = mean over masked patches of the MSE``.

    ``norm_pix_loss``: targets are each patch normalised by its own mean/variance (the paper's
    better default). The decoder (512-d, 8 blocks, 16 heads in the paper) is discarded after
    pretraining; smaller ones suit small images. Needs a ViT encoder and single-image data
    (``data.views: mae`` for crop + flip, or null).
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"method.mask_ratio must lie in (0, 1), got {mask_ratio}")
    return MaskedImageModel(
        encoder,
        masker=TokenMasker("random", mask_ratio),
        norm_pix_loss=norm_pix_loss,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
        decoder_mlp_ratio=decoder_mlp_ratio,
        decoder_pos_embed=decoder_pos_embed,
        name="mae",
    )


def inpainting(
    encoder: nn.Module,
    data: DataBundle | None = None,
    mask_ratio: float = 0.25,
    position: str = "center",
    block_tokens: int = 4,
    norm_pix_loss: bool = False,
    decoder_dim: int = 512,
    decoder_depth: int = 8,
    decoder_heads: int = 16,
    decoder_mlp_ratio: float = 4.0,
    decoder_pos_embed: str = "sincos",
) -> MaskedImageModel:
    """Context-encoder inpainting (Pathak et al., CVPR 2016) on ViT patches.

    ``round(mask_ratio * N)`` patches are removed and their pixels regressed from the context (L2 on
    the hole, raw normalised pixels). ``position``: ``center``, one block in the middle, the paper's
    central region (a quarter of the image by default); ``random``, one block at a new place per
    image; ``blocks``, the paper's "random block": smaller blocks of ``block_tokens`` patches each at
    random, possibly overlapping places until their union holds the count
    (:func:`~mmssl.core.masking.block_mask`).
    For feature learning the paper prefers holes that move (its section 3.3: features trained on a
    fixed central hole latch onto that hole's boundary); with ``center`` a ViT also never sees the
    central tokens in training that it meets in evaluation, so the CIFAR-10 recipes use ``blocks``
    (on val it beat ``random``, which beat ``center``: docs/benchmarks.md).
    ``norm_pix_loss``: regress every hidden patch normalised by its own mean / variance, MAE's target
    (not in the paper, whose L2 is on raw pixels: an ablation of what separates the two methods).
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"method.mask_ratio must lie in (0, 1), got {mask_ratio}")
    if position not in BLOCK_POSITIONS:
        raise ValueError(f"method.position must be one of {BLOCK_POSITIONS}, got '{position}'")
    if block_tokens < 1:
        raise ValueError(f"method.block_tokens must be at least 1, got {block_tokens}")
    _check_vit(encoder)
    grid = encoder.patch_embed.grid_size
    return MaskedImageModel(
        encoder,
        masker=TokenMasker(
            "block", mask_ratio, grid=(grid, grid), position=position, block_tokens=block_tokens
        ),
        norm_pix_loss=norm_pix_loss,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
        decoder_mlp_ratio=decoder_mlp_ratio,
        decoder_pos_embed=decoder_pos_embed,
        name="inpainting",
    )
