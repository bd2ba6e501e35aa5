"""Dense Predictive Coding (Han, Xie & Zisserman, ICCVW 2019): predict the features of future blocks.

A clip of ``num_blocks * block_len`` frames is cut into ``N = num_blocks`` blocks of ``block_len``
consecutive frames. Each block becomes a spatial feature grid ``z_t`` ``[D, h, w]`` (the encoder's
per-frame feature maps averaged over the block's frames, like DPC's temporal pooling after its
3D ResNet). The first ``N - P`` blocks are aggregated by a ConvGRU (DPC Sec. 3.1, eq. 1-3)::

    c_t = g(z_1, ..., z_t)                      ConvGRU, 1x1 kernels, hidden size D
    z^_{t+1} = phi(c_t)                         phi: 1x1 conv - ReLU - 1x1 conv
    c_{t+1} = g(c_t, z^_{t+1}) ...              predictions are fed back: P steps predicted in turn

and every predicted cell is scored against every true cell of every predicted step of every clip in
the batch (DPC eq. 4, a dense InfoNCE)::

    L = - sum_{i,k} log  exp(s(z^_{i,k}, z_{i,k})) / sum_{j,m} exp(s(z^_{i,k}, z_{j,m}))

``i, j`` run over (clip, spatial position) and ``k, m`` over the predicted steps; the positive is the
true block feature at the same clip, step and position; the negatives are the other positions of
the same block (spatial negatives), the same position at other steps (temporal negatives) and all
cells of other clips (easy negatives). This is :func:`mmssl.core.losses.info_nce` with in-batch
negatives over the ``B * P * h * w`` flattened cells. DPC scores with raw dot products; here ``s`` is
cosine similarity / ``temperature`` (the form the same authors use in MemDPC / CoCLR), which keeps
the logits bounded so the loss cannot be lowered by inflating feature norms.

Both sides get gradients (DPC does not stop the gradient on the targets). ``self.encoder`` is the
evaluated representation; the ConvGRU and ``phi`` are dropped after pretraining.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmssl.core.losses import info_nce
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.modalities.video.encoders import frame_feature_map
from mmssl.modalities.video.keys import CLIP


class ConvGRUCell(nn.Module):
    """One ConvGRU step (Ballas et al. 2016): the GRU's gates as convolutions over a feature grid::

    r = sigmoid(W_r * [x, h]),  u = sigmoid(W_u * [x, h]),  n = tanh(W_n * [x, r . h])
    h' = (1 - u) . h + u . n
    """

    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int = 1) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(input_dim + hidden_dim, 2 * hidden_dim, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(input_dim + hidden_dim, hidden_dim, kernel_size, padding=pad)
        for conv in (self.gates, self.candidate):
            nn.init.orthogonal_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[-2:])
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        cand = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * cand


def dense_predictive_loss(pred: Tensor, target: Tensor, temperature: float = 0.1) -> tuple[Tensor, Tensor]:
    """DPC's dense InfoNCE over all (clip, step, position) cells; ``(loss, top-1 accuracy)``.

    ``pred``, ``target``: ``[B, P, D, h, w]``. Row ``(b, k, y, x)`` of the predictions has its positive
    at the same index of the targets; every other target cell of the batch is a negative.
    """
    if pred.shape != target.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ")
    d = pred.shape[2]
    q = pred.permute(0, 1, 3, 4, 2).reshape(-1, d)  # [B*P*h*w, D], rows (clip, step, y, x)
    k = target.permute(0, 1, 3, 4, 2).reshape(-1, d)
    loss = info_nce(q, k, temperature=temperature)
    with torch.no_grad():
        sims = nn.functional.normalize(q.float(), dim=1) @ nn.functional.normalize(k.float(), dim=1).t()
        acc = (sims.argmax(dim=1) == torch.arange(len(q), device=q.device)).float().mean()
    return loss, acc


class DensePredictiveCoding(Method):
    """Dense Predictive Coding (Han et al. 2019): a ConvGRU over past block features predicts the
    next ``pred_steps`` blocks' feature grids; dense InfoNCE against all cells of the batch (see the
    module docstring).

    ``encoder``: frame-grid video encoder (``feature_map`` or tokens + ``grid``), ``out_dim`` D.
    ``num_blocks``: N blocks per clip; ``block_len``: frames per block (the clip must have
    ``num_blocks * block_len`` frames, ``data.clip_len``). ``pred_steps``: P future blocks predicted from
    the first N - P. ``hidden_dim``: ConvGRU state (None: encoder ``out_dim``, as DPC). ``kernel_size``:
    ConvGRU kernel (1 as DPC). ``temperature``: of the cosine-similarity InfoNCE. ``data`` (the run's
    bundle) is not used.
    """

    consumes = frozenset({CLIP})

    def __init__(
        self,
        encoder: nn.Module,
        data: DataBundle | None = None,
        *,
        num_blocks: int = 4,
        block_len: int = 2,
        pred_steps: int = 2,
        hidden_dim: int | None = None,
        kernel_size: int = 1,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if not 1 <= pred_steps < num_blocks:
            raise ValueError(f"pred_steps must be in [1, num_blocks - 1], got {pred_steps} of {num_blocks}")
        self.encoder = encoder
        self.num_blocks, self.block_len, self.pred_steps = num_blocks, block_len, pred_steps
        self.temperature = temperature
        d = encoder.out_dim
        hidden = hidden_dim or d
        self.aggregator = ConvGRUCell(d, hidden, kernel_size)
        self.predictor = nn.Sequential(nn.Conv2d(hidden, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))

    def block_features(self, clip: Tensor) -> Tensor:
        """``[B, N * L, 3, H, W]`` -> ``[B, N, D, h, w]``: each block's frame feature maps, averaged."""
        b, t = clip.shape[:2]
        n, length = self.num_blocks, self.block_len
        if t != n * length:
            raise ValueError(
                f"dpc needs clips of num_blocks * block_len = {n} * {length} = {n * length} frames "
                f"(data.clip_len), got {t}"
            )
        fmap = frame_feature_map(self.encoder, clip.flatten(0, 1))  # [B*T, D, h, w]
        return fmap.view(b, n, length, *fmap.shape[1:]).mean(dim=2)

    def predict(self, feats: Tensor) -> Tensor:
        """Aggregate the first N - P blocks ``[B, N, D, h, w]``; predict the last P -> ``[B, P, D, h, w]``."""
        h = None
        for t in range(self.num_blocks - self.pred_steps):
            h = self.aggregator(feats[:, t], h)
        preds = []
        for _ in range(self.pred_steps):
            p = self.predictor(h)
            preds.append(p)
            h = self.aggregator(p, h)  # the prediction stands in for the unseen block
        return torch.stack(preds, dim=1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        feats = self.block_features(batch[CLIP])
        pred = self.predict(feats)
        loss, acc = dense_predictive_loss(pred, feats[:, -self.pred_steps :], self.temperature)
        return {"loss": loss, "acc": acc}
