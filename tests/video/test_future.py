"""Future prediction: Walker et al.'s trajectory cVAE and Dense Predictive Coding."""

from __future__ import annotations

import math

import pytest
import torch

from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.modalities.video.dpc import DensePredictiveCoding, dense_predictive_loss
from mmssl.modalities.video.encoders import video_cnn
from mmssl.modalities.video.future_cvae import FutureCVAE, clip_trajectories, gaussian_kl
from mmssl.options import option_names
from mmssl.registry import METHODS

SIZE = 32


def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return video_cnn(widths=(8, 16), stride=4)  # 32 px -> 8 x 8 grid, D = 16


def translating_clip(frames: int, dx: float, dy: float, phase: float = 0.0) -> torch.Tensor:
    """``[T, 3, S, S]`` ImageNet-normalised clip of an analytic texture moving (dx, dy) per frame."""
    ys, xs = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    out = []
    for t in range(frames):
        x, y = xs - dx * t, ys - dy * t
        g = 0.5 + 0.2 * torch.sin(0.5 * x + 0.3 * y + phase) + 0.2 * torch.cos(0.35 * x - 0.45 * y)
        rgb = torch.stack([g, 0.8 * g + 0.1, 1.0 - g])
        out.append(
            (rgb - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        )
    return torch.stack(out)


# ---------------------------------------------------------------------------------------- cVAE


def test_gaussian_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(8), torch.ones(8))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-5)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0  # q = prior


def test_gaussian_kl_matches_monte_carlo_estimate() -> None:
    # KL = E_q[log q(z) - log p(z)], estimated from samples: an independent route to the same value.
    torch.manual_seed(1)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.4, 0.0]])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    z = q.sample((200_000,))
    estimate = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert math.isclose(gaussian_kl(mu, logvar).item(), estimate.item(), abs_tol=0.02)


def test_clip_trajectories_recover_translation_in_cell_units() -> None:
    dx, dy = 1.0, -0.5  # pixels per frame
    clip = translating_clip(4, dx, dy).unsqueeze(0)
    traj = clip_trajectories(clip, horizon=3, out_grid=(4, 4), flow_size=SIZE)
    assert traj.shape == (1, 3, 2, 4, 4)
    cell = SIZE / 4  # 8 px per output cell
    inner = traj[0, :, :, 1:3, 1:3].mean(dim=(-1, -2))  # border cells see texture enter / leave
    expected = torch.tensor([[dx * k / cell, dy * k / cell] for k in (1, 2, 3)])
    assert torch.allclose(inner, expected, atol=0.03), inner


def test_clip_trajectories_need_enough_frames() -> None:
    with pytest.raises(ValueError, match="horizon"):
        clip_trajectories(torch.zeros(1, 3, 3, SIZE, SIZE), horizon=3, out_grid=(4, 4))


def test_cvae_forward_and_sample_shapes() -> None:
    model = FutureCVAE(tiny_encoder(), horizon=3, latent_dim=4, hidden_dim=16, out_grid=8, flow_size=SIZE)
    clip = torch.stack([translating_clip(4, 1.0, 0.0), translating_clip(4, 0.0, 1.0, phase=1.0)])
    out = model({"clip": clip})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert {"recon_mse", "kl", "zero_motion_mse", "prior_mean_mse"} <= set(out)
    out["loss"].backward()
    assert model.encoder.features[0].weight.grad.abs().sum() > 0  # the image tower learns
    model.eval()
    futures = model.sample_futures(clip[:, 0], 5)
    assert futures.shape == (2, 5, 3, 2, 8, 8)
    assert model.true_futures(clip).shape == (2, 3, 2, 8, 8)


def test_sampled_futures_differ_for_different_z_and_repeat_for_the_same_z() -> None:
    model = FutureCVAE(tiny_encoder(), horizon=2, latent_dim=4, hidden_dim=16, out_grid=None).eval()
    frames = translating_clip(1, 0.0, 0.0).expand(2, -1, -1, -1)  # the same frame twice
    z = torch.randn(2, 2, 4)
    z[1] = z[0]  # second frame: the same two latents as the first
    futures = model.sample_futures(frames, 2, z=z)
    assert futures.shape == (2, 2, 2, 2, 8, 8)
    assert (futures[0, 0] - futures[0, 1]).abs().max() > 1e-3  # different z -> different future
    assert torch.allclose(futures[0], futures[1], atol=1e-5)  # same frame, same z -> same future
    with pytest.raises(ValueError, match="z must be"):
        model.sample_futures(frames, 3, z=z)


