"""Measuring a model and its Score-CAM maps on held-out images: lesion test, localisation, faithfulness.

`measure_explanations` runs Score-CAM's masked passes once per image (they serve both weightings and
every class), then, per image and weighting (`score`, `softmax`):

- localisation of the explained class's map against the lesion mask (`renalmae.explain.localisation`),
  beside the pointing game's chance level (the tolerant mask's area fraction: the hit rate of a peak
  placed uniformly at random) and the distance of the map's peak from the image border;
- faithfulness: deletion and insertion AUC in the map's pixel order and in a seeded random order
  (`renalmae.explain.faithfulness`; the random order is shared by both weightings);
- class sensitivity: the mean correlation of the map with the maps of the other classes;
- agreement with the model's own behaviour: the rank correlation of the map with the image's occlusion
  map on the same grid (`renalmae.explain.occlusion`), and whether the map's peak and the occlusion map's
  peak lie in a cell of the grid's outer ring (edge peaks the model's own behaviour shares are its
  evidence; edge peaks it does not share are the map's artefact);

and, once per image (the same in both weightings' rows), the lesion test, which uses no map
(`renalmae.explain.lesion`). The result is one row per (image, weighting); `summarise` turns it into means
with cluster-bootstrap CIs per weighting and true class (and `all`), `summarise_lesion` the lesion test
per true class, which data measured them being the images given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from renalmae.explain.faithfulness import map_correlation, perturbation_curves, pixel_ranks, random_ranks
from renalmae.explain.images import cam_layer, image_channel_scores
from renalmae.explain.lesion import LesionTest, lesion_test
from renalmae.explain.localisation import localise, map_peak
from renalmae.explain.occlusion import occlusion_maps, on_edge_cell, on_pixels, rank_agreement
from renalmae.explain.scorecam import Precision, cam_maps
from renalmae.explain.summary import mean_interval
from renalmae.models.preprocess import to_model_input
from renalmae.params import ExplainParams

WEIGHTINGS = ("score", "softmax")
CHUNK_IMAGES = 32
"""Images whose masked passes, maps and curves are held at once (memory stays flat for any count)."""
BORDER_FRACTION = 1 / 16
"""A peak closer to the border than this fraction of the side (4 px at 64 px) counts as a border peak."""
OCCLUSION_LOCATION = ("occlusion_peak_edge_cell", "occlusion_energy_ratio")
"""Where the model's own occlusion map puts its evidence (the same in both weightings' rows)."""
LOCALISATION_METRICS = (
    "energy_in_mask", "energy_ratio_vs_uniform", "pointing_game", "pointing_chance", "peak_near_border",
    "empty_map", "peak_edge_cell", *OCCLUSION_LOCATION,
)  # fmt: skip
FAITHFULNESS_METRICS = (
    "deletion_auc", "deletion_auc_random", "deletion_gain", "insertion_auc", "insertion_auc_random",
    "insertion_gain", "class_correlation", "occlusion_spearman",
)  # fmt: skip


@dataclass(frozen=True)
class Measured:
    """Per-image measurements, the maps kept for figures, and the layer they were read from."""

    table: pd.DataFrame  # one row per (image, weighting); `image` indexes the images given
    maps: dict[str, np.ndarray]  # weighting → [len(keep), H, W] maps of the explained class
    targets: np.ndarray  # [N] explained class per image
    probabilities: np.ndarray  # [N, classes] clean-input probabilities
    layer: str
    grid: tuple[int, int]
    channels: int
    layer_channels: int


def _peak(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Row and column [B] of each map's peak (`localisation.map_peak`: the centre of its maximal plateau)."""
    peaks = np.array([map_peak(cam) for cam in maps.cpu().numpy()]).reshape(-1, 2)
    return peaks[:, 0], peaks[:, 1]


