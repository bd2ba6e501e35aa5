"""Forecasting dense motion from one frame with a conditional VAE (Walker, Doersch, Gupta & Hebert,
"An Uncertain Future", ECCV 2016).

From a single frame ``X`` the model predicts where every part of the image will travel over the next
``K`` frames: ``Y`` = for each cell of an output grid, its displacements ``(dx_k, dy_k)``, ``k = 1..K``.
The future is ambiguous (the same picture of a ball can be followed by motion in any direction), so
``Y`` is modelled with a latent ``z`` that carries what the image cannot tell (Walker et al. Sec. 3)::

    prior     p(z) = N(0, I)
    encoder   q(z | X, Y) = N(mu_q(X, Y), diag sigma_q^2(X, Y))      (sees the true motion; training only)
    decoder   p(Y | X, z) = N(mu(X, z), I)

    loss = E_q ||Y - mu(X, z)||^2 / 2 + beta * KL(q(z | X, Y) || N(0, I))        (negative ELBO)
    KL   = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)                      (closed form)

with one reparameterised sample ``z = mu_q + sigma_q * eps`` per example (``beta = 1`` is the ELBO).
The loss is reported per output dimension (divided by ``K * 2 * grid cells``), which leaves the
balance of its two terms unchanged. At test time ``z ~ N(0, I)`` gives different plausible futures
(:meth:`FutureCVAE.sample_futures`); Walker et al. judge them by the best of N samples.

Targets (Walker et al. used dense trajectories from improved dense trajectories): here, classical
pyramidal Lucas-Kanade flow (:mod:`mmssl.modalities.video.flow`) between consecutive frames of the
training clip (at ``flow_size`` pixels, default the frames' own size), chained into point
trajectories starting at frame 0 (:func:`~mmssl.modalities.video.flow.chain_flows`) and averaged
over each output cell. Displacements are in units of output cells (1 = one cell width / height),
so targets do not depend on the frame size. The flow is recomputed for every batch, without
gradients (~0.5 s for 64 pairs of 64-px frames on one CPU thread; 4x less at half size, but on the
procedural sprites' fine textures the half-size flow leaves ~45% more warping residual).
Pretraining clips are randomly positioned and cropped, so a per-clip cache would almost never hit.

Networks. The *image tower* is the registry encoder (``self.encoder``: the representation that is
evaluated); its feature map ``F(X)`` ``[D, h, w]`` feeds both other towers:

- posterior (encoder tower): ``[F(X), Y resized to h x w]`` -> conv3x3-BN-ReLU -> stride-2
  conv3x3-ReLU -> global average -> linear -> ``(mu_q, log sigma_q^2)``. Walker et al.'s encoder
  tower runs a separate CNN on pixels and trajectories; sharing the image tower's features is the
  CPU-sized variant (the image tower also learns from the posterior's gradient);
- decoder: ``F(X)`` -> 1x1 conv-ReLU -> multiplied channel-wise by ``W z + b`` (z tiled over the
  grid; Walker et al. also combine z with the image features multiplicatively) -> conv3x3-ReLU ->
  bilinear resize to ``out_grid`` -> conv3x3-ReLU -> 1x1 conv to ``2K`` channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import INPUT
from mmssl.eval.features import eval_mode
from mmssl.figures import save_figure
from mmssl.modalities.image.color import to_unit_rgb
from mmssl.modalities.video.encoders import frame_feature_map
from mmssl.modalities.video.flow import chain_flows, clip_flows, to_gray
from mmssl.modalities.video.keys import CLIP


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` per row of ``[B, Z]`` -> ``[B]`` (closed form)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


@torch.no_grad()
def clip_trajectories(
    clip: Tensor, horizon: int, out_grid: tuple[int, int], flow_size: int | None = None, **flow_kwargs: Any
) -> Tensor:
    """Dense future trajectories of frame 0 of each clip, pooled onto ``out_grid`` cells.

    Args:
        clip: ``[B, T, 3, H, W]`` ImageNet-normalised clips, ``T >= horizon + 1``.
        horizon: K, the number of future frames followed.
        out_grid: ``(gh, gw)`` cells of the output.
        flow_size: the short side (pixels) the frames are resized to for the flow (None: as they are).
        flow_kwargs: passed to :func:`~mmssl.modalities.video.flow.optical_flow`.

    Returns:
        ``[B, K, 2, gh, gw]``: mean displacement (x, y) after 1..K frames of the points starting in
        each cell, in units of output cells.
    """
    b, t, _, h, w = clip.shape
    if t < horizon + 1:
        raise ValueError(f"future_cvae needs clips of at least horizon + 1 = {horizon + 1} frames, got {t}")
    gray = to_gray(clip[:, : horizon + 1])  # [B, K+1, 1, H, W]
    scale = flow_size / min(h, w) if flow_size else 1.0
    fh, fw = max(8, round(h * scale)), max(8, round(w * scale))
    if (fh, fw) != (h, w):
        gray = F.interpolate(gray.flatten(0, 1), size=(fh, fw), mode="area").view(b, horizon + 1, 1, fh, fw)
    traj = chain_flows(clip_flows(gray, **flow_kwargs))  # [B, K, 2, fh, fw] in flow pixels
    cells = F.adaptive_avg_pool2d(traj.flatten(0, 1), out_grid).view(b, horizon, 2, *out_grid)
    gh, gw = out_grid
    return cells / torch.tensor([fw / gw, fh / gh], device=clip.device).view(1, 1, 2, 1, 1)


class FutureCVAE(Method):
    """Walker et al. (2016): a conditional VAE forecasting dense trajectories from one frame (see the
    module docstring).

    ``encoder``: frame-grid video encoder (``[B, 3, H, W]`` -> tokens with a ``grid``); the image tower.
    Targets are Lucas-Kanade flow trajectories over the clip's next ``horizon`` frames (K; the clip
    needs ``horizon + 1`` frames), pooled onto an ``out_grid`` x ``out_grid`` grid (None: the
    encoder's grid). ``latent_dim``: size of z (Walker et al. use a small latent vector).
    ``hidden_dim``: width of the posterior / decoder towers. ``kl_weight``: beta on the KL (1 = ELBO).
    ``flow_size``: frame short side (pixels) for the flow (None: the clip's own size). Saves
    ``figures/future_cvae.png`` (measured vs sampled motion) after training. ``data`` (the run's
    bundle) is not used.
    """

    consumes = frozenset({CLIP})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        horizon: int = 4,
        latent_dim: int = 8,
        hidden_dim: int = 64,
        out_grid: int | None = 16,
        kl_weight: float = 1.0,
        flow_size: int | None = None,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.encoder = encoder
        self.horizon, self.latent_dim = horizon, latent_dim
        self.out_grid, self.kl_weight, self.flow_size = out_grid, kl_weight, flow_size
        d, c, k2 = encoder.out_dim, hidden_dim, 2 * horizon
        self.posterior = nn.Sequential(
            nn.Conv2d(d + k2, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, 2 * latent_dim),
        )
        self.dec_in = nn.Sequential(nn.Conv2d(d, c, 1), nn.ReLU(inplace=True))
        self.z_gain = nn.Linear(latent_dim, c)
        self.dec_mid = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))
        self.dec_out = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, k2, 1)
        )

    # ------------------------------------------------------------------ pieces
    def features(self, frames: Tensor) -> Tensor:
        """Image tower: ``[B, 3, H, W]`` -> ``[B, D, h, w]``."""
        return frame_feature_map(self.encoder, frames)

    def grid_for(self, fmap: Tensor) -> tuple[int, int]:
        return (self.out_grid, self.out_grid) if self.out_grid else tuple(fmap.shape[-2:])

    def encode_posterior(self, fmap: Tensor, traj: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z | X, Y)``: ``(mu, logvar)`` ``[B, Z]`` each, from features and ``[B, K, 2, gh, gw]``."""
        y = F.interpolate(traj.flatten(1, 2), size=fmap.shape[-2:], mode="area")
        mu, logvar = self.posterior(torch.cat([fmap, y.to(fmap.dtype)], dim=1)).float().chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)  # keeps exp(logvar) finite early in training

    def decode(self, fmap: Tensor, z: Tensor) -> Tensor:
        """``mu(X, z)``: features ``[B, D, h, w]``, ``z`` ``[B, Z]`` -> ``[B, K, 2, gh, gw]`` (cell units)."""
        x = self.dec_in(fmap) * self.z_gain(z.to(fmap.dtype))[:, :, None, None]
        x = F.interpolate(self.dec_mid(x), size=self.grid_for(fmap), mode="bilinear", align_corners=False)
        out = self.dec_out(x)
        return out.view(out.shape[0], self.horizon, 2, *out.shape[-2:])

    def targets(self, clip: Tensor, grid: tuple[int, int]) -> Tensor:
        return clip_trajectories(clip, self.horizon, grid, flow_size=self.flow_size)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        clip = batch[CLIP]  # [B, T, 3, H, W]
        fmap = self.features(clip[:, 0])
        traj = self.targets(clip, self.grid_for(fmap))
        mu, logvar = self.encode_posterior(fmap, traj)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation trick
        pred = self.decode(fmap, z).float()
        dims = traj[0].numel()
        sse = (pred - traj).pow(2).flatten(1).sum(dim=1)
        kl = gaussian_kl(mu, logvar)
        loss = (0.5 * sse + self.kl_weight * kl).mean() / dims
        with torch.no_grad():
            # Predicting "nothing moves", and the prior's mean future (z = 0), for comparison.
            prior_mean = self.decode(fmap, torch.zeros_like(mu)).float()
            logs = {
                "recon_mse": sse.mean() / dims,
                "kl": kl.mean(),
                "zero_motion_mse": traj.pow(2).mean(),
                "prior_mean_mse": (prior_mean - traj).pow(2).mean(),
            }
        return {"loss": loss, **{k: v.detach() for k, v in logs.items()}}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_futures(self, frames: Tensor, n: int, z: Tensor | None = None) -> Tensor:
        """``n`` futures per frame from the prior: ``[B, 3, H, W]`` -> ``[B, n, K, 2, gh, gw]``,
        displacements in input pixels. ``z`` ``[B, n, Z]`` overrides the draws from ``N(0, I)``."""
        fmap = self.features(frames)
        b = frames.shape[0]
        if z is None:
            z = torch.randn(b, n, self.latent_dim, device=frames.device)
        if z.shape != (b, n, self.latent_dim):
            raise ValueError(f"z must be [{b}, {n}, {self.latent_dim}], got {tuple(z.shape)}")
        rep = fmap.repeat_interleave(n, dim=0)
        out = self.decode(rep, z.reshape(b * n, -1)).float()
        gh, gw = out.shape[-2:]
        cell = torch.tensor([frames.shape[-1] / gw, frames.shape[-2] / gh], device=out.device)
        return (out * cell.view(1, 1, 2, 1, 1)).view(b, n, self.horizon, 2, gh, gw)

    @torch.no_grad()
    def true_futures(self, clip: Tensor) -> Tensor:
        """Flow trajectories of ``[B, T, 3, H, W]`` clips on the output grid, in input pixels."""
        fmap = self.features(clip[:, 0])
        gh, gw = self.grid_for(fmap)
        traj = self.targets(clip, (gh, gw))
        cell = torch.tensor([clip.shape[-1] / gw, clip.shape[-2] / gh], device=clip.device)
        return traj * cell.view(1, 1, 2, 1, 1)

    def save_figures(
        self,
        figures_dir: Path,
        data: DataBundle,
        device: torch.device,
        num_clips: int = 4,
        num_samples: int = 4,
    ) -> Path | None:
        """``future_cvae.png``: one row per held-out clip; first column the flow trajectories measured
        on the clip, then ``num_samples`` futures sampled from the prior, each drawn as arrows (the
        displacement after K frames, coloured by direction) over frame 0."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        dataset = data.eval_test if data.eval_test is not None else data.eval_train
        if dataset is None or len(dataset) == 0:
            return None
        clips = [dataset[i][INPUT] for i in range(min(num_clips, len(dataset)))]
        clips = torch.stack([c for c in clips if c.shape[0] > self.horizon]).to(device)
        if len(clips) == 0:
            return None
        with eval_mode(self):
            gen = torch.Generator(device="cpu").manual_seed(0)
            z = torch.randn(len(clips), num_samples, self.latent_dim, generator=gen).to(device)
            truth = self.true_futures(clips).cpu()
            samples = self.sample_futures(clips[:, 0], num_samples, z=z).cpu()
        images = to_unit_rgb(clips[:, 0].float()).permute(0, 2, 3, 1).cpu().numpy()
        h, w = images.shape[1:3]
        cols = 1 + num_samples
        fig, axes = plt.subplots(len(clips), cols, figsize=(2.2 * cols, 2.2 * len(clips)), squeeze=False)
        for r in range(len(clips)):
            fields = [truth[r, -1]] + [samples[r, s, -1] for s in range(num_samples)]
            for c, field in enumerate(fields):
                ax = axes[r][c]
                _draw_motion(ax, images[r], field, h, w)
                if r == 0:
                    ax.set_title("flow (truth)" if c == 0 else f"sample {c}", fontsize=8)
        fig.suptitle(f"future_cvae: displacement after {self.horizon} frames", fontsize=9)
        return save_figure(fig, Path(figures_dir) / "future_cvae.png", dpi=110)


def _draw_motion(ax: Any, image: Any, field: Tensor, h: int, w: int) -> None:
    """Arrows of a ``[2, gh, gw]`` displacement field (pixels) over an image, hue = direction."""
    gh, gw = field.shape[-2:]
    ys = (torch.arange(gh).float() + 0.5) * h / gh
    xs = (torch.arange(gw).float() + 0.5) * w / gw
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    u, v = field[0], field[1]
    angle = torch.atan2(v, u)
    ax.imshow(image)
    # Image y points down: invert v for matplotlib's quiver, and draw in data (pixel) units.
    ax.quiver(gx, gy, u, -v, angle, cmap="hsv", angles="xy", scale_units="xy", scale=1.0, width=0.006)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
