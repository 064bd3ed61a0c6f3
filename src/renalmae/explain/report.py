"""The explain step's report: the answers first, then the pictures, then the tables, on one page.

The answers, per set, model and task: does the model use the lesion (the lesion test,
`renalmae.explain.lesion`: no map involved), and do its maps agree with its own occlusion behaviour (each
weighting's rank agreement, `renalmae.explain.occlusion`; a weighting that does not is flagged). Every
number is a mean over the measured images of one set with its cluster-bootstrap interval
(`renalmae.explain.summary`), printed as `mean (low–high)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.explain.figures import ExplainedImage, Table, grid_figure, save_overlay, write_html
from renalmae.explain.lesion import uses_lesion
from renalmae.explain.measure import Measured
from renalmae.explain.occlusion import agrees

SET_NAMES = {"external": "external set", "test": "internal holdout"}
FIGURE_SCALE = 4
"""Pixels per image pixel in the report's grids (a 64-px image is shown 256 px wide)."""


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
    set_name: str = "test"
    lesion: dict[str, dict] | None = None  # `lesion.summarise_lesion`: {class | all: {metric: entry}}


def _number(value: float) -> str:
    """Three decimals, never `-0.000` (a value that rounds to zero has no sign)."""
    return f"{round(value, 3) + 0.0:.3f}"


def interval_text(entry: dict) -> str | None:
    """`mean (low–high)` of a `mean_interval` entry (`low to high` when a bound is negative, so a minus sign
    is not read as a dash); `mean` alone without an interval; None without a mean."""
    if entry.get("mean") is None:
        return None
    if entry.get("low") is None:
        return _number(entry["mean"])
    low, high = _number(entry["low"]), _number(entry["high"])
    between = " to " if low.startswith("-") or high.startswith("-") else "–"
    return f"{_number(entry['mean'])} ({low}{between}{high})"


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
                        SET_NAMES.get(item.set_name, item.set_name),
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
    first_set = explained[0].set_name if explained else None
    rows = [
        [item.model, item.task, item.fold, item.layer, f"{item.grid[0]} × {item.grid[1]}",
         f"{item.channels} / {item.layer_channels}", item.grid_warning]
        for item in explained
        if item.set_name == first_set
    ]  # fmt: skip
    return header, rows


def localisation_table(explained: list[ExplainedModel]) -> Table:
    metrics = (
        "energy_in_mask", "energy_ratio_vs_uniform", "pointing_game", "pointing_chance", "peak_near_border",
        "empty_map",
    )  # fmt: skip
    header = [
        "set", "model", "task", "weighting", "class", "images (groups)", "energy in mask",
        "energy ratio vs uniform", "pointing game", "pointing chance", "peaks near border", "empty maps",
    ]  # fmt: skip
    return header, _rows(explained, metrics, "energy_in_mask")


def faithfulness_table(explained: list[ExplainedModel]) -> Table:
    metrics = (
        "deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random", "class_correlation",
    )  # fmt: skip
    header = [
        "set", "model", "task", "weighting", "class", "images (groups)", "deletion AUC ↓",
        "deletion AUC, random order", "insertion AUC ↑", "insertion AUC, random order",
        "correlation with other classes' maps ↓",
    ]  # fmt: skip
    return header, _rows(explained, metrics, "deletion_auc")


def agreement_table(explained: list[ExplainedModel]) -> Table:
    header = [
        "set", "model", "task", "weighting", "class", "images (groups)", "rank agreement with occlusion ↑",
        "map peak in an edge cell", "occlusion peak in an edge cell", "occlusion energy ratio vs uniform",
    ]  # fmt: skip
    metrics = ("occlusion_spearman", "peak_edge_cell", "occlusion_peak_edge_cell", "occlusion_energy_ratio")
    return header, _rows(explained, metrics, "occlusion_spearman")


def lesion_table(explained: list[ExplainedModel]) -> Table:
    header = [
        "set", "model", "task", "class", "images (groups)", "drop, lesion removed",
        "drop, shape removed elsewhere", "excess (lesion − elsewhere)", "share of images: lesion drop larger",
        "uses the lesion",
    ]  # fmt: skip
    rows = []
    for item in explained:
        for class_name, entry in (item.lesion or {}).items():
            if entry["lesion_excess"]["n"] == 0:
                continue
            cells = [interval_text(entry[m]) for m in ("lesion_drop", "elsewhere_drop", "lesion_excess",
                                                       "lesion_larger")]  # fmt: skip
            rows.append([SET_NAMES.get(item.set_name, item.set_name), item.model, item.task, class_name,
                         f"{entry['lesion_excess']['n']} ({entry['lesion_excess']['groups']})", *cells,
                         _yes_no(uses_lesion(entry))])  # fmt: skip
    return header, rows


def _yes_no(answer: bool | None) -> str:
    return "not measured" if answer is None else ("yes" if answer else "no")


def _short(entry: dict) -> str:
    return "—" if entry.get("mean") is None else _number(entry["mean"])


def _percent(entry: dict) -> str:
    return "—" if entry.get("mean") is None else f"{entry['mean']:.0%}"


