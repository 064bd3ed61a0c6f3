"""Deletion / insertion AUC against a random order, and the correlation of two classes' maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from renalmae.explain.faithfulness import (
    Curves,
    blurred,
    map_correlation,
    perturbation_curves,
    pixel_ranks,
    random_ranks,
)

SIZE = 16
REGION = (slice(4, 8), slice(8, 12))  # 16 of 256 pixels


class RegionModel(nn.Module):
    """Class 1's logit is 6 × the mean squared model input inside REGION − 3 (texture energy there, which
    both removal and blurring take away); class 0's is 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(6.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        evidence = self.scale * images[:, 0, REGION[0], REGION[1]].square().mean(dim=(-2, -1)) - 3.0
        return torch.stack([torch.zeros_like(evidence), evidence], dim=-1)


def texture(count: int, seed: int = 0) -> torch.Tensor:
    """±1 speckle (model input): unit texture energy everywhere."""
    signs = torch.randint(0, 2, (count, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))
    return signs.float() * 2 - 1


def region_map(count: int) -> torch.Tensor:
    maps = torch.zeros(count, SIZE, SIZE)
    maps[:, REGION[0], REGION[1]] = 1.0
    return maps


def test_a_map_on_the_evidence_beats_the_random_order_on_deletion_and_insertion():
    images = texture(3)
    generator = torch.Generator().manual_seed(0)
    ranks = {"map": pixel_ranks(region_map(3), generator), "random": random_ranks((3, SIZE, SIZE), generator)}
    curves = perturbation_curves(RegionModel(), images, torch.tensor([1, 1, 1]), ranks, steps=8)
    assert (curves["map"].deletion_auc < curves["random"].deletion_auc - 0.2).all()
    assert (curves["map"].insertion_auc > curves["random"].insertion_auc + 0.2).all()
    # removing the top eighth of the pixels removes the whole region: the logit drops to -3
    np.testing.assert_allclose(curves["map"].deletion[:, 1], 1 / (1 + np.exp(3.0)), atol=1e-6)


def test_curves_run_from_the_clean_image_to_the_baseline_and_from_the_blurred_canvas_to_the_clean_image():
    model, images = RegionModel(), texture(2, seed=1)
    ranks = {"random": random_ranks((2, SIZE, SIZE), torch.Generator().manual_seed(0))}
    curves = perturbation_curves(model, images, torch.tensor([1, 0]), ranks, steps=4)["random"]
    with torch.no_grad():
        clean = model(images).softmax(-1)[[0, 1], [1, 0]].numpy()
        canvas = model(blurred(images)).softmax(-1)[[0, 1], [1, 0]].numpy()
    assert curves.deletion.shape == curves.insertion.shape == (2, 5)
    np.testing.assert_allclose(curves.deletion[:, 0], clean, atol=1e-6)
    baseline = 1 / (1 + np.exp([3.0, -3.0]))  # the all-baseline input: class 1's logit is -3
    np.testing.assert_allclose(curves.deletion[:, -1], baseline, atol=1e-6)
    np.testing.assert_allclose(curves.insertion[:, 0], canvas, atol=1e-6)
    np.testing.assert_allclose(curves.insertion[:, -1], clean, atol=1e-6)


def test_the_auc_is_the_trapezoid_area_over_the_removed_fraction():
    curves = Curves(deletion=np.array([[1.0, 0.5, 0.0]]), insertion=np.array([[0.0, 1.0, 1.0, 1.0, 1.0]]))
    assert curves.deletion_auc[0] == pytest.approx(0.5)
    assert curves.insertion_auc[0] == pytest.approx(0.875)


def test_pixels_are_ranked_highest_first_and_ties_in_random_order():
    maps = torch.zeros(1, 4, 4)
    maps[0, 3, 3], maps[0, 0, 1] = 2.0, 1.0
    ranks = pixel_ranks(maps, torch.Generator().manual_seed(0))[0]
    assert ranks[15] == 0 and ranks[1] == 1  # the maximum first, then the runner-up
    flat = torch.zeros(1, 8, 8)
    first = pixel_ranks(flat, torch.Generator().manual_seed(0))[0]
    second = pixel_ranks(flat, torch.Generator().manual_seed(1))[0]
    assert not torch.equal(first, second) and not torch.equal(first, torch.arange(64))


def test_map_correlation_is_one_for_equal_maps_minus_one_for_opposite_and_undefined_for_constant_maps():
    maps = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(map_correlation(maps, maps), [1.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(map_correlation(maps, 1 - maps), [-1.0, -1.0], atol=1e-9)
    constant = map_correlation(maps, torch.zeros(2, 6, 6))
    assert np.isnan(constant).all()
