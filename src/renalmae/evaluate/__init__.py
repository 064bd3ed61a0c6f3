"""Evaluation of trained models: metrics, decision rules, fold ensembles, declared hypotheses, the report."""

from renalmae.evaluate.comparison import (
    SetComparison,
    TaskComparison,
    compare_task,
    dvc_metrics,
    fold_metrics,
)
from renalmae.evaluate.decision import DecisionRule, ensemble_rule, multiclass_rule
from renalmae.evaluate.hypotheses import HYPOTHESES, HypothesisOutcome, declared_family
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
    "HYPOTHESES",
    "DecisionRule",
    "HypothesisOutcome",
    "ModelRun",
    "SetComparison",
    "TaskComparison",
    "brier_score",
    "check_runs",
    "choose_threshold",
    "classification_metrics",
    "compare_task",
    "declared_family",
    "dvc_metrics",
    "ensemble_rule",
    "expected_calibration_error",
    "fold_metrics",
    "load_run",
    "load_runs",
    "multiclass_rule",
    "predict",
]
