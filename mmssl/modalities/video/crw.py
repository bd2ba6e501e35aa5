"""Contrastive random walk, CRW (Jabri, Owens & Efros, "Space-Time Correspondence as a Contrastive
Random Walk", NeurIPS 2020).

A clip of ``T`` frames is turned into a space-time graph: each frame's nodes are L2-normalised
embeddings ``x_t [N, D]`` (of image patches, or of the cells of the frame's feature map), and edges
only join consecutive frames. A walker moves with the transition matrices

    A_t = softmax_row(x_t x_{t+1}^T / tau)          (Eq. 1; the backward step uses x_{t+1} x_t^T)

and the palindrome ``0 -> 1 -> ... -> k -> ... -> 1 -> 0`` has the cycle matrix

    P_k = A_0 A_1 ... A_{k-1} · Ā_{k-1} ... Ā_1 Ā_0 ,   Ā_t = softmax_row(x_{t+1} x_t^T / tau).

The walker must come back where it started: the loss is the cross-entropy ``-log P_k[i, i]``
averaged over the nodes ``i`` and over the lengths ``k = min_walk_length .. T-1`` (Eq. 4, 5). Since
every path is a chain of softmaxes over nodes, each step is a contrastive choice among all nodes of
the next frame, and the only way to return reliably is to match each node with its own future self.
*Edge dropout* (Sec. 3.3) sets a fraction of the affinities to -inf before each softmax (independent
draws for every matrix), so the walker must find several good paths and not rely on a single
shortcut; it is what makes object-level (not only pixel-level) correspondence emerge.

Nodes (``nodes=``): ``"patches"`` as in the paper (overlapping ``patch_size`` patches at
``patch_stride``, each shifted by up to ``patch_jitter`` pixels at random during training and encoded
separately; the encoder's map is average-pooled) or ``"grid"`` (every cell of the whole frame's
feature map is a node: cheaper, but cells see their neighbours, and the network may learn position
from padding). A linear head maps encoder features to ``embed_dim`` (128) before normalisation; the
head is dropped at evaluation (label propagation uses the encoder's maps, L2-normalised).

All affinity and softmax arithmetic runs in float32 (the logits reach ``1 / tau`` ~ 14 and products
of up to ``2(T-1)`` stochastic matrices lose precision in bf16).

Deliberate differences from ``ajabri/videowalk`` (``model.py``): the reference code starts at walks
of length 2 (``min_walk_length=2`` reproduces it) and applies the backward step's dropout on top of
the forward one in place; here each matrix gets its own independent dropout mask.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.modalities.video.encoders import frame_feature_map
from mmssl.modalities.video.keys import CLIP

EPS = 1e-20
_DROPPED = -1e9  # a finite "-inf": a row that lost every edge becomes uniform instead of NaN


def transition_matrix(affinity: Tensor, temperature: float, edge_dropout: float = 0.0) -> Tensor:
    """Row-stochastic ``softmax(affinity / temperature)`` over the last dim, in float32.

    ``edge_dropout``: probability that each affinity is removed (set to -inf) before the softmax.
    """
    logits = affinity.float() / temperature
    if edge_dropout > 0:
        logits = logits.masked_fill(torch.rand_like(logits) < edge_dropout, _DROPPED)
    return torch.softmax(logits, dim=-1)


def palindrome_walks(
    nodes: Tensor, temperature: float, edge_dropout: float = 0.0, min_walk_length: int = 1
) -> list[Tensor]:
    """Cycle matrices ``P_k [B, N, N]`` for ``k = min_walk_length .. T-1`` from ``nodes [B, T, N, D]``.

    ``P_k[b, i, j]``: probability that a walker starting at node ``i`` of frame 0 goes to frame ``k``
    and back and ends at node ``j``. Rows sum to one.
    """
    if nodes.dim() != 4:
        raise ValueError(f"nodes must be [B, T, N, D], got {tuple(nodes.shape)}")
    t_len = nodes.shape[1]
    if t_len < 2:
        raise ValueError(f"a random walk needs at least 2 frames, got {t_len}")
    x = nodes.float()
    affinity = torch.einsum("btnd,btmd->btnm", x[:, :-1], x[:, 1:])  # [B, T-1, N, N]
    forward = [transition_matrix(affinity[:, t], temperature, edge_dropout) for t in range(t_len - 1)]
    backward = [
        transition_matrix(affinity[:, t].transpose(-1, -2), temperature, edge_dropout)
        for t in range(t_len - 1)
    ]
    walks = []
    there = None  # A_0 ... A_{k-1}
    back = None  # Ā_{k-1} ... Ā_0
    for k in range(1, t_len):
        there = forward[0] if there is None else there @ forward[k - 1]
        back = backward[0] if back is None else backward[k - 1] @ back
        if k >= min_walk_length:
            walks.append(there @ back)
    return walks


def cycle_loss(walks: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over walks of the cross-entropy ``-log P_k[i, i]`` (target: return to the start node).

    Returns the loss and diagnostics: ``acc`` (fraction of nodes whose most likely end point is
    their start, longest walk) and ``xent_first`` / ``xent_last`` (shortest and longest walk).
    """
    if not walks:
        raise ValueError("no walks: clip too short for min_walk_length")
    losses = []
    for p in walks:
        b, n, _ = p.shape
        target = torch.arange(n, device=p.device).repeat(b)
        losses.append(F.nll_loss(torch.log(p + EPS).flatten(0, 1), target))
    last = walks[-1]
    target = torch.arange(last.shape[-1], device=last.device)
    acc = (last.argmax(dim=-1) == target).float().mean()
    logs = {"acc": acc.detach(), "xent_first": losses[0].detach(), "xent_last": losses[-1].detach()}
    return torch.stack(losses).mean(), logs


