"""The explain step's work: each chosen model measured and shown on the external set, then the holdout.

For every evaluation set of the splits (the external set first, when there is one, then the internal
holdout; as `compare` reports them) and every chosen fold model (`renalmae.explain.selection`):

- measured: every image of the set with a lesion mask (a seeded sample of `max_images`, spread over
  groups, when there are more): the lesion test, localisation, faithfulness and class sensitivity, and for
  a seeded `occlusion_images` of them the agreement of each map with occlusion
  (`renalmae.explain.measure`);
- shown: `images_per_class` images per true class (seeded), as labelled figures.

Nothing here chooses anything: the model is chosen on its validation fold, the layer and settings are
params; these sets only measure. Outputs (in `out_dir`, written atomically):

    figures/<set>/<model>/<task>/<class>_<id>.png, grid.png
    localisation.json   {set: {model: {task: {weighting: {class | all: {metric: {mean, low, high, n,
                        groups}}}}}}}
    faithfulness.json   the same layout, and beside the weightings `lesion_test`: {class | all: {metric: …}}
    measurements.parquet one row per (set, model, task, image, weighting) with every per-image number
    selection.json      per explained model: run dir, fold, validation AUC, layer, grid, channels
    index.html          the answers first, then the pictures, then the tables
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from renalmae.artifacts import Explanations
from renalmae.data.cache import IngestedData
from renalmae.data.predictions import task_targets
from renalmae.data.splits import Splits
from renalmae.explain.layers import check_grid
from renalmae.explain.lesion import summarise_lesion
from renalmae.explain.measure import (
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    measure_explanations,
    summarise,
)
from renalmae.explain.report import ExplainedModel, write_figures, write_report
from renalmae.explain.scorecam import Precision
from renalmae.explain.selection import ChosenRun, measured_images, sample_per_class
from renalmae.io import atomic_dir, write_json
from renalmae.models.trained import load_trained_model
from renalmae.params import ExplainParams

SET_NAMES = {"external": "external set", "test": "internal holdout"}


def evaluation_sets(splits: Splits) -> dict[str, list[str]]:
    """The sets explained, in report order: the external set first (when the splits have one), then the
    internal holdout."""
    sets = splits.evaluation_splits
    return {name: sets[name] for name in ("external", "test") if sets.get(name)}


def _metrics(summary: dict, metrics: tuple[str, ...]) -> dict:
    return {
        w: {c: {m: entry[m] for m in metrics} for c, entry in per_class.items()}
        for w, per_class in summary.items()
    }


def _set_rows(data: IngestedData, ids: list[str], classes: list[str], settings: ExplainParams) -> tuple:
    """(rows, images, masks, keep) of one set: measured rows first, then the shown ones not measured; `keep`
    indexes the shown rows. Rows carry `measured` and `occluded` flags."""
    rows = data.rows(ids)
    flat = np.asarray(data.masks[rows["cache_index"].to_numpy()]).reshape(len(rows), -1)
    measured = measured_images(rows, flat.any(axis=1), settings.max_images, settings.seed)
    shown = sample_per_class(rows, classes, settings.images_per_class, settings.seed)
    everyone = np.ones(len(measured), dtype=bool)
    occluded = (
        measured_images(measured, everyone, settings.occlusion_images, settings.seed)
        if settings.occlusion_images
        else measured.iloc[:0]
    )
    rows = pd.concat([measured, shown[~shown["id"].isin(measured["id"])]], ignore_index=True)
    rows["measured"] = rows["id"].isin(measured["id"])
    rows["occluded"] = rows["id"].isin(occluded["id"])
    images = np.asarray(data.images[rows["cache_index"].to_numpy()])
    masks = np.asarray(data.masks[rows["cache_index"].to_numpy()])
    keep = [int(i) for i in np.flatnonzero(rows["id"].isin(shown["id"]).to_numpy())]
    return rows, images, masks, keep


def explain_held_out(
    data: IngestedData,
    splits: Splits,
    chosen: list[ChosenRun],
    settings: ExplainParams,
    classes: list[str],
    negative_class: str,
    out_dir: Path,
    device: torch.device,
    precision: Precision = "auto",
    confidence: float = 0.95,
    resamples: int = 2000,
    progress: bool = False,
) -> Path:
    """Measure and show the `chosen` models on every evaluation set of `splits`; write `out_dir` (see above).

    `confidence`, `resamples`: the cluster bootstrap's (`evaluate.confidence`,
    `evaluate.bootstrap_resamples`).
    """
    sets = {name: _set_rows(data, ids, classes, settings) for name, ids in evaluation_sets(splits).items()}
    localisation: dict[str, dict] = {name: {} for name in sets}
    faithfulness: dict[str, dict] = {name: {} for name in sets}
    tables, explained, figures = [], [], {}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as staging_dir:
        loaded = {}
        for set_name, (rows, images, masks, keep) in sets.items():
            for choice in chosen:
                if choice.run_dir not in loaded:
                    loaded[choice.run_dir] = load_trained_model(choice.run_dir, device=device)
                model, info = loaded[choice.run_dir]
                targets = None
                if settings.target == "true":
                    targets = task_targets(rows["label"], classes, negative_class, choice.task)
                result = measure_explanations(
                    model, images, masks, targets, settings, precision, keep,
                    faithful=rows["measured"].to_numpy(), progress=progress,
                    occluded=rows["occluded"].to_numpy(),
                )  # fmt: skip
                picked = result.table["image"]
                table = result.table.assign(
                    set=set_name, model=choice.model, task=choice.task, id=rows["id"].to_numpy()[picked],
                    label=rows["label"].to_numpy()[picked], group=rows["group"].to_numpy()[picked],
                    measured=rows["measured"].to_numpy()[picked],
                    occluded=rows["occluded"].to_numpy()[picked],
                )  # fmt: skip
                tables.append(table)
                measured = table[table["measured"]]
                summary = summarise(measured, confidence, resamples, settings.seed)
                lesion = summarise_lesion(
                    measured.drop_duplicates("image"), confidence, resamples, settings.seed
                )
                localisation[set_name].setdefault(choice.model, {})[choice.task] = _metrics(
                    summary, LOCALISATION_METRICS
                )
                faithfulness[set_name].setdefault(choice.model, {})[choice.task] = {
                    **_metrics(summary, FAITHFULNESS_METRICS),
                    "lesion_test": lesion,
                }
                warning = check_grid(result.grid, result.layer, settings.min_grid)
                explained.append(ExplainedModel(
                    choice.model, choice.task, choice.fold, result.layer, result.grid, result.channels,
                    result.layer_channels, warning, summary, set_name=set_name, lesion=lesion,
                ))  # fmt: skip
                title = (
                    f"{SET_NAMES[set_name]} · {choice.model} · {choice.task} · fold {choice.fold} (best "
                    f"validation AUC) · {result.layer} {result.grid[0]}×{result.grid[1]} · "
                    f"{settings.weighting} weighting"
                )
                folder = staging_dir / Explanations.FIGURES / set_name / choice.model / choice.task
                figures[title] = [write_figures(folder, rows.iloc[keep], keep, images, masks, result,
                                                info["classes"], settings.weighting)]  # fmt: skip
        write_json(staging_dir / Explanations.LOCALISATION, localisation)
        write_json(staging_dir / Explanations.FAITHFULNESS, faithfulness)
        pd.concat(tables, ignore_index=True).to_parquet(staging_dir / Explanations.MEASUREMENTS, index=False)
        first = [e for e in explained if e.set_name == next(iter(sets))]
        selection = [
            {"model": c.model, "task": c.task, "fold": c.fold, "run_dir": str(c.run_dir),
             "val_auc": c.val_auc, "layer": e.layer, "grid": list(e.grid), "channels": e.channels,
             "layer_channels": e.layer_channels, "grid_warning": e.grid_warning}
            for c, e in zip(chosen, first, strict=True)
        ]  # fmt: skip
        write_json(staging_dir / Explanations.SELECTION, selection)
        counts = ", ".join(
            f"{SET_NAMES[name]}: {int(rows['measured'].sum())} measured, {int(rows['occluded'].sum())} "
            f"with occlusion maps"
            for name, (rows, *_) in sets.items()
        )
        note = (
            f"Images: every image with a lesion mask of each set, at most {settings.max_images} (seed "
            f"{settings.seed}; {counts}); {settings.images_per_class} per class shown; mapped class: "
            f"{settings.target}; lesion test: {settings.lesion_placements} placements elsewhere per image; "
            f"figures: {settings.weighting} weighting; intervals: {confidence:.0%} cluster bootstrap over "
            f"groups ({resamples} resamples). Chosen on validation folds: the fold model of each model and "
            "task. Chosen by params, not by these images: layers, weightings, removal, placements."
        )
        write_report(staging_dir / Explanations.REPORT, explained, figures, note)
    return out_dir
