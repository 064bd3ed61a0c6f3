"""The explain step's report: layer, localisation, faithfulness and class-sensitivity tables, and the page.

Every number is a mean over the measured holdout images with its cluster-bootstrap interval
(`renalmae.explain.summary`), printed as `mean (low–high)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.explain.figures import ExplainedImage, Table, grid_figure, save_overlay, write_html
from renalmae.explain.measure import Measured


@dataclass(frozen=True)
class ExplainedModel:
    """One explained (model, task): where its maps come from and its summary (`measure.summarise`)."""

    model: str
    task: str
    fold: int
    layer: str
    grid: tuple[int, int]
    channels: int
    layer_channels: int
    grid_warning: str | None
    summary: dict[str, dict[str, dict]]


def interval_text(entry: dict) -> str | None:
    """`mean (low–high)` of a `mean_interval` entry; `mean` alone without an interval; None without a mean."""
    if entry.get("mean") is None:
        return None
    if entry.get("low") is None:
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} ({entry['low']:.3f}–{entry['high']:.3f})"


def _rows(explained: list[ExplainedModel], metrics: tuple[str, ...], count_metric: str) -> list[list]:
    rows = []
    for item in explained:
        for weighting, classes in item.summary.items():
            for class_name, entry in classes.items():
                count = entry[count_metric]
                if count["n"] == 0:
                    continue
                cells = [interval_text(entry[metric]) for metric in metrics]
                rows.append(
                    [
                        item.model,
                        item.task,
                        weighting,
                        class_name,
                        f"{count['n']} ({count['groups']})",
                        *cells,
                    ]
                )
    return rows


def layer_table(explained: list[ExplainedModel]) -> Table:
    header = ["model", "task", "fold", "layer", "grid", "channels weighed / layer", "warning"]
    rows = [
        [item.model, item.task, item.fold, item.layer, f"{item.grid[0]} × {item.grid[1]}",
         f"{item.channels} / {item.layer_channels}", item.grid_warning or ""]
        for item in explained
    ]  # fmt: skip
    return header, rows


def localisation_table(explained: list[ExplainedModel]) -> Table:
    metrics = (
        "energy_in_mask", "energy_ratio_vs_uniform", "pointing_game", "pointing_chance", "peak_near_border",
        "empty_map",
    )  # fmt: skip
    header = [
        "model", "task", "weighting", "class", "images (series)", "energy in mask", "energy ratio vs uniform",
        "pointing game", "pointing chance", "peaks near border", "empty maps",
    ]  # fmt: skip
    return header, _rows(explained, metrics, "energy_in_mask")


def faithfulness_table(explained: list[ExplainedModel]) -> Table:
    metrics = (
        "deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random", "class_correlation",
    )  # fmt: skip
    header = [
        "model", "task", "weighting", "class", "images (series)", "deletion AUC ↓",
        "deletion AUC, random order", "insertion AUC ↑", "insertion AUC, random order",
        "correlation with other classes' maps ↓",
    ]  # fmt: skip
    return header, _rows(explained, metrics, "deletion_auc")


NOTES = {
    "Layers": (
        "Grid: the layer's cells a side; maps coarser than explain.min_grid cannot localise. Channels: the "
        "top-k by spatial standard deviation per image (Faster Score-CAM) out of the layer's."
    ),
    "Localisation against lesion masks": (
        "Over the measured holdout images with a lesion mask; mean (95 % cluster-bootstrap interval, "
        "series resampled). Energy ratio 1.0 = no better than a uniform map; pointing chance = the hit "
        "rate of a randomly placed peak; peaks near border = share of map peaks within 1/16 of the side "
        "of the image border (the peak of a map in a random cell of an h × w grid is in an edge cell "
        "1 − (h−2)(w−2)/hw of the time: 44 % at 8 × 8); empty maps = maps with no positive evidence "
        "(they count as misses)."
    ),
    "Faithfulness and class sensitivity": (
        "Deletion / insertion AUC (Petsiuk et al. 2018): the explained class's probability as pixels are "
        "removed from the image / revealed on a blurred copy in the map's order; a faithful map beats the "
        "random order (lower deletion, higher insertion). Correlation: Pearson correlation of the map with "
        "the same image's maps of the other classes (1 = the map ignores the class)."
    ),
}


def write_figures(
    folder: Path,
    shown: pd.DataFrame,
    keep: list[int],
    images: np.ndarray,
    masks: np.ndarray,
    measured: Measured,
    class_names: list[str],
    weighting: str,
) -> Path:
    """One labelled overlay strip per shown image (`shown` rows, at indices `keep`) and their grid figure
    (untitled: the report's section heading names it)."""
    items = []
    for position, (index, row) in enumerate(zip(keep, shown.itertuples(), strict=True)):
        target, predicted = int(measured.targets[index]), int(measured.probabilities[index].argmax())
        probability = float(measured.probabilities[index, predicted])
        item = ExplainedImage(
            image_id=str(row.id), label=str(row.label), image=images[index],
            cam=measured.maps[weighting][position], mask=masks[index], explained_class=class_names[target],
            predicted_class=class_names[predicted], probability=probability,
        )  # fmt: skip
        save_overlay(folder / f"{item.label}_{item.image_id}.png", item, scale=2)
        items.append(item)
    return grid_figure(folder / "grid.png", items)


def write_report(
    path: str | os.PathLike, explained: list[ExplainedModel], figures: dict[str, list[Path]], note: str
) -> Path:
    """The step's self-contained `index.html`."""
    tables = {
        "Layers": layer_table(explained),
        "Localisation against lesion masks": localisation_table(explained),
        "Faithfulness and class sensitivity": faithfulness_table(explained),
    }
    return write_html(path, "Score-CAM explanations", note, tables, figures, NOTES)
