"""VideoMAE (Tong et al., NeurIPS 2022): masked autoencoding of clips with tube masking at a high ratio.

A configuration of the generic :class:`~mmssl.core.masked.MaskedModel`; the video adapter only says what
a token is and what it should be reconstructed as:

- token: a ``t x p x p`` tubelet embedded by the :class:`~mmssl.modalities.video.vit.VideoViT`'s
  ``patch_embed`` plus its fixed 3-D sin-cos position (Sec. 3.3);
- mask: *tube masking* (Sec. 3.3, :func:`~mmssl.core.masking.tube_mask`): one random spatial mask of
  ``round(ratio * H' W')`` cells per clip, the same in every one of the ``T'`` time slots, so a masked
  cube cannot be copied from the same place in a neighbouring frame (video is temporally redundant,
  which is why the ratio can be 90%, Sec. 3.2);
- target: the tubelet's pixels, each cube normalised per channel by its own mean and standard
  deviation (the reference code's ``normlize_target``: ``(x - mean) / (std + 1e-6)`` over the
  ``t p p`` voxels of each channel), flattened as ``(frame, row, column, channel)``;
- loss: MSE on the masked tubes only; the encoder sees the ``T' (H' W' - round(ratio H' W'))`` visible
  tubes, a light decoder with fixed 3-D sin-cos positions predicts every tube.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import Tensor, nn

from mmssl.core.masked import MaskedDecoder, MaskedModel
from mmssl.core.masking import TokenMasker
from mmssl.core.transformer import sincos_pos_embed
from mmssl.data import DataBundle
from mmssl.eval.features import eval_mode
from mmssl.figures import save_figure
from mmssl.modalities.video.keys import CLIP
from mmssl.modalities.video.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.modalities.video.vit import patchify_tubes, unpatchify_tubes


def tube_targets(clips: Tensor, patch_size: int, tubelet_size: int, normalize: bool = True) -> Tensor:
    """``[B, T, C, H, W]`` -> ``[B, N, t*p*p*C]`` reconstruction targets: each tube's pixels, with
    ``normalize`` each channel of each tube standardised over its ``t p p`` voxels (unbiased std)."""
    tubes = patchify_tubes(clips, patch_size, tubelet_size)
    if not normalize:
        return tubes
    b, n, d = tubes.shape
    c = clips.shape[2]
    x = tubes.reshape(b, n, d // c, c)  # voxels of one channel along dim 2 (channel is fastest)
    x = (x - x.mean(dim=2, keepdim=True)) / (x.var(dim=2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.reshape(b, n, d)


def vit_tokenize(encoder: nn.Module, clips: Tensor) -> Tensor:
    """Positioned tubelet tokens ``[B, N, D]`` (the encoder's own first step)."""
    return encoder.tokenize(clips)[0]


class VideoMAE(MaskedModel):
    """:class:`MaskedModel` over tubelets with tube masking (see the module docstring), plus a figure.

    Args:
        encoder: a :class:`~mmssl.modalities.video.vit.VideoViT` (``tokenize``, ``forward_tokens``,
            ``grid``, ``num_prefix_tokens``).
        mask_ratio: fraction of the spatial cells masked in every time slot (VideoMAE: 0.9).
        norm_pix_loss: per-tube, per-channel normalised targets (VideoMAE); else raw (normalised-clip) pixels.
        decoder_dim / decoder_depth / decoder_heads / decoder_mlp_ratio: the light decoder (VideoMAE
            ViT-B: 384 / 4 / 6; ``decoder_dim`` divisible by 6 for its 3-D sin-cos positions).
    """

    consumes = frozenset({CLIP})

    def __init__(
        self,
        encoder: nn.Module,
        *,
        mask_ratio: float = 0.9,
        norm_pix_loss: bool = True,
        decoder_dim: int = 192,
        decoder_depth: int = 4,
        decoder_heads: int = 3,
        decoder_mlp_ratio: float = 4.0,
    ) -> None:
        needed = ("tokenize", "forward_tokens", "grid", "num_prefix_tokens", "patch_size", "tubelet_size")
        missing = [a for a in needed if not hasattr(encoder, a)]
        if missing:
            raise ValueError(
                f"videomae needs a video_vit encoder; {type(encoder).__name__} lacks {', '.join(missing)}"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"method.mask_ratio must lie in (0, 1), got {mask_ratio}")
        if decoder_dim % 6:
            raise ValueError(f"method.decoder_dim must be divisible by 6 (3-D sin-cos), got {decoder_dim}")
        grid = tuple(encoder.grid)
        p, t = encoder.patch_size, encoder.tubelet_size
        channels = encoder.patch_embed.proj.in_channels
        decoder = MaskedDecoder(
            in_dim=encoder.out_dim,
            out_dim=t * p * p * channels,
            num_tokens=grid[0] * grid[1] * grid[2],
            embed_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            mlp_ratio=decoder_mlp_ratio,
            pos_embed=sincos_pos_embed(decoder_dim, grid),
            num_prefix_tokens=encoder.num_prefix_tokens,
        )
        super().__init__(
            encoder,
            tokenize=functools.partial(vit_tokenize, encoder),
            encode_visible=encoder.forward_tokens,
            targets=functools.partial(tube_targets, patch_size=p, tubelet_size=t, normalize=norm_pix_loss),
            decoder=decoder,
            # one spatial mask for the T' time slots of S = H' W' tokens each (token n = t' S + s)
            masker=TokenMasker("tube", mask_ratio, num_frames=grid[0]),
            norm_target=False,  # the targets are already normalised per tube and channel
            input_key=CLIP,
        )
        self.grid, self.patch_size, self.tubelet_size = grid, p, t
        self.norm_pix = norm_pix_loss

    @torch.no_grad()
    def save_figures(
        self, figures_dir: Path, data: DataBundle, device: torch.device, num_clips: int = 2
    ) -> Path | None:
        """``videomae_reconstructions.png``: for the first held-out clips, rows original / masked input /
        reconstruction (visible tubes pasted back), one column per frame. With ``norm_pix_loss`` the
        predicted tubes are mapped back with the true tube's per-channel mean and std, for display only."""
        dataset = data.eval_test if data.eval_test is not None else data.eval_train
        if dataset is None or len(dataset) == 0:
            return None
        clips = torch.stack([dataset[i]["input"] for i in range(min(num_clips, len(dataset)))]).to(device)
        if clips.shape[1] != self.grid[0] * self.tubelet_size:
            return None  # evaluation clips of another length than the model's
        with eval_mode(self):
            pred, mask = self.reconstruct(clips, generator=torch.Generator().manual_seed(0))
        raw = patchify_tubes(clips, self.patch_size, self.tubelet_size)
        pred = pred.float()
        if self.norm_pix:
            c = clips.shape[2]
            x = raw.reshape(*raw.shape[:2], -1, c)
            mean, std = x.mean(dim=2, keepdim=True), x.var(dim=2, unbiased=True, keepdim=True).sqrt()
            pred = (pred.reshape(x.shape) * (std + 1e-6) + mean).reshape(raw.shape)
        m = mask.mask.unsqueeze(-1)
        mean_c = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1)
        std_c = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1)

        def to_rgb(tubes: Tensor) -> Tensor:
            return (
                unpatchify_tubes(tubes, self.patch_size, self.tubelet_size, self.grid) * std_c + mean_c
            ).clamp(0, 1)

        original = to_rgb(raw)
        hidden = unpatchify_tubes(m.expand_as(raw), self.patch_size, self.tubelet_size, self.grid) > 0
        rows = [
            original,
            torch.where(hidden, torch.full_like(original, 0.5), original),
            to_rgb(pred * m + raw * (1 - m)),
        ]
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        b, t_len = clips.shape[:2]
        fig, axes = plt.subplots(3 * b, t_len, figsize=(1.1 * t_len, 1.15 * 3 * b + 0.4), squeeze=False)
        labels = ("original", "masked", "reconstruction")
        for i in range(b):
            for r, row in enumerate(rows):
                for f in range(t_len):
                    ax = axes[3 * i + r][f]
                    ax.imshow(row[i, f].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if f == 0:
                        ax.set_ylabel(labels[r], fontsize=7)
        fig.suptitle(
            f"videomae: {mask.num_masked}/{mask.num_tokens} tubes masked (same cells in every time slot)"
        )
        return save_figure(fig, Path(figures_dir) / "videomae_reconstructions.png")


def videomae(
    encoder: nn.Module,
    data: DataBundle | None = None,
    mask_ratio: float = 0.9,
    norm_pix_loss: bool = True,
    decoder_dim: int = 192,
    decoder_depth: int = 4,
    decoder_heads: int = 3,
    decoder_mlp_ratio: float = 4.0,
) -> VideoMAE:
    """VideoMAE (Tong et al. 2022): tube-mask ``mask_ratio`` (0.9) of each clip's space-time tubes,
    encode the visible ones, reconstruct the masked tubes' per-channel normalised pixels (MSE on those).

    Needs a ``video_vit`` encoder whose ``num_frames`` / ``img_size`` are the dataset's ``clip_len`` /
    ``frame_size``, and single-clip data (``data.views`` null). The decoder (VideoMAE ViT-B: 384-d,
    4 blocks, 6 heads) is discarded after pretraining.
    """
    stats = data.stats if data is not None else {}
    clip_len, size = stats.get("clip_len"), stats.get("frame_size")
    if clip_len is not None and clip_len != getattr(encoder, "num_frames", clip_len):
        raise ValueError(
            f"videomae: the encoder is built for {encoder.num_frames}-frame clips but data.clip_len is "
            f"{clip_len}; set encoder.num_frames to data.clip_len"
        )
    img_size = getattr(encoder, "img_size", None)
    if size is not None and img_size is not None and list(size) != [img_size, img_size]:
        raise ValueError(
            f"videomae: the encoder is built for {img_size}-px frames but data.frame_size is {size}; "
            "set encoder.img_size to data.frame_size"
        )
    return VideoMAE(
        encoder,
        mask_ratio=mask_ratio,
        norm_pix_loss=norm_pix_loss,
        decoder_dim=decoder_dim,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
        decoder_mlp_ratio=decoder_mlp_ratio,
    )


__all__ = ["VideoMAE", "tube_targets", "videomae", "vit_tokenize"]
