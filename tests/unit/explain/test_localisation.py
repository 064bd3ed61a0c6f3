"""Localisation metrics: energy in the lesion mask, the same against a uniform map, and the pointing game."""

from __future__ import annotations

import numpy as np
import pytest

from renalmae.explain.localisation import localise, map_peak


def square_mask(size: int = 20, start: int = 5, stop: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[start:stop, start:stop] = 1
    return mask


def test_a_map_equal_to_the_mask_puts_all_energy_inside():
    mask = square_mask()
    result = localise(mask.astype(float), mask)
    assert result.energy_in_mask == pytest.approx(1.0)
    assert result.energy_ratio_vs_uniform == pytest.approx(1.0 / mask.mean())
    assert result.pointing_game == 1.0


def test_a_uniform_map_is_no_better_than_uniform():
    result = localise(np.ones((20, 20)), square_mask())
    assert result.energy_ratio_vs_uniform == pytest.approx(1.0)


def test_a_map_away_from_the_lesion_scores_below_uniform_and_misses():
    cam = np.zeros((20, 20))
    cam[15:, 15:] = 1.0
    result = localise(cam, square_mask())
    assert result.energy_in_mask == 0.0
    assert result.pointing_game == 0.0


def test_a_peak_on_the_lesion_rim_counts_as_a_hit_only_within_the_tolerance():
    cam = np.zeros((20, 20))
    cam[10, 7] = 1.0  # one pixel below the mask (rows 5..9)
    assert localise(cam, square_mask(), tolerance_px=1).pointing_game == 1.0
    assert localise(cam, square_mask(), tolerance_px=0).pointing_game == 0.0


def test_images_without_a_lesion_are_not_measured():
    assert localise(np.random.default_rng(0).random((20, 20)), np.zeros((20, 20))) is None


def test_negative_map_values_carry_no_energy():
    cam = -np.ones((20, 20))
    cam[5:10, 5:10] = 1.0
    assert localise(cam, square_mask()).energy_in_mask == pytest.approx(1.0)


def test_a_map_and_mask_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        localise(np.ones((10, 10)), square_mask())


def test_a_map_without_positive_evidence_points_nowhere():
    result = localise(np.zeros((20, 20)), square_mask(start=0, stop=3))  # the mask covers pixel (0, 0)
    assert result.pointing_game == 0.0
    assert result.energy_ratio_vs_uniform == pytest.approx(1.0)


@pytest.mark.parametrize("cell", [(0, 0), (0, 7), (7, 0), (7, 7), (0, 3), (3, 0), (4, 7), (7, 4), (3, 4)])
def test_the_peak_of_an_upsampled_grid_map_is_its_cell_centre_at_the_border_too(cell):
    """An 8 x 8 map upsampled to 64 px (align_corners=False) repeats an edge cell out to the border: the
    first maximum in raster order would be the border pixel of a top or left cell (3.5 px off its centre)."""
    import torch
    import torch.nn.functional as F

    grid = torch.full((1, 1, 8, 8), 0.2)
    grid[0, 0, cell[0], cell[1]] = 1.0
    cam = F.interpolate(grid, size=(64, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
    centre = np.array(cell) * 8 + 3.5

    peak = np.array(map_peak(cam))

    assert np.abs(peak - centre).max() <= 0.5, f"peak {peak} of cell {cell}, whose centre is {centre}"


def test_a_lesion_under_a_top_left_edge_cell_is_hit_although_it_does_not_touch_the_border():
    import torch
    import torch.nn.functional as F

    grid = torch.full((1, 1, 8, 8), 0.2)
    grid[0, 0, 0, 0] = 1.0
    cam = F.interpolate(grid, size=(64, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[2:6, 2:6] = 1  # inside the cell, 2 px from the border

    assert localise(cam, mask, tolerance_px=0).pointing_game == 1.0
