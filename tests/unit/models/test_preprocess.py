import pytest
import torch

from renalmae.models import GREY_MEAN, GREY_STD, from_model_input, to_model_input


def test_black_grey_white_map_to_the_documented_values():
    images = torch.tensor([[[0, 128, 255]]], dtype=torch.uint8)
    inputs = to_model_input(images)
    expected = (torch.tensor([0.0, 128.0, 255.0]) / 255 - GREY_MEAN) / GREY_STD
    assert inputs.shape == (1, 1, 1, 3)
    assert inputs.dtype == torch.float32
    torch.testing.assert_close(inputs.flatten(), expected)


def test_channel_first_and_plain_batches_give_the_same_input():
    images = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(to_model_input(images), to_model_input(images.unsqueeze(1)))


def test_display_inverse_recovers_the_pixels():
    images = torch.randint(0, 256, (2, 8, 8), dtype=torch.uint8)
    recovered = (from_model_input(to_model_input(images)) * 255).round().to(torch.uint8)
    assert torch.equal(recovered, images.unsqueeze(1))


def test_float_images_are_refused():
    with pytest.raises(TypeError, match="uint8"):
        to_model_input(torch.rand(2, 8, 8))


def test_colour_images_are_refused():
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        to_model_input(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
