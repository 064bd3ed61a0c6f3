"""How well explanation maps point at the lesion: energy in the mask, the same against uniform, pointing game.

For one map `cam` (non-negative, [H, W]) and a lesion mask (bool, [H, W]):

- `energy_in_mask`: the share of the map's total energy that lies inside the mask;
- `energy_ratio_vs_uniform`: that share divided by the mask's area fraction, so 1.0 means no better than a
  uniform map and 2.0 means the mask holds twice its fair share;
- `pointing_game`: 1 if the map's maximum lies inside the mask (dilated by `tolerance_px` pixels, since a
  maximum on the lesion's rim still points at it), else 0.

Images with an empty mask (normal kidneys) have no lesion to point at and are left out of every metric.
A map with no positive value (no channel added evidence for the class) has no peak: it counts as a miss
and puts the mask's area fraction of its (zero) energy inside, as a uniform map would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


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
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return Localisation(
        energy_in_mask=energy_in_mask,
        energy_ratio_vs_uniform=float(energy_in_mask / area_fraction),
        pointing_game=float(tolerant[peak]) if total > 0 else 0.0,
    )
