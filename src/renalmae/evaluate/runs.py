"""Trained-model runs: the one place run folders are found and read, and the check that they pair up.

A run folder (`renalmae.artifacts.TrainedRun`) holds one fold model of one task: run.json names its
model, its role (`candidate` or `baseline`), task, fold, classes and training repeat (`repeat`, 0 when
not recorded: repeat r is the same recipe trained under seed + r). `load_runs` reads exactly the tasks,
folds and repeats the params name from the folders it is given (or finds below them); any other run
folder on disk, e.g. folds 3 and 4 left from an earlier 5-fold run, is ignored with a warning and
never averaged in. `check_repeats` pairs each repeat's runs as `check_runs` pairs one's.

Every fold model of both models must have predicted the same holdout test images (and the same
external images, when there are any) with the same true labels, fold k of both models the same
validation images, and all use the same class list, so the comparison is paired; anything else is a
`DataError` naming the run and the fix. The fold ensemble of a model is the mean probability of its
fold models on an evaluation set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import BASELINE, CANDIDATE, ROLES, TrainedRun
from renalmae.data.predictions import probability_columns, read_predictions
from renalmae.errors import DataError

log = logging.getLogger(__name__)

TRAINING_STEP = {CANDIDATE: "finetune", BASELINE: "baseline"}
"""The step that trains the model of each role (named in the fixes of error messages)."""


@dataclass(frozen=True)
class ModelRun:
    """One trained fold model: its run.json fields and its predictions table."""

    run_dir: Path
    model: str
    role: str
    task: str
    fold: int
    classes: list[str]
    predictions: pd.DataFrame
    data_version: str = "unknown"
    """Content hash of the ingested table the run was trained on (run.json; `unknown` if not recorded)."""
    info: dict = field(default_factory=dict)
    """Everything run.json says (epoch selection, class balancing, the encoder's pretraining pool, ...)."""

    @property
    def repeat(self) -> int:
        """The training repeat (seed offset) of this run; 0 for a run.json that does not say."""
        return int(self.info.get("repeat", 0))

    @property
    def name(self) -> str:
        repeat = f" repeat {self.repeat}" if self.repeat else ""
        return f"{self.model} {self.task} fold {self.fold}{repeat} ({self.run_dir})"

    def split(self, split: str) -> pd.DataFrame:
        return self.predictions[self.predictions["split"] == split].sort_values("id", kind="stable")

    def probabilities(self, split: str) -> np.ndarray:
        return self.split(split)[probability_columns(self.classes)].to_numpy(dtype=float)


def run_dirs_under(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Each path that is a run folder (holds run.json), else every run folder below it; sorted, unique.

    Raises `DataError` for a path that does not exist.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path} does not exist; pass trained-model folders or the folders above them")
        if (path / TrainedRun.RUN).is_file():
            found.add(path)
        else:
            found.update(run_file.parent for run_file in path.rglob(TrainedRun.RUN))
    return sorted(found)


def run_info(run_dir: str | os.PathLike) -> dict:
    """run.json of a run folder, checked for the keys every reader needs; `DataError` naming the fix."""
    run_file = TrainedRun(run_dir) / TrainedRun.RUN
    if not run_file.is_file():
        raise DataError(f"{run_file} is missing; pass trained-model folders (finetune / baseline outputs)")
    try:
        info = TrainedRun(run_dir).info()
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(
            f"{run_file} is unreadable ({error}); re-run the training step that wrote it"
        ) from None
    missing = [key for key in TrainedRun.REQUIRED_KEYS if key not in info]
    if missing:
        raise DataError(f"{run_file}: missing keys {missing}; re-run the training step that wrote it")
    if info["role"] not in ROLES:
        raise DataError(f"{run_file}: unknown role '{info['role']}'; expected one of {list(ROLES)}")
    return info


def load_run(run_dir: str | os.PathLike) -> ModelRun:
    """One run folder: run.json and its predictions table, checked against each other."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    predictions_path = run_dir / TrainedRun.PREDICTIONS
    predictions = read_predictions(predictions_path, list(info["classes"]))
    for column in ("model", "task", "fold"):
        if set(predictions[column].unique()) != {info[column]}:
            raise DataError(f"{predictions_path}: column `{column}` does not match run.json ({info[column]})")
    return ModelRun(
        run_dir,
        info["model"],
        info["role"],
        info["task"],
        int(info["fold"]),
        list(info["classes"]),
        predictions,
        str(info.get("data_version", "unknown")),
        info,
    )


def load_runs(
    paths: Iterable[str | os.PathLike], tasks: list[str], folds: list[int], repeats: int = 1
) -> list[ModelRun]:
    """The runs of exactly `tasks` × `folds` × repeats 0..`repeats`-1 among the run folders at or below
    `paths`.

    Run folders of another task, fold or repeat are ignored with a warning naming them (they are what
    an earlier run with other params left on disk); a missing or duplicated run is for `check_runs`.
    """
    runs, ignored = [], []
    for run_dir in run_dirs_under(paths):
        info = run_info(run_dir)
        repeat = int(info.get("repeat", 0))
        if info["task"] in tasks and int(info["fold"]) in folds and repeat < repeats:
            runs.append(load_run(run_dir))
        else:
            ignored.append(f"{run_dir} ({info['task']} fold {info['fold']} repeat {repeat})")
    if ignored:
        log.warning(
            "ignoring %d run folder(s) outside the params' tasks %s, folds %s and %d repeat(s): %s",
            len(ignored), list(tasks), list(folds), repeats, ", ".join(ignored),
        )  # fmt: skip
    return runs


def _check_split(run: ModelRun, split: str) -> None:
    rows = run.split(split)
    if rows.empty:
        raise DataError(
            f"{run.name}: no '{split}' predictions; the training step must predict its {split} split"
        )
    if rows["id"].duplicated().any():
        duplicated = rows.loc[rows["id"].duplicated(), "id"].head(3).tolist()
        raise DataError(f"{run.name}: image ids {duplicated} appear twice in the '{split}' split")


def _check_paired_holdout(reference: ModelRun, run: ModelRun, split: str = "test") -> None:
    reference_test, test = reference.split(split), run.split(split)
    reference_ids, ids = set(reference_test["id"]), set(test["id"])
    if reference_ids != ids:
        only_run = sorted(ids - reference_ids)[:3]
        only_reference = sorted(reference_ids - ids)[:3]
        raise DataError(
            f"predictions of {run.name} and {reference.name} are on different '{split}' image ids "
            f"(only in the first: {only_run}, only in the second: {only_reference}); every model must "
            f"predict the same '{split}' set: re-run both from the same splits.json"
        )
    if not np.array_equal(reference_test["y_true"].to_numpy(), test["y_true"].to_numpy()):
        raise DataError(
            f"{run.name} and {reference.name} disagree on true labels of the same '{split}' images"
        )


def check_runs(
    runs: list[ModelRun], tasks: list[str], folds: list[int]
) -> dict[str, dict[str, dict[int, ModelRun]]]:
    """Index the runs of `tasks` as task -> model name -> fold (the candidate first, then the baseline),
    refusing a missing role or fold, a run at a fold outside `folds` (it would be averaged in), two models
    in one role and unpaired predictions. Runs of other tasks are not used.
    """
    if not runs:
        raise DataError(
            "no trained-model runs (run.json) found; run `renalmae finetune` and `renalmae baseline`"
        )
    table: dict[str, dict[str, dict[int, ModelRun]]] = {}
    for run in (run for run in runs if run.task in tasks):
        if run.fold not in folds:
            raise DataError(
                f"{run.name} is outside the params' folds {folds}; read the runs with `load_runs`, which "
                "leaves such folders out"
            )
        by_fold = table.setdefault(run.task, {}).setdefault(run.role, {})
        if run.fold in by_fold:
            raise DataError(
                f"two {run.role} runs for {run.task} fold {run.fold}: "
                f"{by_fold[run.fold].run_dir}, {run.run_dir}; keep one"
            )
        by_fold[run.fold] = run
    for task in tasks:
        for role in ROLES:
            present = table.get(task, {}).get(role, {})
            step = TRAINING_STEP[role]
            if not present:
                raise DataError(
                    f"no {role} runs for task {task} among the given run directories; run "
                    f"`renalmae {step} --task {task} --fold N` for folds {folds}, or pass its directory "
                    "to --runs"
                )
            missing = [fold for fold in folds if fold not in present]
            if missing:
                name = next(iter(present.values())).model
                raise DataError(
                    f"{name}, task {task}: folds {missing} missing (expected folds {folds}); run "
                    f"`renalmae {step} --task {task} --fold N` for each"
                )
            names = sorted({run.model for run in present.values()})
            if len(names) > 1:
                raise DataError(
                    f"the {role} runs of task {task} are of different models {names}; train every fold "
                    "with the same params"
                )
        names = {role: next(iter(table[task][role].values())).model for role in ROLES}
        if names[CANDIDATE] == names[BASELINE]:
            raise DataError(
                f"candidate and baseline of task {task} are both named '{names[CANDIDATE]}'; give the "
                "baseline another `baseline.arch`"
            )
        task_runs = [table[task][role][fold] for role in ROLES for fold in folds]
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
            _check_paired_holdout(reference, run, "external")
        for fold in folds:
            candidate, baseline = table[task][CANDIDATE][fold], table[task][BASELINE][fold]
            if set(candidate.split("val")["id"]) != set(baseline.split("val")["id"]):
                raise DataError(
                    f"validation fold {fold} of task {task} holds different images for {candidate.name} and "
                    f"{baseline.name}; the fold-level comparison needs both models trained from the same "
                    "splits.json"
                )
    return {
        task: {
            next(iter(table[task][role].values())).model: dict(sorted(table[task][role].items()))
            for role in ROLES
        }
        for task in tasks
    }


def check_repeats(
    runs: list[ModelRun], tasks: list[str], folds: list[int], repeats: int
) -> dict[str, list[dict[str, dict[int, ModelRun]]]]:
    """Index the runs as task -> [repeat 0, 1, ...] -> model name -> fold, each repeat checked as
    `check_runs` checks one, and every repeat on the same evaluation images as repeat 0 (`DataError`
    naming the repeat and the fix otherwise)."""
    by_repeat = []
    for repeat in range(repeats):
        members = [run for run in runs if run.repeat == repeat]
        if not members and repeat:
            raise DataError(
                f"no runs of training repeat {repeat} (evaluate.repeats is {repeats}); train every repeat "
                "(re-run the training steps) or lower evaluate.repeats"
            )
        by_repeat.append(check_runs(members, tasks, folds))
    for task in tasks:
        reference = next(iter(next(iter(by_repeat[0][task].values())).values()))
        for indexed in by_repeat[1:]:
            for by_fold in indexed[task].values():
                for run in by_fold.values():
                    _check_paired_holdout(reference, run)
                    _check_paired_holdout(reference, run, "external")
    return {task: [indexed[task] for indexed in by_repeat] for task in tasks}


def holdout_ensemble(
    runs_by_fold: dict[int, ModelRun], split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, y_true, mean probability over fold models) on an evaluation set (`test` = the holdout, or
    `external`), sorted by id."""
    runs = list(runs_by_fold.values())
    test = runs[0].split(split)
    probabilities = np.mean([run.probabilities(split) for run in runs], axis=0)
    return test["id"].to_numpy(), test["y_true"].to_numpy(dtype=np.int64), probabilities


def pooled_validation(runs_by_fold: dict[int, ModelRun]) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold validation predictions of every fold model, pooled: (y_true, probabilities)."""
    runs = list(runs_by_fold.values())
    labels = np.concatenate([run.split("val")["y_true"].to_numpy(dtype=np.int64) for run in runs])
    return labels, np.concatenate([run.probabilities("val") for run in runs])
