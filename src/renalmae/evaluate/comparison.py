"""Metrics per model, task and fold, the fold ensembles on the holdout, and their statistical comparison.

Decision thresholds (binary task) come from validation data only: each fold model uses the threshold
chosen on its own validation fold; the fold ensemble uses the threshold chosen on the pooled
out-of-fold validation predictions of its members (every development image once, predicted by the
fold model that did not train on it), which is the closest validation-only stand-in for the
ensemble's own operating point. Multiclass predictions are the argmax class.

Tests (candidate USF-MAE = a, baseline DenseNet-169 = b, on the holdout ensembles):
- DeLong on AUC: binary on P(anomaly); multiclass one-vs-rest per class, the task-level p being the
  smallest Holm-adjusted per-class p ("some class differs").
- exact McNemar on paired correct / incorrect decisions.
- Wilcoxon signed-rank over the validation-fold metrics (disjoint folds, so the pairs are closer to
  independent than the fold models' scores on the one shared holdout set).
- paired stratified bootstrap CIs for AUC and F1 of each model and of their difference.
Holm's correction runs over every p-value reported for the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from renalmae.evaluate.metrics import classification_metrics, predict
from renalmae.evaluate.runs import ModelRun, holdout_ensemble, pooled_validation
from renalmae.evaluate.thresholds import choose_threshold
from renalmae.params import EvaluateParams
from renalmae.stats import (
    delong_test,
    delong_test_ovr,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    relative_improvement,
    wilcoxon_folds,
)

SUMMARY_METRICS = (
    "auc",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "brier",
    "ece",
)


@dataclass
class TaskComparison:
    """Everything computed for one task: the JSON summary and the holdout arrays the figures need."""

    task: str
    classes: list[str]
    summary: dict
    ids: np.ndarray
    y_true: np.ndarray
    holdout_probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)


def _threshold(labels, probabilities, classes, settings: EvaluateParams, source: str) -> float | None:
    if len(classes) != 2:
        return None
    return choose_threshold(
        labels, probabilities[:, 1], settings.threshold, settings.target_sensitivity, source
    )


def fold_metrics(run: ModelRun, settings: EvaluateParams) -> dict:
    """Validation and holdout metrics of one fold model, at the threshold chosen on its validation fold."""
    validation, test = run.split("val"), run.split("test")
    threshold = _threshold(
        validation["y_true"], run.probabilities("val"), run.classes, settings, f"{run.name} val"
    )
    return {
        "fold": run.fold,
        "threshold": threshold,
        "val": classification_metrics(
            validation["y_true"], run.probabilities("val"), run.classes, threshold, settings.calibration_bins
        ),
        "test": classification_metrics(
            test["y_true"], run.probabilities("test"), run.classes, threshold, settings.calibration_bins
        ),
    }


def _delong(y_true, probs_a, probs_b, classes) -> tuple[dict | None, dict[str, float | None]]:
    if len(classes) == 2:
        result = delong_test(y_true, probs_a[:, 1], probs_b[:, 1])
        return result.to_dict(), {"delong": result.p_value}
    per_class = delong_test_ovr(y_true, probs_a, probs_b, classes)
    return (
        {name: r.to_dict() for name, r in per_class.items()},
        {f"delong_{name}": r.p_value for name, r in per_class.items()},
    )


def compare_task(task: str, runs: dict[str, dict[int, ModelRun]], settings: EvaluateParams) -> TaskComparison:
    """Compare the candidate and baseline fold models and ensembles of one task.

    `runs` is model name -> fold -> run, the candidate first (as `check_runs` returns it).
    """
    CANDIDATE, BASELINE = runs  # the two models' own names (not literals): any baseline architecture
    classes = next(iter(runs[CANDIDATE].values())).classes
    folds = {
        model: [fold_metrics(run, settings) for run in by_fold.values()] for model, by_fold in runs.items()
    }
    ensembles, holdout, thresholds = {}, {}, {}
    for model, by_fold in runs.items():
        ids, y_true, probabilities = holdout_ensemble(by_fold)
        pooled_labels, pooled_probabilities = pooled_validation(by_fold)
        thresholds[model] = _threshold(
            pooled_labels, pooled_probabilities, classes, settings, f"{model} {task} pooled validation"
        )
        holdout[model] = probabilities
        ensembles[model] = classification_metrics(
            y_true, probabilities, classes, thresholds[model], settings.calibration_bins
        )
    probs_a, probs_b = holdout[CANDIDATE], holdout[BASELINE]
    delong, p_values = _delong(y_true, probs_a, probs_b, classes)
    correct = {model: predict(holdout[model], thresholds[model]) == y_true for model in runs}
    mcnemar = mcnemar_exact(correct[CANDIDATE], correct[BASELINE])
    wilcoxon = {
        metric: wilcoxon_folds(
            [f["val"][metric] for f in folds[CANDIDATE]], [f["val"][metric] for f in folds[BASELINE]]
        ).to_dict()
        for metric in ("auc", "f1")
    }
    p_values |= {
        "mcnemar": mcnemar.p_value,
        "wilcoxon_auc": wilcoxon["auc"]["p_value"],
        "wilcoxon_f1": wilcoxon["f1"]["p_value"],
    }
    adjusted = holm(p_values)
    delong_keys = [key for key in p_values if key.startswith("delong")]
    delong_adjusted = [adjusted[key] for key in delong_keys if adjusted[key] is not None]
    bootstrap = paired_bootstrap(
        y_true,
        probs_a,
        probs_b,
        threshold_a=thresholds[CANDIDATE],
        threshold_b=thresholds[BASELINE],
        resamples=settings.bootstrap_resamples,
        confidence=settings.confidence,
        seed=settings.seed,
    )
    differences = {
        metric: {
            "absolute": None
            if ensembles[CANDIDATE][metric] is None or ensembles[BASELINE][metric] is None
            else ensembles[CANDIDATE][metric] - ensembles[BASELINE][metric],
            "relative_percent": relative_improvement(
                ensembles[CANDIDATE][metric], ensembles[BASELINE][metric]
            ),
        }
        for metric in SUMMARY_METRICS
    }
    auc_difference = differences["auc"]["absolute"]
    primary_p = min(delong_adjusted) if delong_adjusted else None
    summary = {
        "task": task,
        "classes": classes,
        "candidate": CANDIDATE,
        "baseline": BASELINE,
        "n_test": int(len(y_true)),
        "threshold_method": settings.threshold if len(classes) == 2 else "argmax",
        "thresholds": thresholds,
        "ensemble": ensembles,
        "folds": folds,
        "delong": delong,
        "mcnemar": mcnemar.to_dict(),
        "wilcoxon": wilcoxon,
        "bootstrap": bootstrap.to_dict(),
        "differences": differences,
        "p_values": p_values,
        "p_values_holm": adjusted,
        "delong_p_holm": primary_p,
        "alpha": round(1.0 - settings.confidence, 10),
        "better_model": None if not auc_difference else (CANDIDATE if auc_difference > 0 else BASELINE),
        "significant": primary_p is not None and primary_p < 1.0 - settings.confidence,
    }
    return TaskComparison(task, classes, summary, ids, y_true, holdout, thresholds)


HEADLINE_METRICS = ("auc", "f1", "sensitivity", "specificity")
"""What `dvc exp show` / `dvc metrics diff` compare across experiments; comparison.json holds the rest."""


def dvc_metrics(comparisons: dict[str, TaskComparison]) -> dict:
    """metrics.json, the headline DVC shows: per task, each model's holdout-ensemble AUC, F1, sensitivity
    and specificity (`test_<metric>`), and the DeLong p (binary: the test; multiclass: the smallest
    Holm-adjusted one-vs-rest p). A small set, so a table of experiments stays readable."""
    metrics: dict = {}
    for task, comparison in comparisons.items():
        summary = comparison.summary
        entry: dict = {}
        for model in (summary["candidate"], summary["baseline"]):
            ensemble = summary["ensemble"][model]
            entry[model] = {f"test_{name}": ensemble[name] for name in HEADLINE_METRICS}
        entry["delong_p"] = summary["p_values"].get("delong", summary["delong_p_holm"])
        metrics[task] = entry
    return metrics
