"""Step `explain`: Score-CAM of a seeded sample of holdout images per class, for each model and task.

Which model is explained: for each (model, task) of the params' tasks, the fold model of the params'
folds (other run folders are ignored with a warning) with the best validation AUC (see
`renalmae.explain.selection`); `selection.json` records the choice. The same holdout images
(`explain.images_per_class` per true class, drawn with `explain.seed`) are explained by every model.
The mapped class is the image's true class for the task (`explain.target: true`, what the localisation
metrics need) or the predicted one. Outputs, in `out_dir`:

    figures/<model>/<task>/<class>_<id>.png   image | CAM | overlay | mask outline
    figures/<model>/<task>/grid.png           every explained image of that model and task
    localisation.json                 {model: {task: {class: {n, energy_in_mask, energy_ratio_vs_uniform,
                                                              pointing_game}}}} (lesion images only)
    selection.json                    the run dir, fold and validation AUC of each explained model
    index.html                        all of the above on one self-contained page
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import Explanations, IngestedData, Splits, TrainedRun
from renalmae.data.cache import load_ingested
from renalmae.data.predictions import task_targets
from renalmae.data.splits import load_splits
from renalmae.errors import DataError
from renalmae.evaluate.runs import load_runs
from renalmae.explain.figures import ExplainedImage, grid_figure, save_overlay, write_html
from renalmae.explain.images import explain_uint8
from renalmae.explain.localisation import localise, summarise
from renalmae.explain.selection import choose_runs
from renalmae.io import atomic_dir, write_json
from renalmae.models.trained import load_trained_model
from renalmae.params import Params
from renalmae.steps import Input, Output, Step
from renalmae.train.distributed import resolve_device

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
        "finetune.tasks", "split.folds",
    ),
)  # fmt: skip


def sample_holdout(test_rows: pd.DataFrame, classes: list[str], per_class: int, seed: int) -> pd.DataFrame:
    """Up to `per_class` holdout rows of each class, drawn with `seed`, in class order."""
    rng = np.random.default_rng(seed)
    picked = []
    for class_name in classes:
        rows = test_rows[test_rows["label"] == class_name].sort_values("id")
        if len(rows):
            chosen = np.sort(rng.choice(len(rows), size=min(per_class, len(rows)), replace=False))
            picked.append(rows.iloc[chosen])
    if not picked:
        raise DataError(f"the holdout test set has no images of classes {classes}; check splits.json")
    return pd.concat(picked, ignore_index=True)


def run(params: Params, ingest_dir: Path, splits_path: Path, run_dirs: list[Path], out_dir: Path) -> Path:
    data = load_ingested(ingest_dir)
    splits = load_splits(splits_path)
    classes, settings = list(params.data.classes), params.explain
    sample = sample_holdout(data.rows(splits.test_ids), classes, settings.images_per_class, settings.seed)
    images = np.asarray(data.images[sample["cache_index"].to_numpy()])
    masks = np.asarray(data.masks[sample["cache_index"].to_numpy()])
    runs = load_runs(run_dirs, list(params.finetune.tasks), list(params.split.folds))
    chosen = choose_runs([run.run_dir for run in runs])
    device = resolve_device(params.train.device)
    localisation: dict[str, dict[str, dict]] = {}
    sections: dict[str, list[Path]] = {}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as staging_dir:
        for choice in chosen:
            model, info = load_trained_model(choice.run_dir, device=device)
            task_class_names = list(info["classes"])
            targets = None
            if settings.target == "true":
                targets = task_targets(sample["label"], classes, params.data.negative_class, choice.task)
            result = explain_uint8(
                model, images, targets, settings, params.train.precision, progress=params.train.progress
            )
            predicted = result.probabilities.argmax(dim=1).cpu().numpy()
            items = [
                ExplainedImage(
                    image_id=str(row.id),
                    label=str(row.label),
                    image=images[index],
                    cam=result.maps[index].cpu().numpy(),
                    mask=masks[index],
                    explained_class=task_class_names[int(result.targets[index])],
                    predicted_class=task_class_names[int(predicted[index])],
                    probability=float(result.probabilities[index, predicted[index]]),
                )  # fmt: skip
                for index, row in enumerate(sample.itertuples())
            ]
            folder = staging_dir / Explanations.FIGURES / choice.model / choice.task
            for item in items:
                save_overlay(folder / f"{item.label}_{item.image_id}.png", item, scale=2)
            title = f"{choice.model} · {choice.task} · fold {choice.fold} (best validation AUC)"
            grid = grid_figure(folder / "grid.png", items, title)
            sections[title] = [grid]
            localisation.setdefault(choice.model, {})[choice.task] = summarise(
                (item.label, localise(item.cam, item.mask, settings.pointing_tolerance_px)) for item in items
            )
        write_json(staging_dir / Explanations.LOCALISATION, localisation)
        write_json(
            staging_dir / Explanations.SELECTION,
            [
                {
                    "model": c.model,
                    "task": c.task,
                    "fold": c.fold,
                    "run_dir": str(c.run_dir),
                    "val_auc": c.val_auc,
                }
                for c in chosen
            ],
        )
        note = (
            f"{len(sample)} holdout images ({settings.images_per_class} per class, seed {settings.seed}); "
            f"mapped class: {settings.target}; layers: ViT {settings.vit_layer}, CNN {settings.cnn_layer}."
        )
        write_html(staging_dir / Explanations.REPORT, localisation, sections, note)
    return out_dir
