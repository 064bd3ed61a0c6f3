"""DeLong's test for two correlated ROC AUCs, with the fast midrank algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845, estimate the covariance of two AUCs
computed on the same cases from their structural components (placement values). Sun & Xu (2014),
IEEE Signal Processing Letters 21(11):1389-1393, obtain every placement value from three midrank
vectors, so the test costs O(n log n) instead of O(m n). It gives the same numbers as R pROC's
`roc.test(method="delong")` (checked in tests/unit/stats/test_delong.py).

The test is undefined, with the reason in `undefined` and no z or p, when the images cannot support
it (see `renalmae.stats.auc`): fewer than two positive or two negative images; a model that separates
the classes perfectly (AUC 0 or 1: its placement values are constant, so the variance estimate, and
the normal approximation, break down at the boundary); or a zero variance of the AUC difference (the
two models order every positive-negative pair alike). A p of 0 from a handful of images is never given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr

from renalmae.stats.auc import inference_undefined


@dataclass(frozen=True)
class DeLongResult:
    """Two-sided DeLong test of AUC(a) = AUC(b); `difference` is auc_a - auc_b.

    When the test is undefined, `undefined` says why and `std_error`, `z`, `p_value` are None (the AUCs
    are kept where they exist).
    """

    auc_a: float | None
    auc_b: float | None
    difference: float | None
    std_error: float | None
    z: float | None
    p_value: float | None
    undefined: str | None = None

    @property
    def defined(self) -> bool:
        return self.undefined is None

    def to_dict(self) -> dict:
        return asdict(self)


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks (scipy's `rankdata(method="average")`)."""
    _, level, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[level.ravel()]


def _placements(
    positive_scores: np.ndarray, negative_scores: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values V10 (per positive) and V01 (per negative), from midranks."""
    positives, negatives = len(positive_scores), len(negative_scores)
    pooled_ranks = _midranks(np.concatenate([positive_scores, negative_scores]))
    positive_ranks = _midranks(positive_scores)
    negative_ranks = _midranks(negative_scores)
    # A positive's rank among all cases minus its rank among positives counts the negatives below it.
    v10 = (pooled_ranks[:positives] - positive_ranks) / negatives
    v01 = 1.0 - (pooled_ranks[positives:] - negative_ranks) / positives
    auc = float(v10.mean())
    return auc, v10, v01


def _check_binary(y_true, *scores: np.ndarray) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim != 1 or any(np.shape(s) != labels.shape for s in scores):
        raise ValueError("y_true and every score vector must be 1-D and of the same length")
    values = set(np.unique(labels).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"y_true must hold 0/1 labels (got values {sorted(values)[:5]})")
    return labels.astype(bool)


def _undefined(reason: str, auc_a=None, auc_b=None) -> DeLongResult:
    difference = None if auc_a is None or auc_b is None else auc_a - auc_b
    return DeLongResult(auc_a, auc_b, difference, None, None, None, reason)


def delong_test(y_true, scores_a, scores_b, names: tuple[str, str] = ("model a", "model b")) -> DeLongResult:
    """Compare the AUCs of two score vectors on the same cases (higher score = more likely positive).

    y_true: (n,) 0/1 labels; scores_a, scores_b: (n,) scores; `names` name the two in an undefined
    reason. Raises ValueError on mismatched shapes or labels other than 0/1; a set the test cannot use
    gives an undefined result, not an error.
    """
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    positive = _check_binary(y_true, scores_a, scores_b)
    too_few = inference_undefined(positive, "DeLong's test")
    if positive.all() or not positive.any():
        return _undefined(too_few)
    auc_a, v10_a, v01_a = _placements(scores_a[positive], scores_a[~positive])
    auc_b, v10_b, v01_b = _placements(scores_b[positive], scores_b[~positive])
    if too_few:
        return _undefined(too_few, auc_a, auc_b)
    perfect = [(name, auc) for name, auc in zip(names, (auc_a, auc_b), strict=True) if auc in (0.0, 1.0)]
    if perfect:
        which = " and ".join(f"{name} (AUC {auc:.0f})" for name, auc in perfect)
        return _undefined(
            f"{which} separate{'s' if len(perfect) == 1 else ''} the classes perfectly: DeLong's variance "
            "estimate is degenerate at AUC 0 or 1; evaluate on more (or harder) images",
            auc_a,
            auc_b,
        )
    # Var(AUC_a - AUC_b) = (1, -1) S10 (1, -1)' / m + (1, -1) S01 (1, -1)' / n, S the placement covariances:
    # the sample variance of the placement differences.
    variance = (
        np.var(v10_a - v10_b, ddof=1) / positive.sum() + np.var(v01_a - v01_b, ddof=1) / (~positive).sum()
    )
    if not variance > 1e-15:
        return _undefined(
            "zero variance of the AUC difference: the two models order every positive-negative pair "
            "alike, so there is nothing to test",
            auc_a,
            auc_b,
        )
    difference = auc_a - auc_b
    std_error = float(np.sqrt(variance))
    z = difference / std_error
    return DeLongResult(auc_a, auc_b, float(difference), std_error, float(z), float(2.0 * ndtr(-abs(z))))


def delong_test_ovr(
    y_true,
    probs_a,
    probs_b,
    classes: list[str] | None = None,
    names: tuple[str, str] = ("model a", "model b"),
) -> dict[str, DeLongResult]:
    """One-vs-rest DeLong test per class of multiclass probabilities (n, K); undefined where a class
    has too few images (see `delong_test`)."""
    labels = np.asarray(y_true)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or probs_a.ndim != 2 or len(labels) != len(probs_a):
        raise ValueError("probs_a and probs_b must both be (n_cases, n_classes) and match y_true")
    class_names = classes if classes is not None else [str(k) for k in range(probs_a.shape[1])]
    return {
        class_name: delong_test((labels == index).astype(int), probs_a[:, index], probs_b[:, index], names)
        for index, class_name in enumerate(class_names)
    }