def extract_patches(
    frames: Tensor, size: int, stride: int, jitter: int = 0
) -> tuple[Tensor, tuple[int, int]]:
    """Overlapping square patches of each frame ``[F, C, H, W]`` -> ``[F, N, C, size, size]`` and the
    patch grid ``(ny, nx)``; each patch is shifted by a random integer in ``[-jitter, jitter]`` per
    axis (independently per patch and frame), clamped to stay inside the frame."""
    n_frames, c, h, w = frames.shape
    if size > min(h, w):
        raise ValueError(f"patch_size {size} exceeds the frame size {h}x{w}")
    ny, nx = (h - size) // stride + 1, (w - size) // stride + 1
    dev = frames.device
    oy = (torch.arange(ny, device=dev) * stride).view(1, ny, 1).expand(n_frames, ny, nx)
    ox = (torch.arange(nx, device=dev) * stride).view(1, 1, nx).expand(n_frames, ny, nx)
    if jitter > 0:
        oy = (oy + torch.randint(-jitter, jitter + 1, oy.shape, device=dev)).clamp(0, h - size)
        ox = (ox + torch.randint(-jitter, jitter + 1, ox.shape, device=dev)).clamp(0, w - size)
    offsets = torch.arange(size, device=dev)
    rows = oy.reshape(n_frames, -1, 1) + offsets  # [F, N, size]
    cols = ox.reshape(n_frames, -1, 1) + offsets
    fidx = torch.arange(n_frames, device=dev).view(-1, 1, 1, 1)
    # Advanced indices around a slice: the result is [F, N, size, size, C].
    patches = frames[fidx, :, rows[:, :, :, None], cols[:, :, None, :]]
    return patches.permute(0, 1, 4, 2, 3), (ny, nx)


class ContrastiveRandomWalk(Method):
    """Contrastive random walk (Jabri et al. 2020) on clips ``batch["clip"] [B, T>=2, 3, H, W]``:
    palindrome walks of every length 1..T-1 must return to their start node (see the module docstring).

    ``temperature``: tau of the transition softmax (paper 0.05-0.07).
    ``edge_dropout``: fraction of edges removed before each softmax (paper 0.1).
    ``embed_dim``: width of the linear head before L2 normalisation (paper 128).
    ``nodes``: ``"patches"`` (paper: 64-px patches at stride 32 on 256-px frames, jittered) or
    ``"grid"`` (cells of the frame's feature map). ``patch_size`` / ``patch_stride`` /
    ``patch_jitter``: the patch grid in pixels (``patches`` only).
    ``min_walk_length``: shortest palindrome half-length (2 reproduces the reference code).
    ``data`` (the run's bundle) is not used.
    """

    consumes = frozenset({CLIP})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        temperature: float = 0.07,
        edge_dropout: float = 0.1,
        embed_dim: int = 128,
        nodes: str = "patches",
        patch_size: int = 64,
        patch_stride: int = 32,
        patch_jitter: int = 8,
        min_walk_length: int = 1,
    ) -> None:
        super().__init__()
        if nodes not in ("patches", "grid"):
            raise ValueError(f"nodes must be 'patches' or 'grid', got '{nodes}'")
        if not 0 <= edge_dropout < 1:
            raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, embed_dim)
        self.temperature = temperature
        self.edge_dropout = edge_dropout
        self.nodes = nodes
        self.patch_size, self.patch_stride, self.patch_jitter = patch_size, patch_stride, patch_jitter
        self.min_walk_length = min_walk_length

    def embed_nodes(self, clip: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` -> L2-normalised node embeddings ``[B, T, N, embed_dim]``."""
        b, t = clip.shape[:2]
        frames = clip.flatten(0, 1)
        if self.nodes == "patches":
            jitter = self.patch_jitter if self.training else 0
            patches, _ = extract_patches(frames, self.patch_size, self.patch_stride, jitter)
            n = patches.shape[1]
            fmap = frame_feature_map(self.encoder, patches.flatten(0, 1))  # [B*T*N, C, h, w]
            feats = fmap.mean(dim=(2, 3)).reshape(b * t, n, -1)
        else:
            fmap = frame_feature_map(self.encoder, frames)  # [B*T, C, h, w]
            feats = fmap.flatten(2).transpose(1, 2)
        emb = self.head(feats)
        return F.normalize(emb.float(), dim=-1).reshape(b, t, emb.shape[1], -1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        clip = batch[CLIP]
        if clip.dim() != 5 or clip.shape[1] < 2:
            raise ValueError(f"CRW needs clips [B, T>=2, 3, H, W], got {tuple(clip.shape)}")
        nodes = self.embed_nodes(clip)
        with torch.autocast(device_type=clip.device.type, enabled=False):
            walks = palindrome_walks(
                nodes,
                self.temperature,
                self.edge_dropout if self.training else 0.0,
                self.min_walk_length,
            )
            loss, logs = cycle_loss(walks)
        logs["chance_xent"] = torch.tensor(math.log(nodes.shape[2]))
        return {"loss": loss, **logs}


__all__ = [
    "ContrastiveRandomWalk",
    "cycle_loss",
    "extract_patches",
    "palindrome_walks",
    "transition_matrix",
]
