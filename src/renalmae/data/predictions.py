"""Predictions tables: what each fine-tuned or baseline model writes and `compare` / `register` read.

One parquet file per trained model (`<run_dir>/predictions.parquet`), one row per image and split:

    id, model, task, fold, split ('val' | 'test' | 'external'), y_true (class index), prob_<class> per class

and beside it `<run_dir>/run.json` with at least {"model", "task", "fold", "classes"}.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import TrainedRun
from renalmae.errors import DataError
from renalmae.io import atomic_file

PREDICTIONS_FILE = TrainedRun.PREDICTIONS
RUN_FILE = TrainedRun.RUN
BASE_COLUMNS = ["id", "model", "task", "fold", "split", "y_true"]
TASKS = ("binary", "multiclass")
ANOMALY = "anomaly"


def task_classes(classes: list[str], negative_class: str, task: str) -> list[str]:
    """Class names of a task: `binary` is [negative_class, 'anomaly']; `multiclass` is every class."""
    if task == "binary":
        return [negative_class, ANOMALY]
    if task == "multiclass":
        return list(classes)
    raise DataError(f"unknown task '{task}'; allowed: {', '.join(TASKS)}")


def task_targets(labels: pd.Series, classes: list[str], negative_class: str, task: str) -> np.ndarray:
    """Integer targets of `labels` (class names) for `task`."""
    if task == "binary":
        return (labels != negative_class).to_numpy(dtype=np.int64)
    index = {name: position for position, name in enumerate(classes)}
    return labels.map(index).to_numpy(dtype=np.int64)


def probability_columns(classes: list[str]) -> list[str]:
    return [f"prob_{name}" for name in classes]


def write_predictions(path: str | os.PathLike, frame: pd.DataFrame, classes: list[str]) -> None:
    check_predictions(frame, classes, source=str(path))
    with atomic_file(path) as staging_path:
        frame[BASE_COLUMNS + probability_columns(classes)].to_parquet(staging_path, index=False)


def read_predictions(path: str | os.PathLike, classes: list[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"predictions table {path} is missing; run the training step that writes it")
    frame = pd.read_parquet(path)
    check_predictions(frame, classes, source=str(path))
    return frame


def check_predictions(frame: pd.DataFrame, classes: list[str], source: str) -> None:
    """Refuse a predictions table with missing columns, NaN or out-of-range probabilities."""
    expected = BASE_COLUMNS + probability_columns(classes)
    missing = [column for column in expected if column not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; expected classes {classes}")
    probabilities = frame[probability_columns(classes)].to_numpy(dtype=float)
    if not np.isfinite(probabilities).all():
        bad = frame.loc[~np.isfinite(probabilities).all(axis=1), "id"].head(3).tolist()
        raise DataError(f"{source}: NaN or infinite probabilities for ids {bad}")
    if (probabilities < 0).any() or (probabilities > 1).any():
        bad = frame.loc[((probabilities < 0) | (probabilities > 1)).any(axis=1), "id"].head(3).tolist()
        raise DataError(f"{source}: probabilities outside [0, 1] for ids {bad}")
    labels = frame["y_true"].to_numpy()
    if ((labels < 0) | (labels >= len(classes))).any():
        raise DataError(f"{source}: y_true outside 0..{len(classes) - 1}")
