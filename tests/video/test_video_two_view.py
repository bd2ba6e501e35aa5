"""The shared two-view core on video: the same SimCLR / MoCo / BYOL objects give the same loss on clips as
on images when the clip encoder gives the same embeddings, and that loss is the paper's formula."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mmssl.core.methods.byol import BYOL
from mmssl.core.methods.moco import MoCo
from mmssl.core.methods.simclr import SimCLR
from mmssl.data.keys import VIEWS
from mmssl.modalities.video.encoders import video_cnn


def still_clips(images: torch.Tensor, num_frames: int = 3) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, T, 3, H, W]``: every frame the image. The frame-grid encoder's clip
    embedding (mean over frames and cells) of such a clip is the image's embedding."""
    return images.unsqueeze(1).expand(-1, num_frames, -1, -1, -1).contiguous()


def build(kind: str):
    encoder = video_cnn(widths=(8, 16), stride=4)
    if kind == "simclr":
        return SimCLR(encoder, temperature=0.3, projector_hidden=32, projector_dim=8)
    if kind == "moco":
        return MoCo(encoder, negatives="batch", temperature=0.2, projector_hidden=32, projector_dim=8)
    return BYOL(encoder, projector_hidden=32, projector_dim=8, predictor_hidden=32)


def nt_xent_by_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR eq. 1 averaged over the 2N anchors, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        sims = [float(z[i] @ z[k]) / t for k in range(2 * n)]
        total += -sims[positive] + math.log(sum(math.exp(s) for k, s in enumerate(sims) if k != i))
    return torch.tensor(total / (2 * n))


@pytest.mark.parametrize("kind", ["simclr", "moco", "byol"])
def test_same_loss_on_clips_as_on_images_for_identical_embeddings(kind):
    torch.manual_seed(0)
    method = build(kind)
    images = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    clips = [still_clips(x) for x in images]
    as_video = copy.deepcopy(method)  # same weights (and target network), separate BN running stats
    with torch.no_grad():
        emb_image = method.encoder(images[0])["global"]
        emb_video = as_video.encoder(clips[0])["global"]
    torch.testing.assert_close(emb_video, emb_image, rtol=1e-4, atol=1e-5)  # identical embeddings
    loss_image = method({VIEWS: images})["loss"]
    loss_video = as_video({VIEWS: clips})["loss"]
    assert torch.isfinite(loss_video)
    torch.testing.assert_close(loss_video, loss_image, rtol=1e-4, atol=1e-5)
    loss_video.backward()
    assert all(p.grad is not None for p in as_video.encoder.parameters())


def test_simclr_loss_on_clips_is_nt_xent_of_the_clip_projections():
    torch.manual_seed(1)
    method = build("simclr")
    clips = [torch.randn(5, 4, 3, 16, 16), torch.randn(5, 4, 3, 16, 16)]
    loss = method({VIEWS: clips})["loss"]
    with torch.no_grad():
        z1, z2 = (method.projector(method.encoder(c)["global"]) for c in clips)
    torch.testing.assert_close(loss.detach(), nt_xent_by_loop(z1, z2, 0.3), rtol=1e-4, atol=1e-5)


def test_byol_loss_on_clips_is_two_minus_two_cosine_against_the_target():
    torch.manual_seed(2)
    method = build("byol")
    clips = [torch.randn(4, 2, 3, 16, 16), torch.randn(4, 2, 3, 16, 16)]
    loss = method({VIEWS: clips})["loss"]
    with torch.no_grad():
        p1, p2 = (method.predictor(method.projector(method.encoder(c)["global"])) for c in clips)
        t1, t2 = (method.teacher(c) for c in clips)
    expected = 0.5 * (
        (2 - 2 * F.cosine_similarity(p1, t2)).mean() + (2 - 2 * F.cosine_similarity(p2, t1)).mean()
    )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