def test_cvae_loss_decreases_when_overfitting_two_clips() -> None:
    torch.manual_seed(0)
    model = FutureCVAE(tiny_encoder(), horizon=2, latent_dim=4, hidden_dim=16, out_grid=8, flow_size=SIZE)
    clip = torch.stack([translating_clip(3, 2.0, 0.0), translating_clip(3, -2.0, 1.0, phase=2.0)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        out = model({"clip": clip})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert sum(losses[-10:]) / 10 < 0.4 * sum(losses[:5]) / 5, losses[::5]
    with torch.no_grad():  # the posterior mean's future fits the measured motion
        fmap = model.features(clip[:, 0])
        traj = model.targets(clip, (8, 8))
        mu, _ = model.encode_posterior(fmap, traj)
        fit = (model.decode(fmap, mu) - traj).pow(2).mean()
    assert fit < 0.25 * traj.pow(2).mean()  # "nothing moves" would score traj^2


def test_cvae_loss_is_the_negative_elbo_per_dimension() -> None:
    # Recompute the loss by hand with the same noise draw: 0.5 * SSE + beta * KL, over the dims.
    model = FutureCVAE(tiny_encoder(), horizon=2, latent_dim=4, hidden_dim=16, out_grid=4, kl_weight=0.3)
    clip = torch.stack([translating_clip(3, 1.0, 0.0), translating_clip(3, 0.0, -1.0)])
    model.eval()  # BatchNorm in eval mode: the second pass sees the same statistics
    torch.manual_seed(5)
    loss = model({"clip": clip})["loss"]
    torch.manual_seed(5)
    fmap = model.features(clip[:, 0])
    traj = model.targets(clip, (4, 4))
    mu, logvar = model.encode_posterior(fmap, traj)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    sse = ((model.decode(fmap, z) - traj) ** 2).sum(dim=(1, 2, 3, 4))
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)
    ).sum(dim=1)
    expected = (0.5 * sse + 0.3 * kl).mean() / traj[0].numel()
    assert torch.allclose(loss, expected, rtol=1e-4)


# ----------------------------------------------------------------------------------------- DPC


def naive_dense_nce(pred: torch.Tensor, target: torch.Tensor, t: float) -> tuple[float, float]:
    """Loop over every predicted cell; cosine similarity against every target cell of the batch."""
    b, p, _, h, w = pred.shape
    cells = [(i, k, y, x) for i in range(b) for k in range(p) for y in range(h) for x in range(w)]
    keys = [torch.nn.functional.normalize(target[i, k, :, y, x], dim=0) for i, k, y, x in cells]
    total, correct = 0.0, 0
    for row, (i, k, y, x) in enumerate(cells):
        q = torch.nn.functional.normalize(pred[i, k, :, y, x], dim=0)
        logits = torch.stack([q @ key / t for key in keys])
        total -= (logits[row] - torch.logsumexp(logits, dim=0)).item()
        correct += int(logits.argmax().item() == row)
    return total / len(cells), correct / len(cells)


def test_dense_predictive_loss_matches_naive_loop() -> None:
    torch.manual_seed(0)
    target = torch.randn(2, 2, 6, 2, 3)
    pred = target + 0.8 * torch.randn_like(target)
    loss, acc = dense_predictive_loss(pred, target, temperature=0.2)
    expected_loss, expected_acc = naive_dense_nce(pred, target, 0.2)
    assert math.isclose(loss.item(), expected_loss, rel_tol=1e-5)
    assert math.isclose(acc.item(), expected_acc, abs_tol=1e-6)


def test_dense_predictive_loss_is_lowest_for_exact_predictions() -> None:
    torch.manual_seed(0)
    b, p, d, h, w = 2, 2, 16, 2, 2  # 16 cells, 16 dims: targets can be orthonormal
    basis = torch.linalg.qr(torch.randn(d, d))[0].t()  # rows orthonormal
    target = basis.view(b, p, h, w, d).permute(0, 1, 4, 2, 3)
    t = 0.5
    exact, acc = dense_predictive_loss(target, target, t)
    m = b * p * h * w
    closed_form = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (m - 1)))  # other cells at cos 0
    assert math.isclose(exact.item(), closed_form, rel_tol=1e-5) and acc.item() == 1.0
    shuffled = target.flatten(0, 1)[torch.randperm(b * p)].view_as(target)
    noisy = target + 0.3 * torch.randn_like(target)
    assert dense_predictive_loss(noisy, target, t)[0] > exact
    assert dense_predictive_loss(shuffled, target, t)[0] > exact


def test_dpc_shapes_and_gradients() -> None:
    model = DensePredictiveCoding(tiny_encoder(), num_blocks=4, block_len=2, pred_steps=2, temperature=0.1)
    assert isinstance(model, DensePredictiveCoding)
    torch.manual_seed(0)
    clip = torch.randn(2, 8, 3, SIZE, SIZE)
    feats = model.block_features(clip)
    assert feats.shape == (2, 4, 16, 8, 8)
    # A block's features are the mean of its frames' feature maps.
    model.eval()
    one = model.encoder.feature_map(clip[0, 2:4]).mean(dim=0)
    assert torch.allclose(model.block_features(clip)[0, 1], one, atol=1e-5)
    model.train()
    assert model.predict(feats).shape == (2, 2, 16, 8, 8)
    out = model({"clip": clip})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"]) and 0 <= out["acc"] <= 1
    out["loss"].backward()
    assert model.encoder.features[0].weight.grad.abs().sum() > 0
    assert model.aggregator.gates.weight.grad.abs().sum() > 0


def test_dpc_rejects_clip_of_wrong_length_naming_the_setting() -> None:
    model = DensePredictiveCoding(tiny_encoder(), num_blocks=3, block_len=2, pred_steps=1)
    with pytest.raises(ValueError, match="clip_len"):
        model({"clip": torch.randn(1, 5, 3, SIZE, SIZE)})
    with pytest.raises(ValueError, match="pred_steps"):
        DensePredictiveCoding(tiny_encoder(), num_blocks=3, pred_steps=3)


def test_methods_are_registered_for_video() -> None:
    for name in ("future_cvae", "dpc"):
        assert METHODS.modality_of(name) == "video"
    assert "horizon" in option_names(METHODS.get("future_cvae"), "method")
    assert "pred_steps" in option_names(METHODS.get("dpc"), "method")