def measure_explanations(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    targets: np.ndarray | None,
    settings: ExplainParams,
    precision: Precision = "auto",
    keep: list[int] | None = None,
    faithful: np.ndarray | None = None,
    progress: bool = False,
    occluded: np.ndarray | None = None,
) -> Measured:
    """Measure Score-CAM of uint8 `images` [N, H, W] against `masks` [N, H, W] for `targets`.

    `targets` None maps the predicted class; `keep`: indices of the images whose maps are returned;
    `faithful`: which images [N] (bool) get deletion / insertion curves (default all; NaN for the others,
    e.g. images shown as figures but not measured); the same images with a lesion mask get the lesion test
    (`renalmae.explain.lesion`); `occluded`: which images [N] (bool) get an occlusion map and each
    weighting's rank agreement with it (`renalmae.explain.occlusion`; default: the `faithful` ones)."""
    keep = list(keep or [])
    faithful = np.ones(len(images), dtype=bool) if faithful is None else np.asarray(faithful, dtype=bool)
    occluded = faithful if occluded is None else np.asarray(occluded, dtype=bool)
    generator = torch.Generator().manual_seed(settings.seed)
    height, width = images.shape[-2:]
    rows, kept_maps = [], {weighting: {} for weighting in WEIGHTINGS}
    all_targets, all_probabilities = [], []
    for start in range(0, len(images), CHUNK_IMAGES):
        chunk = slice(start, min(start + CHUNK_IMAGES, len(images)))
        scores = image_channel_scores(model, images[chunk], settings, precision, progress)
        probabilities = scores.probabilities
        chosen = probabilities.argmax(dim=1) if targets is None else torch.tensor(np.asarray(targets[chunk]))
        chosen = chosen.to(probabilities.device).long()
        count, classes = probabilities.shape
        every = range(count)
        class_maps = {
            weighting: torch.stack(
                [cam_maps(scores, torch.full_like(chosen, c), weighting) for c in range(classes)]
            )
            for weighting in WEIGHTINGS
        }
        maps = {weighting: class_maps[weighting][chosen, torch.arange(count)] for weighting in WEIGHTINGS}
        ranks = {weighting: pixel_ranks(maps[weighting], generator) for weighting in WEIGHTINGS}
        ranks["random"] = random_ranks((count, height, width), generator)
        auc = {(name, kind): np.full(count, np.nan) for name in ranks for kind in ("deletion", "insertion")}
        selected = torch.as_tensor(np.flatnonzero(faithful[chunk]))
        if len(selected):
            inputs = to_model_input(torch.as_tensor(np.ascontiguousarray(images[chunk][selected.numpy()])))
            curves = perturbation_curves(
                model, inputs, chosen[selected.to(chosen.device)], {n: r[selected] for n, r in ranks.items()},
                settings.faithfulness_steps, settings.batch_size, precision,
            )  # fmt: skip
            for name, curve in curves.items():
                auc[name, "deletion"][selected.numpy()] = curve.deletion_auc
                auc[name, "insertion"][selected.numpy()] = curve.insertion_auc
        agreement = _occlusion_agreement(
            model,
            images[chunk],
            masks[chunk],
            np.asarray(occluded[chunk]),
            chosen,
            maps,
            scores.grid,
            settings,
            precision,
        )
        lesion = _lesion_test(model, images[chunk], masks[chunk], faithful[chunk], chosen, start, settings,
                              precision)  # fmt: skip
        for weighting in WEIGHTINGS:
            correlations = np.stack(
                [map_correlation(maps[weighting], class_maps[weighting][c]) for c in range(classes)]
            )
            peak_rows, peak_cols = _peak(maps[weighting])
            edge_peaks = on_edge_cell(peak_rows, peak_cols, (height, width), scores.grid)
            for index in every:
                image = start + index
                target = int(chosen[index])
                cam = maps[weighting][index].cpu().numpy()
                others = [correlations[c, index] for c in range(classes) if c != target]
                located = localise(cam, masks[image], settings.pointing_tolerance_px)
                tolerant_area = _tolerant_area(masks[image], settings.pointing_tolerance_px)
                border = min(peak_rows[index], peak_cols[index], height - 1 - peak_rows[index],
                             width - 1 - peak_cols[index])  # fmt: skip
                rows.append({
                    "image": image, "weighting": weighting, "target": target,
                    "probability": float(probabilities[index, target]),
                    "predicted": int(probabilities[index].argmax()),
                    "has_mask": located is not None,
                    "energy_in_mask": located.energy_in_mask if located else np.nan,
                    "energy_ratio_vs_uniform": located.energy_ratio_vs_uniform if located else np.nan,
                    "pointing_game": located.pointing_game if located else np.nan,
                    "pointing_chance": tolerant_area if located else np.nan,
                    "peak_row": int(peak_rows[index]), "peak_col": int(peak_cols[index]),
                    "peak_border_px": int(border),
                    "peak_near_border": float(border < height * BORDER_FRACTION),
                    "empty_map": float(cam.max() <= 0),
                    "deletion_auc": auc[weighting, "deletion"][index],
                    "deletion_auc_random": auc["random", "deletion"][index],
                    "insertion_auc": auc[weighting, "insertion"][index],
                    "insertion_auc_random": auc["random", "insertion"][index],
                    "class_correlation": float(np.nanmean(others)) if others and np.isfinite(others).any()
                    else np.nan,
                    "occlusion_spearman": agreement[weighting][index],
                    "peak_edge_cell": edge_peaks[index],
                    **{name: agreement[name][index] for name in OCCLUSION_LOCATION},
                    "lesion_drop": lesion.lesion_drop[index], "elsewhere_drop": lesion.elsewhere_drop[index],
                    "lesion_excess": lesion.excess[index], "lesion_larger": lesion.lesion_larger[index],
                    "placements": int(lesion.placements[index]),
                })  # fmt: skip
                if image in keep:
                    kept_maps[weighting][image] = cam
        all_targets.append(chosen.cpu().numpy())
        all_probabilities.append(probabilities.cpu().numpy())
    table = pd.DataFrame(rows)
    table["deletion_gain"] = table["deletion_auc_random"] - table["deletion_auc"]
    table["insertion_gain"] = table["insertion_auc"] - table["insertion_auc_random"]
    layer, _ = cam_layer(model, settings)
    return Measured(
        table=table,
        maps={
            w: np.stack([kept_maps[w][i] for i in keep]) if keep else np.empty((0, height, width))
            for w in WEIGHTINGS
        },  # fmt: skip
        targets=np.concatenate(all_targets),
        probabilities=np.concatenate(all_probabilities),
        layer=layer.path,
        grid=scores.grid,
        channels=int(scores.activations.shape[1]),
        layer_channels=scores.layer_channels,
    )


