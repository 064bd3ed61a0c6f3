"""DeLong's test for two correlated ROC AUCs, with the fast midrank algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845, estimate the covariance of two AUCs
computed on the same cases from their structural components (placement values). Sun & Xu (2014),
IEEE Signal Processing Letters 21(11):1389-1393, obtain every placement value from three midrank
vectors, so the test costs O(n log n) instead of O(m n). It gives the same numbers as R pROC's
`roc.test(method="delong")` (checked in tests/unit/stats/test_delong.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm, rankdata

from renalmae.errors import DataError


@dataclass(frozen=True)
class DeLongResult:
    """Two-sided DeLong test of AUC(a) = AUC(b); `difference` is auc_a - auc_b."""

    auc_a: float
    auc_b: float
    difference: float
    std_error: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _placements(
    positive_scores: np.ndarray, negative_scores: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values V10 (per positive) and V01 (per negative), from midranks."""
    positives, negatives = len(positive_scores), len(negative_scores)
    pooled_ranks = rankdata(np.concatenate([positive_scores, negative_scores]))
    positive_ranks = rankdata(positive_scores)
    negative_ranks = rankdata(negative_scores)
    # A positive's rank among all cases minus its rank among positives counts the negatives below it.
    v10 = (pooled_ranks[:positives] - positive_ranks) / negatives
    v01 = 1.0 - (pooled_ranks[positives:] - negative_ranks) / positives
    auc = float(v10.mean())
    return auc, v10, v01


def _check_binary(y_true: np.ndarray, *scores: np.ndarray) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim != 1 or any(np.shape(s) != labels.shape for s in scores):
        raise ValueError("y_true and every score vector must be 1-D and of the same length")
    values = set(np.unique(labels).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"y_true must hold 0/1 labels (got values {sorted(values)[:5]})")
    positive = labels.astype(bool)
    if positive.all() or not positive.any():
        raise DataError("DeLong's test needs both positive and negative cases; this set has only one class")
    return positive


def delong_test(y_true, scores_a, scores_b) -> DeLongResult:
    """Compare the AUCs of two score vectors on the same cases (higher score = more likely positive)."""
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    positive = _check_binary(y_true, scores_a, scores_b)
    auc_a, v10_a, v01_a = _placements(scores_a[positive], scores_a[~positive])
    auc_b, v10_b, v01_b = _placements(scores_b[positive], scores_b[~positive])
    s10 = np.cov(np.vstack([v10_a, v10_b])) if positive.sum() > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if (~positive).sum() > 1 else np.zeros((2, 2))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / positive.sum() + contrast @ s01 @ contrast / (~positive).sum()
    difference = auc_a - auc_b
    std_error = float(np.sqrt(max(variance, 0.0)))
    if std_error > 0:
        z = difference / std_error
    else:
        # Identical rankings (or both perfect): no evidence of a difference unless the AUCs differ.
        z = 0.0 if difference == 0 else float(np.copysign(np.inf, difference))
    p_value = float(2.0 * norm.sf(abs(z)))
    return DeLongResult(auc_a, auc_b, float(difference), std_error, float(z), p_value)


def delong_test_ovr(
    y_true, probs_a, probs_b, classes: list[str] | None = None
) -> dict[str, DeLongResult | None]:
    """One-vs-rest DeLong test per class of multiclass probabilities (n, K); None where a class is absent."""
    labels = np.asarray(y_true)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or probs_a.ndim != 2 or len(labels) != len(probs_a):
        raise ValueError("probs_a and probs_b must both be (n_cases, n_classes) and match y_true")
    names = classes if classes is not None else [str(k) for k in range(probs_a.shape[1])]
    results: dict[str, DeLongResult | None] = {}
    for index, name in enumerate(names):
        is_class = labels == index
        if is_class.all() or not is_class.any():
            results[name] = None
            continue
        results[name] = delong_test(is_class.astype(int), probs_a[:, index], probs_b[:, index])
    return results
