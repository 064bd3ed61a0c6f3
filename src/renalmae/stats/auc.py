"""ROC AUC of a set of predictions, and the cases where it, or a test on it, is undefined.

The one AUC helper of the package: training's early stopping, the explained-fold choice, the metrics
tables and the statistical tests all go through `roc_auc`, so every number called "AUC" follows the
same rules (Hanley & McNeil 1982, Radiology 143:29-36: AUC = P(score of a positive > score of a
negative), ties counting one half; the value itself comes from scikit-learn's `roc_auc_score`):

- binary: labels 0/1 (1 = positive) and a score per image, or probabilities (n, 2) scored on column 1;
- multiclass, probabilities (n, K > 2): one-vs-rest AUC per class, and their macro mean over the
  classes that have images on both sides (a class with none on one side is named, not averaged);
- undefined (value None, with the reason) when a set holds no positive or no negative image.

An AUC from one positive and one negative is a number (0, ½ or 1), but nothing can be inferred from
it: `inference_undefined` says when a variance, interval or test on an AUC has too few images of a
class (fewer than `MIN_PER_CLASS`) to mean anything. Tests on AUCs (DeLong) report that reason
instead of a p-value, never p = 0 from two images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

MIN_PER_CLASS = 2
"""Images needed on each side (positive, negative) before a variance of an AUC can be estimated."""


@dataclass(frozen=True)
class AUC:
    """An AUC, or None with the reason it is undefined; multiclass also keeps the one-vs-rest values."""

    value: float | None
    undefined: str | None = None
    """Why `value` is None; None when it is defined."""
    per_class: dict[str, float | None] | None = None
    left_out: tuple[str, ...] = ()
    """Multiclass: classes without images on both sides, not in the macro mean."""

    def to_dict(self) -> dict:
        return asdict(self)


def class_counts(is_positive) -> tuple[int, int]:
    """(positives, negatives) of a boolean / 0-1 label vector."""
    is_positive = np.asarray(is_positive).astype(bool)
    positives = int(is_positive.sum())
    return positives, int(is_positive.size - positives)


def inference_undefined(is_positive, what: str = "a test on this AUC") -> str | None:
    """Why no variance, interval or test of an AUC can be estimated on these labels; None when it can."""
    positives, negatives = class_counts(is_positive)
    if positives < MIN_PER_CLASS or negatives < MIN_PER_CLASS:
        return (
            f"{what} needs at least {MIN_PER_CLASS} positive and {MIN_PER_CLASS} negative images; "
            f"this set has {positives} positive and {negatives} negative"
        )
    return None


def _binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> AUC:
    positives, negatives = class_counts(is_positive)
    if positives == 0 or negatives == 0:
        missing = "positive" if positives == 0 else "negative"
        return AUC(None, f"the set holds no {missing} image ({positives + negatives} images)")
    return AUC(float(roc_auc_score(is_positive, scores)))


def roc_auc(y_true, scores, classes: Sequence[str] | None = None) -> AUC:
    """ROC AUC of `scores` against `y_true`.

    y_true: (n,) class indices (binary: 0/1, or booleans). scores: (n,) scores of class 1, or (n, K)
    probabilities; K = 2 is scored on column 1, K > 2 one-vs-rest per class with the macro mean over
    classes present on both sides. `classes` names the K columns in `per_class` (default "0".."K-1").
    Raises ValueError when shapes disagree (a bug, not a data problem).
    """
    labels = np.asarray(y_true)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim not in (1, 2) or len(scores) != len(labels) or labels.ndim != 1:
        raise ValueError(
            f"y_true (n,) and scores (n,) or (n, K) must match (got {labels.shape}, {scores.shape})"
        )
    if scores.ndim == 1 or scores.shape[1] == 2:
        positive_scores = scores if scores.ndim == 1 else scores[:, 1]
        return _binary_auc(labels.astype(np.int64) == 1, positive_scores)
    names = list(classes) if classes is not None else [str(k) for k in range(scores.shape[1])]
    if len(names) != scores.shape[1]:
        raise ValueError(f"{len(names)} class names for {scores.shape[1]} probability columns")
    results = {name: _binary_auc(labels == k, scores[:, k]) for k, name in enumerate(names)}
    per_class = {name: result.value for name, result in results.items()}
    defined = [value for value in per_class.values() if value is not None]
    left_out = tuple(name for name, value in per_class.items() if value is None)
    if not defined:
        return AUC(None, "the set holds a single class", per_class, left_out)
    return AUC(float(np.mean(defined)), None, per_class, left_out)