def _occlusion_agreement(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    occluded: np.ndarray,
    targets: torch.Tensor,
    maps: dict[str, torch.Tensor],
    grid: tuple[int, int],
    settings: ExplainParams,
    precision: Precision,
) -> dict[str, np.ndarray]:
    """Per weighting, the rank agreement [n] of each map with the image's occlusion map, and where the
    occlusion map itself puts the model's evidence: `occlusion_peak_edge_cell` (its largest drop in a cell
    of the grid's outer ring) and `occlusion_energy_ratio` (its positive drops inside the lesion mask
    against the mask's area share, as `localise` measures a map). NaN where not `occluded`."""
    found = {name: np.full(len(images), np.nan) for name in (*WEIGHTINGS, *OCCLUSION_LOCATION)}
    chosen = np.flatnonzero(occluded)
    if not len(chosen):
        return found
    inputs = to_model_input(torch.as_tensor(np.ascontiguousarray(images[chosen])))
    index = torch.as_tensor(chosen, device=targets.device)
    occlusion = occlusion_maps(model, inputs, targets[index], grid, settings.batch_size, precision)
    for weighting in WEIGHTINGS:
        found[weighting][chosen] = rank_agreement(maps[weighting][index], occlusion)
    size = tuple(images.shape[-2:])
    peaks = [np.unravel_index(int(cells.argmax()), cells.shape) for cells in occlusion.numpy()]
    cell_size = np.array(size) / np.array(grid)
    centres = np.array([(np.array(peak) + 0.5) * cell_size for peak in peaks]).astype(int)
    found["occlusion_peak_edge_cell"][chosen] = on_edge_cell(centres[:, 0], centres[:, 1], size, grid)
    for position, evidence in zip(chosen, on_pixels(occlusion, size), strict=True):
        located = localise(np.clip(evidence, 0, None), masks[position], 0)
        found["occlusion_energy_ratio"][position] = located.energy_ratio_vs_uniform if located else np.nan
    return found


def _lesion_test(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    tested: np.ndarray,
    targets: torch.Tensor,
    first_image: int,
    settings: ExplainParams,
    precision: Precision,
) -> LesionTest:
    """The lesion test of the `tested` images [n] (NaN for the others and for images without a mask);
    image `first_image + i`'s placements are seeded by that number."""
    tested = np.flatnonzero(tested)
    result = LesionTest(
        np.full(len(images), np.nan), np.full(len(images), np.nan), np.zeros(len(images), int)
    )
    if not len(tested):
        return result
    inputs = to_model_input(torch.as_tensor(np.ascontiguousarray(images[tested])))
    index = torch.as_tensor(tested, device=targets.device)
    found = lesion_test(
        model, inputs, np.asarray(masks[tested]), targets[index], settings.lesion_placements, settings.seed,
        settings.batch_size, precision, image_keys=[first_image + int(i) for i in tested],
    )  # fmt: skip
    result.lesion_drop[tested] = found.lesion_drop
    result.elsewhere_drop[tested] = found.elsewhere_drop
    result.placements[tested] = found.placements
    return result


def _tolerant_area(mask: np.ndarray, tolerance_px: int) -> float:
    from scipy import ndimage

    mask = np.asarray(mask).astype(bool)
    tolerant = ndimage.binary_dilation(mask, iterations=tolerance_px) if tolerance_px > 0 else mask
    return float(tolerant.mean())


def summarise(
    table: pd.DataFrame, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict[str, dict[str, dict]]:
    """{weighting: {class | 'all': {metric: {mean, low, high, n, groups}}}} of a table with `label`, `group`.

    Localisation metrics use the images with a lesion mask; faithfulness and class sensitivity all rows.
    """
    summary: dict[str, dict[str, dict]] = {}
    for weighting, rows in table.groupby("weighting", sort=False):
        per_class: dict[str, dict] = {}
        for class_name, members in [*rows.groupby("label", sort=False), ("all", rows)]:
            entry = {}
            for metric in LOCALISATION_METRICS + FAITHFULNESS_METRICS:
                used = members[members["has_mask"]] if metric in LOCALISATION_METRICS else members
                entry[metric] = mean_interval(used[metric], used["group"], confidence, resamples, seed)
            per_class[str(class_name)] = entry
        summary[str(weighting)] = per_class
    return summary
