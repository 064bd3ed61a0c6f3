"""How well explanation maps point at the lesion: energy in the mask, the same against uniform, pointing game.

For one map `cam` (non-negative, [H, W]) and a lesion mask (bool, [H, W]):

- `energy_in_mask`: the share of the map's total energy that lies inside the mask;
- `energy_ratio_vs_uniform`: that share divided by the mask's area fraction, so 1.0 means no better than a
  uniform map and 2.0 means the mask holds twice its fair share;
- `pointing_game`: 1 if the map's peak lies inside the mask (dilated by `tolerance_px` pixels, since a
  maximum on the lesion's rim still points at it), else 0.

The peak (`map_peak`) is the point of the map's maximal plateau deepest inside the image, not the first
maximum in raster order: a map upsampled from a grid (`align_corners=False`) is only extrapolated
between the outer cells' centres and the border (it repeats the edge cell's value there), so an edge
cell's maximum is a plateau reaching from the border to the cell's centre. Its first pixel in raster
order is the border pixel for a top or left cell (half a cell off its centre) but the cell's centre for
a bottom or right one; its deepest pixel is the cell's centre, where the value was measured, on every
side. On a map without plateaus it is the plain maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

PLATEAU_RTOL = 1e-6
"""Pixels within this fraction of the maximum are the maximal plateau (float rounding of the upsampling)."""


@dataclass(frozen=True)
class Localisation:
    """The localisation of one map against one non-empty mask."""

    energy_in_mask: float
    energy_ratio_vs_uniform: float
    pointing_game: float


def localise(cam: np.ndarray, mask: np.ndarray, tolerance_px: int = 1) -> Localisation | None:
    """Localisation metrics of `cam` against `mask` (same [H, W] shape); None when the mask is empty."""
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0.0, None)
    mask = np.asarray(mask).astype(bool)
    if cam.shape != mask.shape:
        raise ValueError(f"map {cam.shape} and mask {mask.shape} differ in shape")
    area_fraction = mask.mean()
    if area_fraction == 0.0:
        return None
    total = cam.sum()
    energy_in_mask = float(cam[mask].sum() / total) if total > 0 else float(area_fraction)
    tolerant = ndimage.binary_dilation(mask, iterations=tolerance_px) if tolerance_px > 0 else mask
    peak = map_peak(cam)
    return Localisation(
        energy_in_mask=energy_in_mask,
        energy_ratio_vs_uniform=float(energy_in_mask / area_fraction),
        pointing_game=float(tolerant[peak]) if total > 0 else 0.0,
    )


def map_peak(cam: np.ndarray) -> tuple[int, int]:
    """(row, column) of `cam`'s peak: of the connected pixels within `PLATEAU_RTOL` of the maximum that hold
    the first maximum in raster order, the one farthest from the image border (the first such in raster
    order)."""
    cam = np.asarray(cam, dtype=np.float64)
    first = np.unravel_index(int(np.argmax(cam)), cam.shape)
    top = cam[first]
    plateau, _ = ndimage.label(cam >= top - abs(top) * PLATEAU_RTOL)
    rows, cols = np.nonzero(plateau == plateau[first])
    depth = np.minimum.reduce([rows, cols, cam.shape[0] - 1 - rows, cam.shape[1] - 1 - cols])
    deepest = int(np.argmax(depth))
    return int(rows[deepest]), int(cols[deepest])
