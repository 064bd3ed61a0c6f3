import numpy as np
import torch
from trainkit import draw_images

from renalmae.params import AugmentParams
from renalmae.train.augment import augment_batch


def _images() -> torch.Tensor:
    return torch.from_numpy(draw_images(["normal", "utd", "mcdk", "utd"] * 2, seed=0))


def test_augment_returns_float_images_in_unit_range_of_the_same_size():
    out = augment_batch(_images(), AugmentParams(), torch.Generator().manual_seed(0))
    assert out.shape == (8, 1, 32, 32)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_augment_is_reproducible_from_the_generator_seed_and_varies_with_it():
    first = augment_batch(_images(), AugmentParams(), torch.Generator().manual_seed(3))
    again = augment_batch(_images(), AugmentParams(), torch.Generator().manual_seed(3))
    other = augment_batch(_images(), AugmentParams(), torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_flip_always_mirrors_the_image():
    flip_only = AugmentParams(
        crop_scale=(1.0, 1.0),
        hflip=1.0,
        rotation_degrees=0.0,
        gamma=(1.0, 1.0),
        contrast=(1.0, 1.0),
        speckle_std=0.0,
    )
    images = torch.zeros(2, 32, 32, dtype=torch.uint8)
    images[:, :, :8] = 255  # bright left edge
    out = augment_batch(images, flip_only, torch.Generator().manual_seed(0))
    assert out[:, 0, :, -4:].mean() > 0.5 > out[:, 0, :, :4].mean()


def test_a_shard_of_a_global_batch_is_augmented_as_in_the_whole_batch():
    images = _images()
    whole = augment_batch(images, AugmentParams(), torch.Generator().manual_seed(1))
    second_half = augment_batch(
        images[4:], AugmentParams(), torch.Generator().manual_seed(1), draw_size=8, draw_offset=4
    )
    np.testing.assert_allclose(second_half.numpy(), whole[4:].numpy(), atol=1e-6)
