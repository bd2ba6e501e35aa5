"""Image pretext tasks: rotation batches, jigsaw permutations and tiles, context-pair geometry,
colorization's evaluated encoder, and one tiny end-to-end run of each recipe."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mmssl.cli import main
from mmssl.config import load_recipe
from mmssl.data import DataBundle
from mmssl.encoders import load_encoder
from mmssl.errors import ConfigError
from mmssl.modalities.image.color import luminance_input
from mmssl.modalities.image.methods.colorization import Colorization, LuminanceEncoder
from mmssl.modalities.image.methods.context import (
    NEIGHBOUR_OFFSETS,
    ContextPrediction,
    sample_context_pairs,
    suppress_chromatic_aberration,
)
from mmssl.modalities.image.methods.jigsaw import (
    Jigsaw,
    max_hamming_permutations,
    normalise_tiles,
    sample_tile_corners,
    shuffle_tiles,
)
from mmssl.modalities.image.methods.pretext import crop_patches
from mmssl.modalities.image.methods.rotation import RotationPrediction, rotate_batch
from mmssl.modalities.image.views import IMAGENET_MEAN, IMAGENET_STD
from mmssl.options import builder_options
from mmssl.pipeline import build_encoder, build_method
from mmssl.registry import ENCODERS, METHODS
from mmssl.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
PRETEXT = ("rotation", "jigsaw", "context", "colorization")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def coordinate_image(size: int) -> torch.Tensor:
    """``[1, 3, S, S]`` whose channel 0 holds the row, channel 1 the column, channel 2 row * S + col."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([rows, cols, rows * size + cols]).unsqueeze(0).float()