def _edge_peaks(item: ExplainedModel) -> str:
    """Where the maps and the model's own occlusion maps peak: edge peaks that occlusion shares are the
    model's evidence, edge peaks it does not share are the map's."""
    maps, occlusion = [], None
    for weighting, per_class in item.summary.items():
        entry = per_class.get("all", {})
        if entry.get("peak_edge_cell", {}).get("mean") is not None:
            maps.append(f"{weighting} {_percent(entry['peak_edge_cell'])}")
        if occlusion is None and entry.get("occlusion_peak_edge_cell", {}).get("mean") is not None:
            occlusion = _percent(entry["occlusion_peak_edge_cell"])
    if not maps:
        return "not measured"
    return f"map: {', '.join(maps)}; occlusion: {occlusion or 'not measured'}"


def answer_table(explained: list[ExplainedModel]) -> Table:
    """One row per set, model and task: the lesion test's answer and each weighting's agreement with
    occlusion, a disagreeing weighting flagged."""
    header = ["set", "model", "task", "uses the lesion? (drop when removed vs elsewhere)",
              "maps agree with occlusion? (rank r per weighting)",
              "peaks in an edge cell: map (per weighting) vs the model's occlusion map"]  # fmt: skip
    rows = []
    for item in explained:
        lesion = (item.lesion or {}).get("all")
        if lesion is None or lesion["lesion_excess"]["n"] == 0:
            uses = "not measured (no image with a lesion mask)"
        else:
            uses = (
                f"{_yes_no(uses_lesion(lesion))} ({_short(lesion['lesion_drop'])} vs "
                f"{_short(lesion['elsewhere_drop'])}; larger in {_percent(lesion['lesion_larger'])} of "
                f"{lesion['lesion_excess']['n']} images, {lesion['lesion_excess']['groups']} groups)"
            )
        verdicts = []
        for weighting, per_class in item.summary.items():
            entry = per_class.get("all", {}).get("occlusion_spearman")
            if entry is None or entry["n"] == 0:
                continue
            answer = agrees(entry)
            flag = "" if answer else " — FLAGGED: does not agree"
            verdicts.append(f"{weighting}: r = {interval_text(entry)}{flag}")
        rows.append([SET_NAMES.get(item.set_name, item.set_name), item.model, item.task, uses,
                     "; ".join(verdicts) or "not measured", _edge_peaks(item)])  # fmt: skip
    return header, rows


ANSWERS = "The answers"
NOTES = {
    ANSWERS: (
        "Uses the lesion: yes when removing the lesion (set to the baseline, as the deletion curve does) "
        "lowers the explained class's probability more than removing the same shape elsewhere in the image "
        "(seeded placements off the lesion), i.e. the cluster-bootstrap interval of the difference lies "
        "above 0. No explanation map is involved. Maps agree with occlusion: Spearman rank correlation, per "
        "image, of the map averaged over the layer's grid cells with the model's occlusion sensitivity on "
        "the same cells (the probability drop when a cell is removed); a weighting whose interval does not "
        "lie above 0 is flagged: its maps do not order the image as the model's own behaviour does. Ties in "
        "an occlusion map (cells that change nothing) cap r below 1. Peaks in an edge cell (the grid's outer "
        "ring: 44 % of the cells at 8 × 8): a map that peaks at the edge far more often than the model's "
        "occlusion map shows an artefact of the map, not the model's evidence."
    ),
    "Lesion test": (
        "Per true class: mean probability drop of the explained class when the lesion is removed and "
        "when its shape is removed elsewhere (mean over the placements), their difference, and the share of "
        "images whose lesion drop is the larger; 95 % cluster-bootstrap intervals over groups."
    ),
    "Agreement with occlusion": (
        "Spearman rank correlation of each map (cell means) with the model's occlusion map on the same "
        "grid: 1 = the same order of cells, 0 = unrelated, < 0 = pointing away from the evidence. Where "
        "the map and the model's own occlusion map peak: the share of images whose peak lies in a cell of "
        "the grid's outer ring (44 % of the cells at 8 × 8): a map whose edge peaks the occlusion map shares "
        "shows the model's evidence, one whose edge peaks it does not shows an artefact. Occlusion energy "
        "ratio: the occlusion map's positive drops inside the lesion against its area share (1 = uniform)."
    ),
    "Layers": (
        "Grid: the layer's cells a side; maps coarser than explain.min_grid cannot localise. Channels: the "
        "top-k by spatial standard deviation per image (Faster Score-CAM) out of the layer's."
    ),
    "Localisation against lesion masks": (
        "Over the measured images with a lesion mask; mean (95 % cluster-bootstrap interval, "
        "groups resampled). Energy ratio 1.0 = no better than a uniform map; pointing chance = the hit "
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
    return grid_figure(folder / "grid.png", items, scale=FIGURE_SCALE)


def write_report(
    path: str | os.PathLike, explained: list[ExplainedModel], figures: dict[str, list[Path]], note: str
) -> Path:
    """The step's self-contained `index.html`: the answers, the pictures, then the tables."""
    tables = {
        "Lesion test": lesion_table(explained),
        "Agreement with occlusion": agreement_table(explained),
        "Layers": layer_table(explained),
        "Localisation against lesion masks": localisation_table(explained),
        "Faithfulness and class sensitivity": faithfulness_table(explained),
    }
    answers = {ANSWERS: answer_table(explained)}
    return write_html(path, "Does each model use the lesion, and do its maps show it?", note, tables, figures,
                      NOTES, answers=answers)  # fmt: skip
