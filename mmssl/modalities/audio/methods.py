"""Ambient sound as supervision (Owens, Wu, McDermott, Freeman & Torralba, ECCV 2016).

A visual network sees one frame of a video and predicts a summary of the clip's sound: the k-means
cluster of its sound-texture statistics (``target="clusters"``, cross-entropy over K clusters, the
paper's main model) or the signs of its top PCA projections (``target="binary"``, a multi-label
task with binary cross-entropy over the bits)::

    clusters:  L = -1/B sum_i log softmax(h(f(x_i)))_{c_i}
    binary:    L = 1/(B n) sum_i sum_j BCE(sigmoid(h(f(x_i))_j), b_ij)

``x_i`` is a frame of clip ``i``, ``f`` the image encoder (downstream representation), ``h`` a small
classifier head (dropped after training). Targets (:mod:`~mmssl.modalities.audio.clusters`) are
computed once from the whole audio of every training clip before training, so the visual network
never hears anything: sound only decides which pictures belong together. Sound statistics carry
scene information (rain, wind, engines), and predicting them makes the network learn visual
features of scenes and objects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.heads import ProjectionHead
from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.data.keys import IMAGE, INDEX
from mmssl.errors import DataError
from mmssl.eval.context import EvalContext
from mmssl.figures import save_figure
from mmssl.modalities.audio.av_clips import TrainingClips
from mmssl.modalities.audio.clusters import TARGET_KINDS, ambient_targets
from mmssl.modalities.audio.texture_stats import TextureConfig

log = logging.getLogger(__name__)


class AmbientSoundPrediction(Method):
    """Predict each clip's sound target from one of its frames (see the module docstring).

    Args:
        encoder: image backbone returning ``{"global": [B, D]}``.
        targets: ``int64 [N]`` cluster ids or ``float32 [N, bits]`` codes, indexed by the pretraining
            item's ``index``; stored as a buffer (saved with checkpoints).
        kind: ``clusters`` or ``binary``. num_outputs: clusters or bits.
        head_hidden / head_layers: the classifier (``head_layers=1``: linear).
    """

    consumes = frozenset({IMAGE, INDEX})

    def __init__(
        self,
        encoder: nn.Module,
        targets: Tensor,
        kind: str,
        num_outputs: int,
        *,
        head_hidden: int = 256,
        head_layers: int = 2,
        target_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if kind not in TARGET_KINDS:
            raise ValueError(f"unknown target kind '{kind}'; choose one of {', '.join(TARGET_KINDS)}")
        self.encoder, self.kind, self.num_outputs = encoder, kind, int(num_outputs)
        self.head = ProjectionHead(encoder.out_dim, head_hidden, self.num_outputs, num_layers=head_layers)
        self.register_buffer("targets", targets.clone())
        self.target_info = dict(target_info or {})

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        logits = self.head(self.encoder(batch[IMAGE])["global"]).float()
        target = self.targets[batch[INDEX].to(self.targets.device)]
        if self.kind == "clusters":
            loss = F.cross_entropy(logits, target)
            acc = (logits.argmax(dim=1) == target).float().mean()
            return {"loss": loss, "acc": acc.detach()}
        loss = F.binary_cross_entropy_with_logits(logits, target)
        bit_acc = ((logits > 0).float() == target).float().mean()
        return {"loss": loss, "bit_acc": bit_acc.detach()}

    def save_figures(self, figures_dir: Path, data: DataBundle, device: torch.device) -> Path | None:
        """``ambient_targets.png``: how the sound targets spread over the (never used) class labels."""
        found = data.find_extra(TrainingClips)
        if found is None or self.kind != "clusters":
            return None
        clips = found.clips
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = torch.as_tensor(clips.targets)
        num_classes = int(labels.max()) + 1
        table = torch.zeros(num_classes, self.num_outputs)
        table.index_put_((labels, self.targets.cpu()), torch.ones(len(labels)), accumulate=True)
        order = table.argmax(dim=0).argsort(stable=True)  # clusters grouped by their majority class
        fig, ax = plt.subplots(figsize=(max(6, self.num_outputs * 0.25), 3.5))
        ax.imshow(table[:, order].numpy(), aspect="auto", cmap="viridis")
        names = clips.class_names or [str(i) for i in range(num_classes)]
        ax.set_yticks(range(num_classes), names, fontsize=7)
        ax.set_xlabel("sound cluster (sorted by majority class)")
        nmi = self.target_info.get("nmi_vs_labels")
        ax.set_title("clips per (class, sound cluster)" + (f"; NMI {nmi:.2f}" if nmi is not None else ""))
        return save_figure(fig, Path(figures_dir) / "ambient_targets.png")


def ambient_sound(
    encoder: nn.Module,
    data: DataBundle,
    target: str = "clusters",
    num_clusters: int = 30,
    num_bits: int = 30,
    kmeans_seed: int = 0,
    num_bands: int = 30,
    envelope_rate: int = 400,
    compression: float = 0.3,
    num_mod_bands: int = 20,
    head_hidden: int = 256,
    head_layers: int = 2,
    cache: bool = True,
) -> AmbientSoundPrediction:
    """Owens et al. 2016: an image network predicts its clip's sound-texture target from one frame.

    Needs a paired dataset (``procedural_audio_visual`` / ``paired_video_audio``: items with
    ``image`` and ``index``, and the ``TrainingClips`` extra with the whole audio of each clip).
    ``target``: ``clusters`` (k-means on the statistics, ``num_clusters``-way cross-entropy) or
    ``binary`` (signs of the top ``num_bits`` PCA projections, BCE). ``kmeans_seed`` fixes k-means / PCA.
    ``num_bands``, ``envelope_rate``, ``compression``, ``num_mod_bands``: the statistics
    (:class:`~mmssl.modalities.audio.texture_stats.TextureConfig`). ``head_hidden`` / ``head_layers``:
    the classifier on the encoder's global feature. ``cache``: keep the statistics on disk.
    """
    found = data.find_extra(TrainingClips)
    if found is None:
        raise DataError(
            f"ambient_sound needs a paired video+audio dataset whose bundle has the TrainingClips extra "
            f"(procedural_audio_visual or paired_video_audio); dataset '{data.name or '?'}' has none"
        )
    clips = found.clips
    if len(clips) != len(data.pretrain):
        raise DataError(f"pretrain has {len(data.pretrain)} items but TrainingClips {len(clips)} clips")
    config = TextureConfig(
        num_bands=num_bands, envelope_rate=envelope_rate, compression=compression, num_mod_bands=num_mod_bands
    )
    result = ambient_targets(
        clips,
        kind=target,
        num_clusters=num_clusters,
        num_bits=num_bits,
        seed=kmeans_seed,
        config=config,
        labels=list(clips.targets),
        cache=cache,
    )
    log.info("ambient-sound targets (%s): %s", target, result.info)
    return AmbientSoundPrediction(
        encoder,
        result.targets,
        target,
        result.num_outputs,
        head_hidden=head_hidden,
        head_layers=head_layers,
        target_info=result.info,
    )


def ambient_targets_evaluator(
    encoder: nn.Module,
    data: DataBundle,
    ctx: EvalContext,
) -> dict[str, float]:
    """How much class structure the sound targets carry (the same for the trained and the baseline
    method): ``target_nmi`` = normalised mutual information of clusters and class labels, which the
    method never sees. Only for ``ambient_sound`` with ``target: clusters``."""
    info = getattr(ctx.method, "target_info", None)
    if info is None:
        raise ValueError("evaluator 'ambient_targets' needs the ambient_sound method")
    return {"target_nmi": float(info["nmi_vs_labels"])} if "nmi_vs_labels" in info else {}