def quadratic_image(size: int) -> torch.Tensor:
    """``[1, 3, S, S]`` normalised (ImageNet statistics) so that, in unit RGB, channel 0 is
    ``(row / S)^2``, channel 1 ``(col / S)^2`` and channel 2 a constant. Any affine rescaling of a crop
    (mean subtraction, division by a standard deviation) keeps the ratio of its linear and quadratic
    parts, so a crop's corner can be read back from its pixels (:func:`corner_from_profile`)."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    unit = torch.stack([(rows / size) ** 2, (cols / size) ** 2, torch.full((size, size), 0.5)])
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((unit - mean) / std).unsqueeze(0).float()


def corner_from_profile(profile: torch.Tensor) -> torch.Tensor:
    """First coordinate ``r0`` of crops whose profile ``[..., P]`` is ``a + b (r0 + x)^2`` (any a, b > 0).

    Least squares on ``1, x, x^2``: ``c0 + c1 x + c2 x^2`` with ``c1 / c2 = 2 r0``.
    """
    p = profile.shape[-1]
    x = torch.arange(p, dtype=torch.float64)
    design = torch.stack([torch.ones(p, dtype=torch.float64), x, x**2], dim=1)  # [P, 3]
    coef = profile.double() @ torch.linalg.pinv(design).T  # [..., 3]
    return coef[..., 1] / (2 * coef[..., 2])


def test_pretext_methods_registered() -> None:
    assert set(PRETEXT) <= set(METHODS.names("image"))


def test_pretext_methods_are_registered_as_their_classes() -> None:
    """The Method classes are the builders: ``Class(encoder, data, **options)``, options checked by name."""
    classes = {
        "rotation": RotationPrediction,
        "jigsaw": Jigsaw,
        "context": ContextPrediction,
        "colorization": Colorization,
    }
    for name, cls in classes.items():
        assert METHODS.get(name) is cls
    with pytest.raises(ConfigError, match="method.tile_sise.*did you mean 'tile_size'"):
        builder_options(Jigsaw, {"tile_sise": 10}, "method", kind="method", name="jigsaw")
    encoder = ENCODERS.build("small_cnn", widths=[8, 16])
    with pytest.raises(ValueError, match="method.grid must be 2 or 3"):
        METHODS.build("jigsaw", encoder=encoder, grid=4)
    with pytest.raises(ValueError, match="only 24 permutations of 4 tiles"):
        METHODS.build("jigsaw", encoder=encoder, grid=2, num_permutations=30)


# ------------------------------------------------------------------------------------ rotation


def test_rotate_batch_holds_every_rotation_with_its_label() -> None:
    images = torch.randn(3, 3, 5, 5)
    rotated, labels = rotate_batch(images)
    assert rotated.shape == (12, 3, 5, 5)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for k in range(4):
        for i in range(3):
            assert torch.equal(rotated[k * 3 + i], torch.rot90(images[i], k, dims=(-2, -1)))
    # Label 1 is a quarter turn counter-clockwise: the top-right corner goes to the top-left.
    square = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    assert rotate_batch(square)[0][1, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]


class _Recorder(nn.Module):
    """Encoder stub that remembers its input and returns a pooled feature."""

    out_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen = x.detach().clone()
        return {"global": x.mean(dim=(2, 3)) * self.scale}


def test_rotation_method_trains_on_all_four_rotations() -> None:
    encoder = _Recorder()
    method = RotationPrediction(encoder, head_hidden=8, head_layers=2)
    images = torch.randn(4, 3, 6, 6)
    out = method({"image": images, "label": torch.zeros(4), "index": torch.arange(4)})
    out["loss"].backward()
    assert torch.equal(encoder.seen, rotate_batch(images)[0])
    assert encoder.scale.grad is not None
    # The loss is the 4-way cross-entropy against the rotation each copy was given: rotating copy
    # k * B + i back by -k quarter turns gives image i again, and its target is k.
    seen = encoder.seen.view(4, 4, 3, 6, 6)
    for k in range(4):
        assert torch.equal(torch.rot90(seen[k], -k, dims=(-2, -1)), images)
    method.eval()  # fixed BatchNorm statistics: the same logits for a second forward
    out = method({"image": images, "label": torch.zeros(4), "index": torch.arange(4)})
    with torch.no_grad():
        logits = method.head(encoder.seen.mean(dim=(2, 3)) * encoder.scale)
    targets = torch.arange(4).repeat_interleave(4)
    expected = -logits.log_softmax(dim=1)[torch.arange(16), targets].mean()
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert float(out["acc"]) == (logits.argmax(dim=1) == targets).float().mean().item()


# -------------------------------------------------------------------------------------- jigsaw


def _pairwise_hamming(perms: torch.Tensor) -> torch.Tensor:
    return (perms.unsqueeze(0) != perms.unsqueeze(1)).sum(dim=-1)


@pytest.mark.parametrize("count", [100, 12])
def test_permutation_set_min_hamming_is_as_promised(count: int) -> None:
    perms, promised = max_hamming_permutations(count, 9, seed=0)
    assert perms.shape == (count, 9)
    assert (perms.sort(dim=1).values == torch.arange(9)).all()  # each row is a permutation
    assert len(torch.unique(perms, dim=0)) == count
    d = _pairwise_hamming(perms)
    brute_min = int(d[~torch.eye(count, dtype=torch.bool)].min())
    assert brute_min == promised
    assert promised >= (6 if count == 100 else 7)  # far apart: 9 is the most two permutations differ


def test_permutation_set_is_greedy_max_min() -> None:
    """Each pick maximises the minimum Hamming distance to the earlier picks (brute force over S_4)."""
    perms, promised = max_hamming_permutations(10, 4, seed=3)
    every = torch.tensor(list(itertools.permutations(range(4))))
    for i in range(1, len(perms)):
        to_chosen = (every.unsqueeze(1) != perms[:i].unsqueeze(0)).sum(-1).min(dim=1).values
        picked = int((perms[i] != perms[:i]).sum(-1).min())
        assert picked == int(to_chosen.max()), f"pick {i}"
    assert promised == int(_pairwise_hamming(perms)[~torch.eye(10, dtype=torch.bool)].min())
    # Deterministic in the seed.
    assert torch.equal(max_hamming_permutations(10, 4, seed=3)[0], perms)


def test_tiles_respect_the_gap_and_their_cells() -> None:
    size, grid, tile, gap, jitter = 64, 3, 14, 2, 1
    top, left = sample_tile_corners(200, size, grid, tile, gap, jitter)
    assert top.shape == left.shape == (200, 9, 3)
    assert top.min() >= 0 and left.min() >= 0 and top.max() + tile <= size and left.max() + tile <= size
    # Neighbouring tiles (any channel of one to any channel of the other) leave >= gap pixels.
    rows, cols = top.view(200, grid, grid, 3), left.view(200, grid, grid, 3)
    horizontal = cols[:, :, 1:].amin(-1) - (cols[:, :, :-1].amax(-1) + tile)
    vertical = rows[:, 1:].amin(-1) - (rows[:, :-1].amax(-1) + tile)
    assert horizontal.min() >= gap and vertical.min() >= gap
    assert horizontal.max() > gap  # and the tiles do move
    # Channel jitter stays within +-jitter of the tile's own corner.
    assert (top.amax(-1) - top.amin(-1)).max() <= 2 * jitter and (top.amax(-1) - top.amin(-1)).max() > 0
    # The crop reads exactly those pixels.
    coords = coordinate_image(size)
    tiles = crop_patches(coords, top[:1], left[:1], tile)  # [1, 9, 3, t, t]
    assert torch.equal(tiles[0, :, 0, 0, 0], top[0, :, 0].float())
    assert torch.equal(tiles[0, :, 1, 0, 0], left[0, :, 1].float())
    assert torch.equal(tiles[0, 4, 0, :, 0], top[0, 4, 0] + torch.arange(tile).float())
    with pytest.raises(ValueError, match="do not fit"):
        sample_tile_corners(2, size, grid, 20, gap, jitter)


def test_shuffle_tiles_and_per_tile_normalisation() -> None:
    perms, _ = max_hamming_permutations(12, 9, seed=0)
    tiles = torch.arange(9.0).view(1, 9, 1, 1, 1).expand(4, 9, 3, 2, 2)  # tile k is all k
    labels = torch.tensor([0, 5, 11, 5])
    shuffled = shuffle_tiles(tiles, perms[labels])
    assert torch.equal(shuffled[:, :, 0, 0, 0], perms[labels].float())
    x = torch.rand(2, 9, 3, 7, 7) * 5 + 3
    normed = normalise_tiles(x)
    torch.testing.assert_close(normed.mean(dim=(-2, -1)), torch.zeros(2, 9, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.std(dim=(-2, -1), unbiased=False), torch.ones(2, 9, 3))


def test_jigsaw_label_names_the_permutation_the_tiles_are_in() -> None:
    """Read each shuffled tile's position back from its pixels: position i holds cell perms[label, i]."""
    method = METHODS.build(
        "jigsaw", encoder=ENCODERS.build("small_cnn", widths=[8, 16]), num_permutations=12, grayscale_prob=0.0
    )
    size, n = 64, 24
    puzzles, labels = method.make_puzzles(quadratic_image(size).expand(n, -1, -1, -1))
    assert puzzles.shape == (n, 9, 3, 14, 14) and len(set(labels.tolist())) > 3
    rows = corner_from_profile(puzzles[:, :, 0].mean(dim=-1))  # channel 0 varies along rows only
    cols = corner_from_profile(puzzles[:, :, 1].mean(dim=-2))  # channel 1 along columns only
    torch.testing.assert_close(rows, rows.round(), atol=1e-3, rtol=0)  # whole pixels: the read-back works
    cell = size // 3
    source_cell = (rows.round().long() // cell) * 3 + cols.round().long() // cell  # [n, 9]
    assert torch.equal(source_cell, method.permutations[labels])
    # Undoing the permutation puts every tile back in row-major order.
    unshuffled = torch.empty_like(source_cell).scatter_(1, method.permutations[labels], source_cell)
    assert torch.equal(unshuffled, torch.arange(9).expand(n, 9))


def test_jigsaw_loss_is_the_cross_entropy_of_the_tiles_concatenated_in_order() -> None:
    method = METHODS.build("jigsaw", encoder=ENCODERS.build("small_cnn", widths=[8, 16]), num_permutations=12)
    method.eval()  # BatchNorm on running statistics: tiles can be embedded one position at a time
    images = torch.randn(5, 3, 64, 64)
    batch = {"image": images, "label": torch.zeros(5), "index": torch.arange(5)}
    torch.manual_seed(3)
    out = method(batch)
    torch.manual_seed(3)  # the same puzzles again
    puzzles, labels = method.make_puzzles(images)
    with torch.no_grad():
        per_tile = [method.tile_fc(method.encoder(puzzles[:, i])["global"]) for i in range(9)]
        logits = method.classifier(torch.cat(per_tile, dim=1))
    expected = -logits.log_softmax(dim=1)[torch.arange(5), labels].mean()
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert float(out["acc"]) == (logits.argmax(dim=1) == labels).float().mean().item()
    assert out["chance"] == 1 / 12 and method.min_hamming >= 7


# ------------------------------------------------------------------------------------- context


def _label_from_geometry(dy: int, dx: int) -> int:
    """Row-major index of (dy, dx) in the 3x3 neighbourhood, the centre skipped."""
    index = (dy + 1) * 3 + (dx + 1)
    return index - 1 if index > 4 else index


def test_context_pairs_label_matches_relative_position() -> None:
    size, patch, gap, jitter = 64, 14, 7, 1
    top, left, labels = sample_context_pairs(800, size, patch, gap, jitter)
    assert set(labels.tolist()) == set(range(8))
    patches = crop_patches(coordinate_image(size).expand(800, -1, -1, -1), top, left, patch)
    r = patches[:, :, 0, 0, 0]  # rows of the top-left pixels: [B, 2]
    c = patches[:, :, 1, 0, 0]
    dy, dx = r[:, 1] - r[:, 0], c[:, 1] - c[:, 0]
    step = patch + gap
    for i in range(800):
        sy, sx = round(float(dy[i]) / step), round(float(dx[i]) / step)
        assert _label_from_geometry(sy, sx) == int(labels[i])
        assert NEIGHBOUR_OFFSETS[int(labels[i])] == (sy, sx)
        assert abs(dy[i] - sy * step) <= jitter and abs(dx[i] - sx * step) <= jitter
    # The patches never overlap: along the displacement's axis they are >= gap - jitter apart.
    sep = torch.maximum(dy.abs(), dx.abs()) - patch
    assert sep.min() >= gap - jitter
    # Patch content is the image at those coordinates.
    assert torch.equal(patches[0, 1, 0, :, 0], top[0, 1] + torch.arange(patch).float())


def test_chromatic_aberration_counter_measures() -> None:
    patches = torch.rand(6, 3, 10, 10)
    dropped = suppress_chromatic_aberration(patches, "drop", noise_ratio=0.01)
    std = dropped.std(dim=(2, 3), unbiased=False)  # [N, C]
    assert ((std > 0.5).sum(dim=1) == 1).all()  # one kept channel per patch, normalised
    assert (std.sort(dim=1).values[:, :2] < 0.05).all()  # the others are faint noise
    projected = suppress_chromatic_aberration(patches, "project")
    green_magenta = torch.tensor([-1.0, 2.0, -1.0]) / 6**0.5
    assert torch.einsum("nchw,c->nhw", projected, green_magenta).abs().max() < 1e-5
    torch.testing.assert_close(projected.mean(dim=(2, 3)), torch.zeros(6, 3), atol=1e-5, rtol=0)


def test_context_pairs_from_the_method_are_labelled_by_where_the_neighbour_is() -> None:
    """Read both patches' corners back from their (normalised) pixels: the label is their offset."""
    method = METHODS.build(
        "context",
        encoder=ENCODERS.build("small_cnn", widths=[8, 16]),
        aberration="none",
        downsample_prob=0.0,
    )
    n = 128  # every one of the 8 directions is drawn (all but surely)
    pairs, labels = method.make_pairs(quadratic_image(64).expand(n, -1, -1, -1))
    assert pairs.shape == (n, 2, 3, 14, 14) and set(labels.tolist()) == set(range(8))
    rows = corner_from_profile(pairs[:, :, 0].mean(dim=-1))  # [n, 2]: first patch, neighbour
    cols = corner_from_profile(pairs[:, :, 1].mean(dim=-2))
    torch.testing.assert_close(rows, rows.round(), atol=1e-3, rtol=0)
    dy, dx = (rows[:, 1] - rows[:, 0]).round(), (cols[:, 1] - cols[:, 0]).round()
    step = method.patch_size + method.gap
    for i in range(n):
        sy, sx = round(float(dy[i]) / step), round(float(dx[i]) / step)
        assert NEIGHBOUR_OFFSETS[int(labels[i])] == (sy, sx), i
        assert abs(dy[i] - sy * step) <= method.jitter and abs(dx[i] - sx * step) <= method.jitter


def test_context_loss_is_the_cross_entropy_of_the_pair_in_order() -> None:
    method = METHODS.build("context", encoder=ENCODERS.build("small_cnn", widths=[8, 16]))
    method.eval()
    images = torch.randn(6, 3, 64, 64)
    batch = {"image": images, "label": torch.zeros(6), "index": torch.arange(6)}
    torch.manual_seed(5)
    out = method(batch)
    torch.manual_seed(5)
    pairs, labels = method.make_pairs(images)
    with torch.no_grad():
        first, second = (method.patch_fc(method.encoder(pairs[:, j])["global"]) for j in (0, 1))
        logits = method.classifier(torch.cat([first, second], dim=1))
    expected = -logits.log_softmax(dim=1)[torch.arange(6), labels].mean()
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert float(out["acc"]) == (logits.argmax(dim=1) == labels).float().mean().item()


# -------------------------------------------------------------------------------- colorization


def _colorization(**kwargs) -> Colorization:
    trunk = ENCODERS.build("small_cnn", widths=[8, 16], in_channels=1)
    return METHODS.build("colorization", encoder=trunk, **kwargs)


def test_luminance_encoder_sees_l_and_keeps_trunk_keys() -> None:
    method = _colorization()
    encoder = method.encoder
    assert isinstance(encoder, LuminanceEncoder) and encoder.out_dim == 16
    x = torch.randn(2, 3, 16, 16)
    encoder.eval()
    torch.testing.assert_close(encoder(x)["global"], encoder.trunk(luminance_input(x))["global"])
    # Same keys as the bare trunk: encoder.pt loads into a freshly built trunk, and the method's
    # checkpoint keeps encoder.* keys that load back into the method.
    fresh = ENCODERS.build("small_cnn", widths=[8, 16], in_channels=1)
    assert set(encoder.state_dict()) == set(fresh.state_dict())
    fresh.load_state_dict(encoder.state_dict())
    state = method.state_dict()
    assert {k for k in state if k.startswith("encoder.")} == {f"encoder.{k}" for k in fresh.state_dict()}
    other = _colorization()
    other.load_state_dict(state)
    for k, v in other.encoder.trunk.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])


