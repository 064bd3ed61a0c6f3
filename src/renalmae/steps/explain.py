"""Step `explain`: Score-CAM of holdout images for each model and task, measured and shown.

Models: for each (model, task) of the params' tasks, the fold model of the params' folds (other run
folders are ignored with a warning) with the best validation AUC (`renalmae.explain.selection`).
Images: every holdout image with a lesion mask is measured (a seeded sample of `explain.max_images` when
there are more): localisation, faithfulness and class sensitivity under both channel weightings (`score`,
`softmax`), from one set of masked passes (`renalmae.explain.measure`). `explain.images_per_class` images
per true class (seeded) are shown as figures with `explain.weighting`. The mapped class is the image's
true class for the task (`explain.target: true`) or the predicted one. Outputs, in `out_dir`:

    figures/<model>/<task>/<class>_<id>.png   image | CAM | overlay | mask outline, labelled
    figures/<model>/<task>/grid.png           the figure images of that model and task
    localisation.json     {model: {task: {weighting: {class | all: {metric: {mean, low, high, n, groups}}}}}}
    faithfulness.json     the same layout: deletion / insertion AUC (map and random order), class correlation
    measurements.parquet  one row per (model, task, image, weighting) with every per-image number
    selection.json        per explained model: run dir, fold, validation AUC, layer, grid, channels
    index.html            all of the above on one self-contained page
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import Explanations, IngestedData, Splits, TrainedRun
from renalmae.data.cache import load_ingested
from renalmae.data.predictions import task_targets
from renalmae.data.splits import load_splits
from renalmae.evaluate.runs import load_runs
from renalmae.explain.layers import check_grid
from renalmae.explain.measure import (
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    measure_explanations,
    summarise,
)
from renalmae.explain.report import ExplainedModel, write_figures, write_report
from renalmae.explain.selection import choose_runs, measured_images, sample_per_class
from renalmae.io import atomic_dir, write_json
from renalmae.models.trained import load_trained_model
from renalmae.params import Params
from renalmae.steps import Input, Output, Step
from renalmae.train.distributed import setup

STEP = Step(
    name="explain",
    inputs=(
        Input("ingest_dir", IngestedData),
        Input("splits_path", Splits),
        Input("run_dirs", TrainedRun, producers=("finetune", "baseline")),
    ),
    output=Output("out_dir", Explanations),
    params=(
        "explain", "data.classes", "data.negative_class", "train.device", "train.precision",
        "finetune.tasks", "split.folds", "evaluate.confidence", "evaluate.bootstrap_resamples",
    ),
)  # fmt: skip


def _metrics(summary: dict, metrics: tuple[str, ...]) -> dict:
    return {
        w: {c: {m: entry[m] for m in metrics} for c, entry in per_class.items()}
        for w, per_class in summary.items()
    }


def run(params: Params, ingest_dir: Path, splits_path: Path, run_dirs: list[Path], out_dir: Path) -> Path:
    data = load_ingested(ingest_dir)
    classes, settings = list(params.data.classes), params.explain
    test_rows = data.rows(load_splits(splits_path).test_ids)
    has_mask = (
        np.asarray(data.masks[test_rows["cache_index"].to_numpy()]).reshape(len(test_rows), -1).any(axis=1)
    )
    measured = measured_images(test_rows, has_mask, settings.max_images, settings.seed)
    shown = sample_per_class(test_rows, classes, settings.images_per_class, settings.seed)
    rows = pd.concat([measured, shown[~shown["id"].isin(measured["id"])]], ignore_index=True)
    rows["measured"] = rows["id"].isin(measured["id"])
    images = np.asarray(data.images[rows["cache_index"].to_numpy()])
    masks = np.asarray(data.masks[rows["cache_index"].to_numpy()])
    keep = [int(i) for i in np.flatnonzero(rows["id"].isin(shown["id"]).to_numpy())]
    runs = load_runs(run_dirs, list(params.finetune.tasks), list(params.split.folds))
    chosen = choose_runs([run.run_dir for run in runs])
    device = setup(params.train.device, params.train.cpu_threads).device
    localisation: dict[str, dict] = {}
    faithfulness: dict[str, dict] = {}
    tables, explained, figures = [], [], {}
    evaluate, out_dir = params.evaluate, Path(out_dir)
    with atomic_dir(out_dir) as staging_dir:
        for choice in chosen:
            model, info = load_trained_model(choice.run_dir, device=device)
            targets = None
            if settings.target == "true":
                targets = task_targets(rows["label"], classes, params.data.negative_class, choice.task)
            result = measure_explanations(
                model, images, masks, targets, settings, params.train.precision, keep,
                faithful=rows["measured"].to_numpy(), progress=params.train.progress,
            )  # fmt: skip
            table = result.table.assign(
                model=choice.model, task=choice.task, id=rows["id"].to_numpy()[result.table["image"]],
                label=rows["label"].to_numpy()[result.table["image"]],
                group=rows["group"].to_numpy()[result.table["image"]],
                measured=rows["measured"].to_numpy()[result.table["image"]],
            )  # fmt: skip
            tables.append(table)
            summary = summarise(
                table[table["measured"]], evaluate.confidence, evaluate.bootstrap_resamples, settings.seed
            )
            localisation.setdefault(choice.model, {})[choice.task] = _metrics(summary, LOCALISATION_METRICS)
            faithfulness.setdefault(choice.model, {})[choice.task] = _metrics(summary, FAITHFULNESS_METRICS)
            warning = check_grid(result.grid, result.layer, settings.min_grid)
            explained.append(ExplainedModel(
                choice.model, choice.task, choice.fold, result.layer, result.grid, result.channels,
                result.layer_channels, warning, summary,
            ))  # fmt: skip
            title = (
                f"{choice.model} · {choice.task} · fold {choice.fold} (best validation AUC) · {result.layer} "
                f"{result.grid[0]}×{result.grid[1]} · {settings.weighting} weighting"
            )
            folder = staging_dir / Explanations.FIGURES / choice.model / choice.task
            shown_rows = rows.iloc[keep]
            figures[title] = [write_figures(folder, shown_rows, keep, images, masks, result, info["classes"],
                                            settings.weighting)]  # fmt: skip
        write_json(staging_dir / Explanations.LOCALISATION, localisation)
        write_json(staging_dir / Explanations.FAITHFULNESS, faithfulness)
        pd.concat(tables, ignore_index=True).to_parquet(staging_dir / Explanations.MEASUREMENTS, index=False)
        selection = [
            {"model": c.model, "task": c.task, "fold": c.fold, "run_dir": str(c.run_dir),
             "val_auc": c.val_auc, "layer": e.layer, "grid": list(e.grid), "channels": e.channels,
             "layer_channels": e.layer_channels, "grid_warning": e.grid_warning}
            for c, e in zip(chosen, explained, strict=True)
        ]  # fmt: skip
        write_json(staging_dir / Explanations.SELECTION, selection)
        note = (
            f"{int(rows['measured'].sum())} holdout images measured (every test image with a lesion mask, "
            f"at most {settings.max_images}, seed {settings.seed}), {settings.images_per_class} per class "
            f"shown; mapped class: {settings.target}; figures: {settings.weighting} weighting; intervals: "
            f"{evaluate.confidence:.0%} cluster bootstrap over series "
            f"({evaluate.bootstrap_resamples} resamples)."
        )
        write_report(staging_dir / Explanations.REPORT, explained, figures, note)
    return out_dir
