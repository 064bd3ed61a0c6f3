import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop
from trainkit import draw_images

from renalmae.errors import ParamsError
from renalmae.params import AugmentParams, params_from_dict
from renalmae.train.augment import augment_batch, crop_size


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


def _only(**changes) -> AugmentParams:
    """Every augmentation off except `changes`."""
    identity = {"crop_scale": (1.0, 1.0), "hflip": 0.0, "vflip": 0.0, "rotation_degrees": 0.0,
                "gamma": (1.0, 1.0), "contrast": (1.0, 1.0), "speckle_std": 0.0}  # fmt: skip
    return AugmentParams(**{**identity, **changes})


def _bright_right_edge() -> torch.Tensor:
    images = torch.zeros(2, 32, 32, dtype=torch.uint8)
    images[:, 12:20, -6:] = 255
    return images


def test_all_off_is_the_identity():
    images = torch.from_numpy(draw_images(["normal", "utd"], seed=1))
    out = augment_batch(images, _only(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 0], images.float() / 255, rtol=0, atol=1e-5)


def test_vertical_flip_always_mirrors_top_and_bottom():
    images = torch.zeros(2, 32, 32, dtype=torch.uint8)
    images[:, :8, :] = 255  # bright top edge
    out = augment_batch(images, _only(vflip=1.0), torch.Generator().manual_seed(0))
    assert out[:, 0, -4:, :].mean() > 0.5 > out[:, 0, :4, :].mean()


def test_rotation_by_90_degrees_is_counter_clockwise_and_fills_black():
    """torchvision's sign: a positive angle turns the image counter-clockwise as displayed, so the right
    edge goes to the top."""
    out = augment_batch(_bright_right_edge(), _only(rotation_degrees=(90.0, 90.0)), torch.Generator())
    assert out[:, 0, :6, 12:20].mean() > 0.9 and out[:, 0, 12:20, -6:].mean() < 0.1


def test_usf_mae_rotation_range_turns_only_counter_clockwise():
    params = _only(rotation_degrees=(0.0, 90.0))
    assert params.rotation_range == (0.0, 90.0) and AugmentParams(rotation_degrees=10).rotation_range == (
        -10,
        10,
    )
    out = augment_batch(_bright_right_edge().repeat(32, 1, 1), params, torch.Generator().manual_seed(2))
    top_right = out[:, 0, :16, 16:].mean(dim=(1, 2))
    bottom_right = out[:, 0, 16:, 16:].mean(dim=(1, 2))
    assert (top_right >= bottom_right - 1e-6).all()  # the edge only ever moves up


def test_crop_sizes_follow_torchvision_random_resized_crop_with_usf_mae_scale():
    """USF-MAE's RandomResizedCrop(224, scale=(0.5, 2.0)): torchvision draws (area, ratio) up to 10 times
    and keeps the first crop inside the image, else the whole image. Same distribution here (crops as a
    fraction of the side; torchvision rounds to pixels)."""
    draws, reference_draws = 20_000, 6_000
    generator = torch.Generator().manual_seed(0)
    width, height = crop_size(torch.rand(draws, 10, generator=generator),
                              torch.rand(draws, 10, generator=generator), (0.5, 2.0))  # fmt: skip
    torch.manual_seed(0)
    side = 224
    reference = torch.tensor(
        [RandomResizedCrop.get_params(torch.zeros(1, side, side), [0.5, 2.0], [3 / 4, 4 / 3])[2:]
         for _ in range(reference_draws)], dtype=torch.float64,
    ) / side  # fmt: skip
    ours_area, reference_area = (width * height).double(), reference[:, 0] * reference[:, 1]
    whole, reference_whole = (
        ((width == 1) & (height == 1)).double().mean(),
        (reference_area == 1).double().mean(),
    )
    print(f"mean crop area {ours_area.mean():.4f} (torchvision {reference_area.mean():.4f}); "
          f"whole image {whole:.4f} (torchvision {reference_whole:.4f})")  # fmt: skip
    assert abs(ours_area.mean() - reference_area.mean()) < 0.01
    assert abs(whole - reference_whole) < 0.015 and 0.02 < whole < 0.2
    assert (width <= 1).all() and (height <= 1).all() and ours_area.min() >= 0.5 - 1e-6


def test_reversed_crop_scale_or_rotation_range_is_refused():
    with pytest.raises(ParamsError, match=r"`augment`: .*crop_scale must be \[low, high\]"):
        params_from_dict({"augment": {"crop_scale": [1.0, 0.5]}})
    with pytest.raises(ParamsError, match=r"rotation_degrees must be \[low, high\] with -180"):
        params_from_dict({"augment": {"rotation_degrees": [90, 0]}})