def test_colorization_prior_weights_and_gray_skip(tmp_path) -> None:
    method = _colorization(prior_steps=2)
    images = torch.randn(4, 3, 16, 16)
    batch = {"image": images, "label": torch.zeros(4), "index": torch.arange(4)}
    for _ in range(3):
        out = method(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and int(method.prior_batches) == 2  # frozen after 2 batches
    assert method.bin_counts.sum() == 2 * 4 * 4 * 4  # 4x4 outputs (stride 4) of 4 images, twice
    assert (method.prior * method.class_weights).sum().item() == pytest.approx(1.0, abs=1e-5)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    gray = ((torch.rand(2, 1, 16, 16) - mean) / std).expand(2, 3, 16, 16)  # R = G = B: a = b = 0
    gray_out = method({"image": gray, "label": torch.zeros(2), "index": torch.arange(2)})
    assert float(gray_out["skipped_gray"]) == 1.0 and gray_out["loss"].item() == 0.0
    rgb = method.colourise(images)
    assert rgb.shape == (4, 3, 16, 16) and rgb.min() >= 0 and rgb.max() <= 1


# ----------------------------------------------------------------------------------- recipes

TINY = [
    "data.train_per_class=6",
    "data.test_per_class=2",
    "train.steps=2",
    "train.batch_size=8",
    "train.log_every=1",
    "train.progress=false",
    "eval.few_shot.shots=[1]",
    "eval.few_shot.seeds=1",
    "eval.few_shot.epochs=5",
    "eval.knn.k=3",
    "eval.linear.epochs=2",
    "encoder.widths=[8,16]",
]


@pytest.fixture()
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.mark.parametrize("name", PRETEXT)
def test_recipe_builds_and_trains_at_its_image_size(name: str) -> None:
    """The recipe's own method / encoder / image size fit together (tiles and patches fit, L input)."""
    cfg = load_recipe(REPO / "recipes" / "image" / f"{name}.yaml")
    assert cfg.method["name"] == name and cfg.data["views"] is None
    data = DataBundle(pretrain=list(range(10)), num_classes=10)
    method = build_method(cfg, build_encoder(cfg), data)
    size = cfg.data["image_size"]
    images = torch.randn(4, 3, size, size)
    out = method({"image": images, "label": torch.zeros(4), "index": torch.arange(4)})
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    method.eval()
    with torch.no_grad():  # the evaluated encoder takes whole RGB images
        assert method.encoder(images)["global"].shape == (4, method.encoder.out_dim)


def test_colorization_recipe_end_to_end(tmp_path: Path, _cache) -> None:
    """Through the CLI: metrics for both encoders, the PNG, and an encoder.pt that rebuilds the L trunk."""
    out = tmp_path / "run"
    recipe = REPO / "recipes" / "image" / "colorization.yaml"
    assert main(["run", str(recipe), *TINY, f"out_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "colorization"
    assert {"knn_top1", "linear_top1", "fewshot_1_mean"} <= set(metrics["baselines"]["random_init"])
    assert (out / "figures" / "colorization.png").stat().st_size > 0
    encoder = load_encoder(out / "encoder.pt")  # the bare 1-channel trunk
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, ckpt["model"][f"encoder.{k}"])
    assert encoder(torch.randn(2, 1, 32, 32))["global"].shape == (2, 16)
