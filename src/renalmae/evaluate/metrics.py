"""Classification metrics of one set of predictions (scikit-learn underneath); undefined values are None.

Conventions (the report states them too):
- binary: class 1 is the anomaly; the prediction is `P(anomaly) >= threshold`; AUC, sensitivity, ...
  are those of the anomaly class; Brier score is the mean squared error of P(anomaly); ECE is the
  calibration error of P(anomaly) against the observed anomaly rate in equal-width bins.
- multiclass: the prediction is the argmax class; AUC is the macro average of one-vs-rest AUCs over
  the classes present (with per-class values beside it); F1, sensitivity, specificity, precision and
  NPV are macro averages of one-vs-rest values; Brier score is the mean over images of the summed
  squared error over classes (0..2); ECE uses the top-label confidence against top-label accuracy.
- AUC follows `renalmae.stats.roc_auc`: undefined (None, with the reason in `auc_undefined`) for a
  set holding a single class, never an error.
"""

from __future__ import annotations

import numpy as np

from renalmae.operating_point import predict as predict  # re-exported: one decision function
from renalmae.stats.auc import roc_auc


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def expected_calibration_error(y_true, probs, bins: int = 10) -> float:
    """ECE in equal-width bins: binary on P(class 1), multiclass on the top-label confidence."""
    labels, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if probs.shape[1] == 2:
        confidence, outcome = probs[:, 1], (labels == 1).astype(float)
    else:
        confidence, outcome = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    bin_of = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = bin_of == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - outcome[members].mean())
    return float(error)


def reliability_curve(y_true, probs, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean confidence, observed frequency, count (same binning as the ECE)."""
    labels, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if probs.shape[1] == 2:
        confidence, outcome = probs[:, 1], (labels == 1).astype(float)
    else:
        confidence, outcome = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    bin_of = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1], right=True), 0, bins - 1)
    rows = [
        (confidence[bin_of == b].mean(), outcome[bin_of == b].mean(), (bin_of == b).sum())
        for b in range(bins)
        if (bin_of == b).any()
    ]
    mean_confidence, observed, counts = (np.array(column) for column in zip(*rows, strict=True))
    return mean_confidence, observed, counts


def brier_score(y_true, probs) -> float:
    labels, probs = np.asarray(y_true), np.asarray(probs, dtype=float)
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - (labels == 1)) ** 2))
    return float(np.mean(((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(axis=1)))


def classification_metrics(
    y_true,
    probs,
    classes: list[str],
    threshold: float | None = None,
    calibration_bins: int = 10,
    class_weights=None,
) -> dict:
    """Every metric of one prediction set; `probs` is (n, len(classes)), len 2 meaning binary.

    Decisions as `predict(probs, threshold, class_weights)`; AUC, Brier and ECE use `probs` as given.
    """
    labels, probs = np.asarray(y_true, dtype=np.int64), np.asarray(probs, dtype=float)
    n_classes = len(classes)
    predicted = predict(probs, threshold, class_weights)
    # Counting by hand gives sklearn's confusion matrix (tests check) without its per-call validation cost.
    matrix = np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    true_positive = np.diag(matrix).astype(float)
    false_positive = matrix.sum(axis=0) - true_positive
    false_negative = matrix.sum(axis=1) - true_positive
    true_negative = matrix.sum() - true_positive - false_positive - false_negative
    per_class = {
        "sensitivity": [
            _ratio(true_positive[k], true_positive[k] + false_negative[k]) for k in range(n_classes)
        ],
        "specificity": [
            _ratio(true_negative[k], true_negative[k] + false_positive[k]) for k in range(n_classes)
        ],
        "precision": [
            _ratio(true_positive[k], true_positive[k] + false_positive[k]) for k in range(n_classes)
        ],
        "npv": [_ratio(true_negative[k], true_negative[k] + false_negative[k]) for k in range(n_classes)],
    }
    f1_per_class = [
        _ratio(2 * true_positive[k], 2 * true_positive[k] + false_positive[k] + false_negative[k]) or 0.0
        for k in range(n_classes)
    ]
    recall_present = [value for value in per_class["sensitivity"] if value is not None]
    auc = roc_auc(labels, probs, classes)
    if n_classes == 2:
        summary = {name: values[1] for name, values in per_class.items()}
        f1 = f1_per_class[1]
    else:
        summary = {name: _mean_defined(values) for name, values in per_class.items()}
        f1 = float(np.mean(f1_per_class))
    return {
        "n": int(len(labels)),
        "class_counts": {name: int((labels == k).sum()) for k, name in enumerate(classes)},
        "threshold": None if n_classes > 2 or threshold is None else float(threshold),
        "auc": auc.value,
        "auc_undefined": auc.undefined,
        "auc_per_class": auc.per_class,
        "f1": f1,
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "balanced_accuracy": float(np.mean(recall_present)) if len(recall_present) > 1 else None,
        **summary,
        "brier": brier_score(labels, probs),
        "ece": expected_calibration_error(labels, probs, calibration_bins),
        "confusion_matrix": matrix.tolist(),
    }
