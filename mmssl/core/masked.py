"""Generic masked modelling: encode the visible tokens, decode with mask tokens, score masked ones.

For an input ``x`` split into ``N`` tokens (patches, frame cubes, points, words), with a mask that
hides ``M`` of them (see :mod:`mmssl.core.masking`)::

    t      = tokenize(x)                          # [B, N, D]   tokens carrying their positions
    z      = encode_visible(t[ids_keep])          # [B, P + K, D]  (P prefix tokens, e.g. CLS)
    y_hat  = decoder(z, mask)                     # [B, N, P_out]  mask tokens at the hidden places
    L      = sum_n m_n ||y_hat_n - y_n||^2 / P_out / sum_n m_n,   y = targets(x)

which is MAE's objective (He et al. 2022, Sec. 3): only visible tokens enter the (large) encoder,
so it costs ``K / N`` of a full pass, and the (small) decoder reconstructs the rest. Context-encoder
inpainting (Pathak et al. 2016) is the same model with one contiguous block masked; tube masking
gives VideoMAE. The modality adapter supplies ``tokenize``, ``encode_visible`` and ``targets``;
nothing here knows what a token is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.losses import masked_reconstruction_loss
from mmssl.core.masking import TokenMask, TokenMasker, gather_tokens, unshuffle
from mmssl.core.method import Method


def init_mae_weights_(module: nn.Module, token: nn.Parameter) -> None:
    """MAE's transformer initialisation, in place: ``token`` (a CLS or mask token) ~ N(0, 0.02), then
    every ``nn.Linear`` of ``module`` xavier-uniform with zero bias and every ``nn.LayerNorm`` (1, 0).

    Shared by :class:`MaskedDecoder` and the image ViT; the draws happen in this order, so a caller
    that initialises other parameters first (the ViT's patch projection) keeps its random stream.
    """
    nn.init.normal_(token, std=0.02)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MaskedDecoder(nn.Module):
    """MAE's light decoder: embed, insert mask tokens, add positions, transformer blocks, predict.

    ``forward(latent, mask)`` takes the encoder output ``[B, P + K, in_dim]`` (``P`` prefix tokens
    first, then the visible tokens in ``mask.ids_keep`` order) and returns ``[B, N, out_dim]``
    predictions for every token in original order. Prefix tokens take part in attention but get no
    position (MAE gives CLS an all-zero position) and no prediction.

    Args:
        in_dim: encoder width. embed_dim / depth / num_heads / mlp_ratio: decoder transformer
            (pre-norm blocks; MAE: 512 / 8 / 16 / 4).
        out_dim: values predicted per token (e.g. ``patch**2 * 3`` pixels).
        num_tokens: ``N``, tokens per sample.
        pos_embed: fixed positions ``[N, embed_dim]`` supplied by the adapter (e.g. 2-D sin-cos),
            or ``None`` for a learned table.
        num_prefix_tokens: ``P``, encoder outputs before the visible tokens.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tokens: int,
        embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        pos_embed: Tensor | None = None,
        num_prefix_tokens: int = 1,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"decoder width {embed_dim} is not divisible by {num_heads} heads")
        self.num_tokens, self.num_prefix_tokens = num_tokens, num_prefix_tokens
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos_embed is not None:
            if tuple(pos_embed.shape) != (num_tokens, embed_dim):
                raise ValueError(
                    f"decoder pos_embed must be [{num_tokens}, {embed_dim}], got {tuple(pos_embed.shape)}"
                )
            # Fixed: a buffer, rebuilt by the adapter, so it is neither trained nor checkpointed.
            self.register_buffer("pos_embed", pos_embed.detach().float().unsqueeze(0), persistent=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                embed_dim,
                num_heads,
                dim_feedforward=int(embed_dim * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=1e-6,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.pred = nn.Linear(embed_dim, out_dim)
        self.embed_dim = embed_dim
        self._init_weights()

    def _init_weights(self) -> None:
        init_mae_weights_(self, self.mask_token)
        for block in self.blocks:  # the attention's fused in-projection is a bare Parameter
            nn.init.xavier_uniform_(block.self_attn.in_proj_weight)
            nn.init.zeros_(block.self_attn.in_proj_bias)

    def forward(self, latent: Tensor, mask: TokenMask) -> Tensor:
        p = self.num_prefix_tokens
        if latent.shape[1] != p + mask.num_keep or mask.num_tokens != self.num_tokens:
            raise ValueError(
                f"decoder expects {p} prefix + {mask.num_keep} visible of {self.num_tokens} tokens, got "
                f"{latent.shape[1]} encoder outputs and a mask over {mask.num_tokens} tokens"
            )
        x = self.embed(latent)
        prefix, visible = x[:, :p], x[:, p:]
        x = unshuffle(visible, self.mask_token, mask.ids_restore) + self.pos_embed
        x = torch.cat([prefix, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, p:]


class MaskedModel(Method):
    """Masked modelling method: ``forward(batch) -> {"loss"}`` with the loss on masked tokens only.

    Args:
        encoder: the representation kept after pretraining (``method.encoder``).
        tokenize: ``x -> [B, N, D]`` tokens with their positional embedding already added.
        encode_visible: ``[B, K, D]`` visible tokens (any order) -> ``[B, P + K, D]`` encoder
            outputs (``P = decoder.num_prefix_tokens`` extra tokens such as CLS first).
        targets: ``x -> [B, N, P_out]`` what each token should be reconstructed as.
        decoder: a :class:`MaskedDecoder` (``out_dim = P_out``).
        masker: ``masker(batch, num_tokens, device, generator) -> TokenMask`` (a :class:`TokenMasker`).
        norm_target: normalise each target token by its own mean / variance (MAE ``norm_pix_loss``).
        input_key: the batch entry holding ``x``.

    The callables should be bound methods or ``functools.partial`` over modules owned by this
    model (e.g. ``encoder.forward_tokens``) so ``.to()`` and ``copy.deepcopy`` stay consistent.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        tokenize: Callable[[Any], Tensor],
        encode_visible: Callable[[Tensor], Tensor],
        targets: Callable[[Any], Tensor],
        decoder: MaskedDecoder,
        masker: TokenMasker | Callable[..., TokenMask],
        norm_target: bool = False,
        input_key: str = "input",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tokenize, self.encode_visible, self.targets = tokenize, encode_visible, targets
        self.masker = masker
        self.norm_target = norm_target
        self.input_key = input_key

    def reconstruct(
        self, x: Any, mask: TokenMask | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, TokenMask]:
        """Predictions ``[B, N, P_out]`` for every token (visible ones too) and the mask used."""
        tokens = self.tokenize(x)
        b, n = tokens.shape[:2]
        if mask is None:
            mask = self.masker(b, n, device=tokens.device, generator=generator)
        latent = self.encode_visible(gather_tokens(tokens, mask.ids_keep))
        return self.decoder(latent, mask), mask

    def loss(self, pred: Tensor, target: Tensor, mask: TokenMask) -> Tensor:
        """Mean squared error on the masked tokens (:func:`masked_reconstruction_loss`)."""
        return masked_reconstruction_loss(pred, target, mask.mask, norm_target=self.norm_target)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.input_key not in batch:
            raise KeyError(
                f"{type(self).__name__} reads batch['{self.input_key}'] but the batch has "
                f"{sorted(batch)}; check the data section (single inputs, not two views)"
            )
        x = batch[self.input_key]
        pred, mask = self.reconstruct(x)
        return {"loss": self.loss(pred, self.targets(x), mask)}
