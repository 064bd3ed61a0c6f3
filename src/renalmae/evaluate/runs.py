"""Trained-model runs for comparison: load each run's predictions, check the set is complete and paired.

Every fold model of both models must have predicted the same holdout test images (with the same true
labels), fold k of both models the same validation images, and all use the same class list, so the
comparison is paired; anything else is a `DataError`
naming the run and the fix. The fold ensemble of a model is the mean probability of its fold models
on the holdout set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.data.predictions import PREDICTIONS_FILE, RUN_FILE, probability_columns, read_predictions
from renalmae.errors import DataError
from renalmae.io import read_json

CANDIDATE = "usfmae"
BASELINE = "densenet169"
MODELS = (CANDIDATE, BASELINE)


@dataclass(frozen=True)
class ModelRun:
    """One trained fold model: its run.json fields and its predictions table."""

    run_dir: Path
    model: str
    task: str
    fold: int
    classes: list[str]
    predictions: pd.DataFrame

    @property
    def name(self) -> str:
        return f"{self.model} {self.task} fold {self.fold} ({self.run_dir})"

    def split(self, split: str) -> pd.DataFrame:
        return self.predictions[self.predictions["split"] == split].sort_values("id", kind="stable")

    def probabilities(self, split: str) -> np.ndarray:
        return self.split(split)[probability_columns(self.classes)].to_numpy(dtype=float)


def load_run(run_dir: Path) -> ModelRun:
    run_dir = Path(run_dir)
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise DataError(f"{run_file} is missing; point `compare --runs` at trained-model directories")
    info = read_json(run_file)
    missing = [key for key in ("model", "task", "fold", "classes") if key not in info]
    if missing:
        raise DataError(f"{run_file}: missing keys {missing}; re-run the training step that wrote it")
    if info["model"] not in MODELS:
        raise DataError(f"{run_file}: unknown model '{info['model']}'; expected one of {list(MODELS)}")
    predictions = read_predictions(run_dir / PREDICTIONS_FILE, list(info["classes"]))
    for column in ("model", "task", "fold"):
        if set(predictions[column].unique()) != {info[column]}:
            raise DataError(
                f"{run_dir / PREDICTIONS_FILE}: column `{column}` does not match run.json ({info[column]})"
            )
    return ModelRun(
        run_dir, info["model"], info["task"], int(info["fold"]), list(info["classes"]), predictions
    )


def _check_split(run: ModelRun, split: str) -> None:
    rows = run.split(split)
    if rows.empty:
        raise DataError(
            f"{run.name}: no '{split}' predictions; the training step must predict its {split} split"
        )
    if rows["id"].duplicated().any():
        duplicated = rows.loc[rows["id"].duplicated(), "id"].head(3).tolist()
        raise DataError(f"{run.name}: image ids {duplicated} appear twice in the '{split}' split")


def _check_paired_holdout(reference: ModelRun, run: ModelRun) -> None:
    reference_test, test = reference.split("test"), run.split("test")
    reference_ids, ids = set(reference_test["id"]), set(test["id"])
    if reference_ids != ids:
        only_run = sorted(ids - reference_ids)[:3]
        only_reference = sorted(reference_ids - ids)[:3]
        raise DataError(
            f"predictions of {run.name} and {reference.name} are on different holdout image ids "
            f"(only in the first: {only_run}, only in the second: {only_reference}); every model must "
            "predict the same holdout test set: re-run both from the same splits.json"
        )
    if not np.array_equal(reference_test["y_true"].to_numpy(), test["y_true"].to_numpy()):
        raise DataError(f"{run.name} and {reference.name} disagree on true labels of the same holdout images")


def check_runs(
    runs: list[ModelRun], tasks: list[str], folds: list[int]
) -> dict[str, dict[str, dict[int, ModelRun]]]:
    """Index runs as task -> model -> fold, refusing a missing model or fold and unpaired predictions."""
    if not runs:
        raise DataError(
            "no trained-model runs (run.json) found; run `renalmae finetune` and `renalmae baseline`"
        )
    table: dict[str, dict[str, dict[int, ModelRun]]] = {}
    for run in runs:
        by_fold = table.setdefault(run.task, {}).setdefault(run.model, {})
        if run.fold in by_fold:
            raise DataError(
                f"two runs for {run.model} {run.task} fold {run.fold}: "
                f"{by_fold[run.fold].run_dir}, {run.run_dir}; keep one"
            )
        by_fold[run.fold] = run
    for task in tasks:
        for model in MODELS:
            present = table.get(task, {}).get(model, {})
            step = "finetune" if model == CANDIDATE else "baseline"
            if not present:
                raise DataError(
                    f"no runs of model {model} for task {task} among the given run directories; run "
                    f"`renalmae {step} --task {task} --fold N` for folds {folds}, or pass its directory "
                    "to --runs"
                )
            missing = [fold for fold in folds if fold not in present]
            if missing:
                raise DataError(
                    f"model {model}, task {task}: folds {missing} missing (expected folds {folds}); run "
                    f"`renalmae {step} --task {task} --fold N` for each"
                )
        task_runs = [table[task][model][fold] for model in MODELS for fold in folds]
        reference = task_runs[0]
        for run in task_runs:
            if run.classes != reference.classes:
                raise DataError(
                    f"mismatched class lists for task {task}: {run.name} has {run.classes}, "
                    f"{reference.name} has {reference.classes}; train both models with the same "
                    "params `data.classes`"
                )
            _check_split(run, "val")
            _check_split(run, "test")
            _check_paired_holdout(reference, run)
        for fold in folds:
            candidate, baseline = table[task][CANDIDATE][fold], table[task][BASELINE][fold]
            if set(candidate.split("val")["id"]) != set(baseline.split("val")["id"]):
                raise DataError(
                    f"validation fold {fold} of task {task} holds different images for {candidate.name} and "
                    f"{baseline.name}; the fold-level comparison needs both models trained from the same "
                    "splits.json"
                )
    return {task: {model: dict(sorted(table[task][model].items())) for model in MODELS} for task in tasks}


def holdout_ensemble(runs_by_fold: dict[int, ModelRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, y_true, mean probability over fold models) on the holdout set, sorted by id."""
    runs = list(runs_by_fold.values())
    test = runs[0].split("test")
    probabilities = np.mean([run.probabilities("test") for run in runs], axis=0)
    return test["id"].to_numpy(), test["y_true"].to_numpy(dtype=np.int64), probabilities


def pooled_validation(runs_by_fold: dict[int, ModelRun]) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold validation predictions of every fold model, pooled: (y_true, probabilities)."""
    runs = list(runs_by_fold.values())
    labels = np.concatenate([run.split("val")["y_true"].to_numpy(dtype=np.int64) for run in runs])
    return labels, np.concatenate([run.probabilities("val") for run in runs])
