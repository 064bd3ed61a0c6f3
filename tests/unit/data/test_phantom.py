"""The synthetic renal phantom: determinism, classes, masks, groups, URIs and a learnable-not-trivial task."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from renalmae.data.phantom import CLASSES, PhantomSpec, generate_phantom, parse_phantom_uri
from renalmae.errors import DataError


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(200, seed=7, image_size=48, difficulty=0.6)


def test_same_seed_gives_the_same_images_and_another_seed_does_not():
    first = generate_phantom(30, seed=3, image_size=32, difficulty=0.6)
    again = generate_phantom(30, seed=3, image_size=32, difficulty=0.6)
    other = generate_phantom(30, seed=4, image_size=32, difficulty=0.6)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.masks, again.masks)
    assert first.labels == again.labels and first.groups == again.groups and first.ids == again.ids
    assert not np.array_equal(first.images, other.images)


def test_shapes_dtypes_and_ids(phantom):
    assert phantom.images.shape == phantom.masks.shape == (200, 48, 48)
    assert phantom.images.dtype == phantom.masks.dtype == np.uint8
    assert set(np.unique(phantom.masks)) <= {0, 1}
    assert len(phantom.labels) == len(phantom.ids) == len(phantom.groups) == 200
    assert phantom.ids[0] == "phantom-7-00000" and phantom.ids[-1] == "phantom-7-00199"
    assert set(phantom.labels) == set(CLASSES)


def test_images_are_not_blank(phantom):
    assert phantom.images.reshape(200, -1).std(axis=1).min() > 10


def test_masks_are_non_empty_exactly_for_anomalies(phantom):
    mask_pixels = phantom.masks.reshape(200, -1).sum(axis=1)
    for label, pixels in zip(phantom.labels, mask_pixels, strict=True):
        assert (pixels > 0) == (label != "normal"), f"{label} image with {pixels} mask pixels"


def test_lesions_are_darker_than_the_rest_of_the_kidney_at_low_difficulty():
    easy = generate_phantom(60, seed=1, image_size=64, difficulty=0.0)
    for image, mask in zip(easy.images, easy.masks, strict=True):
        if mask.any():
            around = ndimage.binary_dilation(mask, iterations=3) & ~mask.astype(bool)
            assert image[mask.astype(bool)].mean() < image[around].mean() - 20


@pytest.mark.parametrize("image_size", [32, 64, 224])
def test_mcdk_masks_have_at_least_two_separate_cysts(image_size):
    fractions = (0.0, 0.0, 1.0)
    mcdk = generate_phantom(12, seed=2, image_size=image_size, difficulty=1.0, class_fractions=fractions)
    for mask in mcdk.masks:
        _, components = ndimage.label(mask)
        assert components >= 2


def test_class_fractions_are_respected():
    counts = Counter(generate_phantom(400, seed=0, image_size=16, difficulty=0.6).labels)
    assert counts == {"normal": 268, "utd": 108, "mcdk": 24}
    custom = Counter(generate_phantom(100, 0, 16, 0.6, class_fractions=(0.5, 0.25, 0.25)).labels)
    assert custom == {"normal": 50, "utd": 25, "mcdk": 25}


def test_images_of_a_simulated_patient_share_the_class_and_differ_in_pose(phantom):
    images_per_group = Counter(phantom.groups)
    assert max(images_per_group.values()) == 3 and min(images_per_group.values()) == 1
    assert 1.4 < 200 / len(images_per_group) < 2.4
    by_group: dict[str, list[int]] = {}
    for index, group in enumerate(phantom.groups):
        by_group.setdefault(group, []).append(index)
    for members in by_group.values():
        assert len({phantom.labels[i] for i in members}) == 1
        for i in members[1:]:
            assert not np.array_equal(phantom.images[i], phantom.images[members[0]])


def test_unlabelled_pool_has_no_labels_no_masks_and_its_own_ids():
    pool = generate_phantom(40, seed=1, image_size=32, difficulty=0.6, unlabelled=True)
    labelled = generate_phantom(40, seed=1, image_size=32, difficulty=0.6)
    assert pool.labels == [None] * 40
    assert not pool.masks.any()
    assert pool.ids[3] == "phantom-pool-1-00003"
    assert not set(pool.groups) & set(labelled.groups)
    assert not np.array_equal(pool.images, labelled.images)


def test_generating_400_images_at_64_pixels_is_fast():
    start = time.perf_counter()
    generate_phantom(400, seed=0, image_size=64, difficulty=0.6)
    # the target is well under 2 s on a free core; the bound leaves room for a shared, loaded CI machine
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize(
    ("uri", "spec"),
    [
        ("phantom://renal?n=400&seed=0", PhantomSpec(n=400, seed=0, unlabelled=False)),
        ("phantom://renal?n=200&seed=1&unlabelled=true", PhantomSpec(n=200, seed=1, unlabelled=True)),
        ("phantom://renal?seed=5&n=3&unlabelled=false", PhantomSpec(n=3, seed=5, unlabelled=False)),
    ],
)
def test_phantom_uri_is_parsed(uri, spec):
    assert parse_phantom_uri(uri) == spec


def test_phantom_uri_with_another_scheme_is_refused():
    with pytest.raises(DataError, match=r"bad phantom URI 'file://renal\?n=4&seed=0'.*phantom://renal\?n="):
        parse_phantom_uri("file://renal?n=4&seed=0")


def test_phantom_uri_with_another_organ_is_refused():
    with pytest.raises(DataError, match=r"'phantom://liver\?n=4&seed=0'.*phantom://renal\?n="):
        parse_phantom_uri("phantom://liver?n=4&seed=0")


def test_phantom_uri_without_n_is_refused():
    with pytest.raises(DataError, match=r"'n' is missing"):
        parse_phantom_uri("phantom://renal?seed=0")


def test_phantom_uri_with_non_numeric_n_is_refused():
    with pytest.raises(DataError, match=r"n must be a positive integer \(got 'many'\)"):
        parse_phantom_uri("phantom://renal?n=many&seed=0")


def test_phantom_uri_with_a_superscript_digit_is_refused():
    with pytest.raises(DataError, match=r"n must be a positive integer \(got '4²'\)"):
        parse_phantom_uri("phantom://renal?n=4²&seed=0")


def test_phantom_uri_with_a_negative_seed_is_refused():
    with pytest.raises(DataError, match=r"seed must be a non-negative integer \(got '-1'\)"):
        parse_phantom_uri("phantom://renal?n=4&seed=-1")


def test_phantom_uri_with_zero_images_is_refused():
    with pytest.raises(DataError, match=r"n must be a positive integer \(got '0'\)"):
        parse_phantom_uri("phantom://renal?n=0&seed=0")


def test_phantom_uri_with_unknown_key_is_refused():
    with pytest.raises(DataError, match=r"unknown key\(s\) \['size'\]"):
        parse_phantom_uri("phantom://renal?n=4&seed=0&size=64")


def test_phantom_uri_with_bad_unlabelled_flag_is_refused():
    with pytest.raises(DataError, match=r"unlabelled must be true or false \(got 'maybe'\)"):
        parse_phantom_uri("phantom://renal?n=4&seed=0&unlabelled=maybe")


def test_phantom_uri_with_a_repeated_key_is_refused():
    with pytest.raises(DataError, match=r"key 'n' is given twice"):
        parse_phantom_uri("phantom://renal?n=4&n=5&seed=0")


def _binary_auc_of_small_cnn(difficulty: float, epochs: int, image_size: int = 32) -> float:
    """Train a 3-layer CNN (normal vs anomaly) on 300 phantom images; AUC on 200 others."""

    def tensors(seed: int, n: int):
        phantom = generate_phantom(n, seed, image_size, difficulty)
        images = torch.from_numpy((phantom.images.astype(np.float32) - 128.0) / 64.0)[:, None]
        return images, torch.tensor([label != "normal" for label in phantom.labels], dtype=torch.float32)

    torch.manual_seed(0)
    train_images, train_targets = tensors(100, 300)
    test_images, test_targets = tensors(200, 200)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 1),
    )  # fmt: skip
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for batch in torch.randperm(len(train_images), generator=order).split(32):
            logits = network(train_images[batch])[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, train_targets[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        scores = network(test_images)[:, 0].numpy()
    return roc_auc_score(test_targets.numpy(), scores)


def test_task_is_learnable_when_easy_but_not_trivial_at_the_default_difficulty():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        easy_auc = _binary_auc_of_small_cnn(difficulty=0.0, epochs=3)
        default_auc = _binary_auc_of_small_cnn(difficulty=0.6, epochs=1)
    finally:
        torch.set_num_threads(threads)
    assert easy_auc > 0.8
    assert default_auc < 1.0
    assert default_auc < easy_auc
