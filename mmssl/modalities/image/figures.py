"""What image methods' ``save_figures`` share: the evaluation images to show and a labelled grid of image
rows (written with :func:`mmssl.figures.save_figure`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from mmssl.data import DataBundle
from mmssl.figures import save_figure


def figure_inputs(data: DataBundle, num_images: int, device: torch.device) -> Tensor | None:
    """The first ``num_images`` evaluation inputs (``eval_test``, else ``eval_train``) as one batch on
    ``device``; None when the bundle has none."""
    dataset = data.eval_test if data.eval_test is not None else data.eval_train
    if dataset is None or len(dataset) == 0:
        return None
    n = min(num_images, len(dataset))
    return torch.stack([dataset[i]["input"] for i in range(n)]).to(device)


def save_image_rows(rows: list[Tensor], labels: list[str], path: Path, title: str) -> Path:
    """One row of images ``[n, 3, H, W]`` (values in [0, 1]) per entry of ``rows``, labelled, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows) + 0.4), squeeze=False)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(row[c].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
