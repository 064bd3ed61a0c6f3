"""A reference for the maps: occlusion sensitivity on Score-CAM's grid, and each map's rank agreement with it.

Occlusion sensitivity (Zeiler & Fergus, 2014, "Visualizing and Understanding Convolutional Networks",
ECCV, Section 4.2) asks the model itself where its evidence is: each cell of an `h × w` grid over the
image is removed in turn (set to the baseline, model input 0, the removal of the deletion curve and of
the lesion test) and the drop of the explained class's probability, `p_c(X) − p_c(X with the cell
removed)`, is that cell's value. On Score-CAM's own grid (a ViT's patches, a CNN layer's cells) it needs
`h·w` forward passes per image and no access to the model's insides.

Agreement: the Spearman rank correlation, per image, between a Score-CAM map averaged over the same
cells and the occlusion map: 1 when the map orders the cells as the model's own behaviour does, about 0
when it is unrelated (or empty), negative when it points away from the evidence; NaN where the occlusion
map is constant. Ties in the occlusion map (cells whose removal changes nothing) cap r below 1. Cells are
`round(i·H/h)` pixel bands, so a grid that does not divide the image still covers every pixel once.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from renalmae.explain.faithfulness import class_probabilities, map_correlation
from renalmae.explain.scorecam import Precision


def cell_edges(size: int, cells: int) -> np.ndarray:
    """Pixel edges [cells + 1] of `cells` bands over `size` pixels."""
    return np.round(np.arange(cells + 1) * size / cells).astype(int)


def cell_masks(size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """One bool mask [h·w, H, W] per grid cell, row by row."""
    rows, cols = cell_edges(size[0], grid[0]), cell_edges(size[1], grid[1])
    masks = torch.zeros(grid[0] * grid[1], *size, dtype=torch.bool)
    for row in range(grid[0]):
        for col in range(grid[1]):
            masks[row * grid[1] + col, rows[row] : rows[row + 1], cols[col] : cols[col + 1]] = True
    return masks


@torch.inference_mode()
def occlusion_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    grid: tuple[int, int],
    batch_size: int = 64,
    precision: Precision = "auto",
) -> torch.Tensor:
    """Occlusion sensitivity [B, h, w] of `inputs` [B, C, H, W] (model input) for the classes `targets` [B].

    B·h·w occluded inputs run as one stream of forward passes of `batch_size`."""
    model.eval()
    device = next(model.parameters()).device
    inputs = inputs.to(device=device, dtype=torch.float32)
    targets = targets.to(device).long()
    count, cells = len(inputs), grid[0] * grid[1]
    kept = (~cell_masks(tuple(inputs.shape[-2:]), grid)).to(device=device, dtype=inputs.dtype)[:, None]
    clean = class_probabilities(model, inputs, targets, batch_size, precision)
    drops = torch.empty(count * cells, device=device)
    for start in range(0, count * cells, batch_size):
        pair = torch.arange(start, min(start + batch_size, count * cells), device=device)
        image, cell = pair // cells, pair % cells
        occluded = inputs[image] * kept[cell]
        probability = class_probabilities(model, occluded, targets[image], batch_size, precision)
        drops[start : start + len(pair)] = clean[image] - probability
    return drops.view(count, *grid).cpu()


def on_grid(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Maps [B, H, W] averaged over the cells of `grid` (`cell_edges` bands): [B, h, w]."""
    maps = maps.float().cpu()
    rows, cols = cell_edges(maps.shape[-2], grid[0]), cell_edges(maps.shape[-1], grid[1])
    out = torch.empty(len(maps), *grid)
    for row in range(grid[0]):
        for col in range(grid[1]):
            cell = maps[:, rows[row] : rows[row + 1], cols[col] : cols[col + 1]]
            out[:, row, col] = cell.mean(dim=(-2, -1))
    return out


def rank_agreement(maps: torch.Tensor, occlusion: torch.Tensor) -> np.ndarray:
    """Spearman correlation [B] of each map [B, H, W] (averaged onto the grid) with its occlusion map
    [B, h, w]. Ties get their average rank (scipy `rankdata`). A constant map (e.g. an empty one: no
    channel adds evidence) orders nothing: 0 where the model's occlusion map does vary; NaN where the
    occlusion map is constant (no cell changes the probability: nothing to agree with)."""
    grid = tuple(occlusion.shape[-2:])
    first = rankdata(on_grid(maps, grid).flatten(1).numpy(), axis=1)
    second = rankdata(occlusion.flatten(1).float().numpy(), axis=1)
    agreement = map_correlation(torch.from_numpy(first), torch.from_numpy(second))
    flat_map = first.min(axis=1) == first.max(axis=1)
    varying_occlusion = second.min(axis=1) < second.max(axis=1)
    agreement[flat_map & varying_occlusion] = 0.0
    return agreement


def cell_of_pixel(size: int, cells: int) -> np.ndarray:
    """The grid cell [size] of every pixel along one side (`cell_edges` bands)."""
    return np.searchsorted(cell_edges(size, cells), np.arange(size), side="right") - 1


def on_edge_cell(
    rows: np.ndarray, cols: np.ndarray, size: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    """1.0 where pixel (row, col) [B] lies in a cell of the grid's outer ring, else 0.0 (the ring holds
    1 − (h−2)(w−2)/hw of the cells: 44 % at 8 × 8)."""
    cell_rows = cell_of_pixel(size[0], grid[0])[np.asarray(rows, dtype=int)]
    cell_cols = cell_of_pixel(size[1], grid[1])[np.asarray(cols, dtype=int)]
    ring = (cell_rows == 0) | (cell_rows == grid[0] - 1) | (cell_cols == 0) | (cell_cols == grid[1] - 1)
    return ring.astype(float)


def on_pixels(occlusion: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Occlusion maps [B, h, w] spread over their cells' pixels: [B, H, W]."""
    grid = tuple(occlusion.shape[-2:])
    values = occlusion.float().cpu().numpy()
    return values[:, cell_of_pixel(size[0], grid[0])][:, :, cell_of_pixel(size[1], grid[1])]


def agrees(entry: dict) -> bool | None:
    """Whether a map variant agrees with occlusion, from the `mean_interval` entry of its per-image rank
    correlations: True when the interval lies above 0 (the mean, without an interval), False when it does
    not (the variant is flagged), None when nothing was measured."""
    if entry["mean"] is None:
        return None
    bound = entry["low"] if entry["low"] is not None else entry["mean"]
    return bool(bound > 0)
