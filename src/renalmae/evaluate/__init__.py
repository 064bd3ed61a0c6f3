"""Evaluation of trained models: metrics, validation-chosen thresholds, fold ensembles, comparison report."""

from renalmae.evaluate.comparison import TaskComparison, compare_task, dvc_metrics, fold_metrics
from renalmae.evaluate.metrics import (
    brier_score,
    classification_metrics,
    expected_calibration_error,
    predict,
)
from renalmae.evaluate.runs import BASELINE, CANDIDATE, ModelRun, check_runs, load_run, load_runs
from renalmae.evaluate.thresholds import choose_threshold

__all__ = [
    "BASELINE",
    "CANDIDATE",
    "ModelRun",
    "TaskComparison",
    "brier_score",
    "check_runs",
    "choose_threshold",
    "classification_metrics",
    "compare_task",
    "dvc_metrics",
    "expected_calibration_error",
    "fold_metrics",
    "load_run",
    "load_runs",
    "predict",
]
