"""Occlusion sensitivity is the maps' reference: Score-CAM of a model built to use only the lesion (or only
the border) agrees with it; a map that points elsewhere is flagged."""

from __future__ import annotations

import numpy as np
import torch
from explainkit import lesion_images, region_model

from renalmae.explain.layers import cnn_layer
from renalmae.explain.measure import measure_explanations
from renalmae.explain.occlusion import (
    agrees,
    cell_masks,
    occlusion_maps,
    on_edge_cell,
    on_grid,
    rank_agreement,
)
from renalmae.explain.scorecam import explain
from renalmae.explain.summary import mean_interval
from renalmae.models.preprocess import to_model_input
from renalmae.params import ExplainParams

GROUPS = np.repeat([f"series{i}" for i in range(6)], 2)


def _maps_and_occlusion(region):
    images, _, _, _ = lesion_images()
    model = region_model(region)
    inputs, targets = to_model_input(torch.from_numpy(images)), torch.zeros(len(images), dtype=torch.long)
    maps = explain(model, inputs, targets, layer=cnn_layer(model, "features"), weighting="score").maps
    return maps, occlusion_maps(model, inputs, targets, (8, 8), batch_size=50)


def test_occlusion_of_a_lesion_only_model_is_the_lesion_cells():
    _, _, disc, _ = lesion_images(count=1)
    _, occlusion = _maps_and_occlusion(disc)
    touched = on_grid(torch.from_numpy(disc[None].astype(np.float32)), (8, 8))[0] > 0
    assert (occlusion[:, touched] > 0).all()
    np.testing.assert_allclose(occlusion[:, ~touched], 0.0, atol=1e-6)


def test_score_cam_of_a_lesion_only_model_agrees_with_occlusion():
    _, _, disc, _ = lesion_images(count=1)
    maps, occlusion = _maps_and_occlusion(disc)
    agreement = rank_agreement(maps, occlusion)
    # Occlusion is exactly 0 on the 60 cells off the lesion: ties cap Spearman's r near 0.44 for a map that
    # ranks the 4 lesion cells first, which this one does.
    assert np.all(agreement > 0.4)
    evidence = occlusion.flatten(1) > 0
    top = on_grid(maps, (8, 8)).flatten(1).topk(int(evidence[0].sum()), dim=1).indices
    assert evidence.gather(1, top).all()
    assert agrees(mean_interval(agreement, GROUPS, resamples=200)) is True


def test_score_cam_of_a_border_only_model_agrees_with_its_occlusion_too():
    _, _, _, border = lesion_images(count=1)
    maps, occlusion = _maps_and_occlusion(border)
    assert np.all(rank_agreement(maps, occlusion) > 0.7)


def test_a_map_that_points_away_from_the_models_evidence_is_flagged():
    _, _, disc, _ = lesion_images(count=1)
    maps, occlusion = _maps_and_occlusion(disc)
    agreement = rank_agreement(1 - maps, occlusion)
    assert np.all(agreement < -0.4)
    assert agrees(mean_interval(agreement, GROUPS, resamples=200)) is False


def test_an_empty_map_orders_nothing_and_is_flagged():
    occlusion = torch.rand(2, 4, 4)
    agreement = rank_agreement(torch.zeros(2, 16, 16), occlusion)
    np.testing.assert_array_equal(agreement, [0.0, 0.0])
    assert agrees(mean_interval(agreement, ["a", "b"])) is False


def test_a_model_that_no_cell_moves_has_no_rank_agreement():
    agreement = rank_agreement(torch.rand(2, 16, 16), torch.zeros(2, 4, 4))
    assert np.isnan(agreement).all()
    assert agrees(mean_interval(agreement, ["a", "b"])) is None


def test_cells_cover_every_pixel_once_when_the_grid_does_not_divide_the_image():
    masks = cell_masks((30, 20), (7, 3))
    assert masks.shape == (21, 30, 20)
    assert (masks.sum(dim=0) == 1).all()


def test_edge_cells_are_the_grids_outer_ring_whatever_the_pixel():
    rows, cols = np.array([0, 7, 8, 31, 60, 63]), np.array([30, 30, 30, 30, 30, 63])
    np.testing.assert_array_equal(on_edge_cell(rows, cols, (64, 64), (8, 8)), [1, 1, 0, 0, 1, 1])


def test_occlusion_of_a_border_only_model_peaks_on_the_edge_and_misses_the_lesion():
    images, masks, disc, border = lesion_images(count=2)
    targets = np.zeros(2, dtype=int)
    settings = ExplainParams(cnn_layer="features", cnn_channels=0, batch_size=50, lesion_placements=4)
    measured = measure_explanations(region_model(border), images, masks, targets, settings)
    assert (measured.table["occlusion_peak_edge_cell"] == 1.0).all()
    assert (measured.table["occlusion_energy_ratio"] == 0.0).all()  # no drop inside the lesion
    lesion_only = measure_explanations(region_model(disc), images, masks, targets, settings)
    assert (lesion_only.table["occlusion_peak_edge_cell"] == 0.0).all()
    assert (lesion_only.table["occlusion_energy_ratio"] > 5).all()
    assert (lesion_only.table["occlusion_spearman"] > 0.4).all()
