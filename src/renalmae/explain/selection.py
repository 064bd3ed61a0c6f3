"""What the explain step explains: the best fold model of each model and task, and which holdout images.

Models: explaining one fold model per model and task keeps the report small; the best fold by validation AUC
(computed from its own `predictions.parquet`, split `val`, with `renalmae.stats.roc_auc`: one-vs-rest
macro AUC for more than two classes; ties go to the lowest fold) is the model a reader would most want
to see. The holdout test images are never used to choose.

Images: every holdout image with a lesion mask is measured (a seeded sample of `max_images` of them when
there are more; when no holdout image has a mask, a seeded sample of the holdout), and a seeded few per
true class are shown as figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.data.predictions import PREDICTIONS_FILE, RUN_FILE, probability_columns, read_predictions
from renalmae.errors import DataError
from renalmae.io import read_json
from renalmae.stats.auc import roc_auc


@dataclass(frozen=True)
class ChosenRun:
    model: str
    task: str
    fold: int
    run_dir: Path
    val_auc: float | None


def validation_auc(run_dir: Path, classes: list[str]) -> float | None:
    """Validation AUC of a run from its predictions table; None when it has no usable `val` rows."""
    frame = read_predictions(run_dir / PREDICTIONS_FILE, classes)
    val = frame[frame["split"] == "val"]
    return roc_auc(val["y_true"].to_numpy(), val[probability_columns(classes)].to_numpy(dtype=float)).value


def choose_runs(run_dirs: list[Path]) -> list[ChosenRun]:
    """The best fold model (by validation AUC) of each (model, task), sorted by model then task."""
    if not run_dirs:
        raise DataError(
            "no trained-model directories (with run.json) were given; run finetune and baseline first"
        )
    best: dict[tuple[str, str], ChosenRun] = {}
    for run_dir in sorted(Path(path) for path in run_dirs):
        run_file = run_dir / RUN_FILE
        if not run_file.is_file():
            raise DataError(
                f"{run_file} is missing; pass trained-model directories (finetune / baseline outputs)"
            )
        info = read_json(run_file)
        missing = [key for key in ("model", "task", "fold", "classes") if key not in info]
        if missing:
            raise DataError(f"{run_file}: missing keys {missing}; re-run the training step that wrote it")
        auc = validation_auc(run_dir, list(info["classes"]))
        candidate = ChosenRun(info["model"], info["task"], int(info["fold"]), run_dir, auc)
        key = (candidate.model, candidate.task)
        if key not in best or _better(candidate, best[key]):
            best[key] = candidate
    return [best[key] for key in sorted(best)]


def _better(candidate: ChosenRun, incumbent: ChosenRun) -> bool:
    score = -math.inf if candidate.val_auc is None else candidate.val_auc
    incumbent_score = -math.inf if incumbent.val_auc is None else incumbent.val_auc
    return score > incumbent_score or (score == incumbent_score and candidate.fold < incumbent.fold)


def sample_per_class(rows: pd.DataFrame, classes: list[str], per_class: int, seed: int) -> pd.DataFrame:
    """Up to `per_class` rows of each class, drawn with `seed`, in class order."""
    rng = np.random.default_rng(seed)
    picked = []
    for class_name in classes:
        members = rows[rows["label"] == class_name].sort_values("id")
        if len(members):
            chosen = np.sort(rng.choice(len(members), size=min(per_class, len(members)), replace=False))
            picked.append(members.iloc[chosen])
    if not picked:
        raise DataError(f"the holdout test set has no images of classes {classes}; check splits.json")
    return pd.concat(picked, ignore_index=True)


def measured_images(rows: pd.DataFrame, has_mask: np.ndarray, max_images: int, seed: int) -> pd.DataFrame:
    """The rows measured: those with a lesion mask (every row when none has one), at most `max_images`
    drawn with `seed`, in id order.

    The draw is spread over the rows' `group`s (series or patients): frames are taken one per group in
    turn (groups and frames in seeded random order) until `max_images`, so a sample holds as many groups
    as it can. A plain random draw follows the frames: on the kidney holdout (337 masked frames in 30
    series) 86 of 100 came from two series, and frames of one series are nearly one observation.
    """
    candidates = rows[np.asarray(has_mask, dtype=bool)] if np.any(has_mask) else rows
    candidates = candidates.sort_values("id").reset_index(drop=True)
    if len(candidates) > max_images:
        rng = np.random.default_rng(seed)
        groups = candidates["group"] if "group" in candidates else candidates["id"]
        names = groups.unique()
        group_order = dict(zip(names, rng.permutation(len(names)), strict=True))
        draw = pd.DataFrame({"turn": rng.permutation(len(candidates)), "group": groups.to_numpy()})
        draw["round"] = draw.groupby("group")["turn"].rank(method="first")
        draw["group_order"] = draw["group"].map(group_order)
        chosen = draw.sort_values(["round", "group_order"]).index[:max_images]
        candidates = candidates.loc[np.sort(chosen)]
    return candidates.reset_index(drop=True)
