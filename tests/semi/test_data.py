"""semi_shapes (labelled / unlabelled split, domain shift) and the batched weak / strong views."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from mmssl.semi import augment as A
from mmssl.semi.data import semi_shapes, split_labelled
from mmssl.semi.pool import UnlabelledPool


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    kw = dict(labels_per_class=2, mu=3, image_size=16, train_per_class=10, test_per_class=2, cache_dir=cache)
    return semi_shapes(**kw), semi_shapes(**kw, ood_fraction=0.25, ood_kind="noise", strong="weak")


def _pool(data) -> UnlabelledPool:
    return data.extra(UnlabelledPool, needed_by="the test")


def test_split_takes_n_per_class_and_leaves_the_rest_unlabelled():
    labels = torch.arange(50) % 5
    lab, unl = split_labelled(labels, 3, seed=0)
    assert torch.bincount(labels[lab], minlength=5).tolist() == [3] * 5
    assert len(set(lab.tolist()) | set(unl.tolist())) == 50 and not set(lab.tolist()) & set(unl.tolist())


def test_bundle_shapes_and_items(tiny):
    data, _ = tiny
    assert data.stats["num_labelled"] == 20 and data.stats["num_unlabelled"] == 80
    assert len(data.eval_train) == 20 and len(data.pretrain) == 80 // 3
    item = data.pretrain[0]
    assert item["x_l"].dtype == torch.uint8 and item["u"].shape == (3, 3, 16, 16)
    batch = {k: torch.stack([torch.as_tensor(data.pretrain[i][k]) for i in range(4)]) for k in item}
    views = data.batch_transform(batch)
    assert set(views) == {"x_l", "y_l", "u_weak", "u_strong", "u_index"}
    assert views["u_weak"].shape == views["u_strong"].shape == (4, 3, 3, 16, 16)
    assert views["x_l"].dtype == torch.float32
    # u_index points at the pool images the item carried.
    pool = _pool(data).dataset
    assert torch.equal(pool.images[item["u_index"]], item["u"])


def test_domain_shift_marks_and_replaces_a_fraction_of_the_pool(tiny):
    clean, shifted = tiny
    is_ood = _pool(shifted).is_ood
    assert int(is_ood.sum()) == 20
    assert (_pool(shifted).true_labels[is_ood] == -1).all()
    assert torch.equal(_pool(shifted).true_labels[~is_ood], _pool(clean).true_labels[~is_ood])
    a, b = _pool(clean).dataset.images, _pool(shifted).dataset.images
    assert torch.equal(a[~is_ood], b[~is_ood]) and not torch.equal(a[is_ood], b[is_ood])
    assert "u_strong" in shifted.batch_transform(
        {"x_l": a[:2], "u": a[:6].view(2, 3, 3, 16, 16), "y_l": torch.zeros(2)}
    )


def _uint8_images(n=6, size=12, seed=0):
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_equalize_posterize_autocontrast_match_torchvision():
    imgs = _uint8_images()
    x = imgs.float() / 255
    assert torch.allclose(A.equalize(x), TF.equalize(imgs).float() / 255, atol=1e-6)
    for bits in (4, 6, 8):
        ref = TF.posterize(imgs, bits).float() / 255
        assert torch.allclose(A.posterize(x, torch.full((6,), bits)), ref, atol=1e-6)
    assert torch.allclose(A.autocontrast(x), TF.autocontrast(x), atol=1e-6)
    assert torch.allclose(A.sharpness(x, torch.full((6,), 1.7)), TF.adjust_sharpness(x, 1.7), atol=1e-5)


def test_translation_is_a_shifted_crop_of_the_reflect_padded_image():
    x = torch.rand(5, 3, 8, 8)
    out = A.random_translate(x, 2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(5):
        crops = [padded[i, :, oy : oy + 8, ox : ox + 8] for oy in range(5) for ox in range(5)]
        assert any(torch.equal(out[i], c) for c in crops)


def test_strong_views_stay_in_range_and_cutout_greys_a_square():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16)
    out = A.strong_augment(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    cut = A.cutout(torch.zeros(8, 3, 16, 16), max_fraction=0.5)
    grey = (cut == A.FILL).all(dim=1)  # [8, 16, 16]
    for mask in grey:
        if mask.any():  # the greyed region is an axis-aligned rectangle no larger than 8 x 8
            rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            assert len(rows) <= 8 and len(cols) <= 8
