"""Paired, stratified bootstrap confidence intervals for AUC and F1 of two models and their difference.

Both models are scored on the same resampled images (paired), and each resample keeps the class
counts of the original set (stratified), so every resample has positives and negatives. AUC is
counted per resample from the score levels of the original cases (no sort per resample), so 2,000
resamples of 10,000 images take seconds. `scipy.stats.bootstrap` is not used because it can neither
stratify nor share one resample between several statistics. Intervals are percentile intervals.
Binary AUC intervals need two images of each class (`renalmae.stats.auc.inference_undefined`): with
one positive every resample repeats it, and the "interval" would only echo that one image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from renalmae.stats.auc import inference_undefined

_MAX_CELLS_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class Interval:
    """Point estimate on the original set and the bootstrap percentile interval; None when undefined."""

    estimate: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedBootstrap:
    auc_a: Interval
    auc_b: Interval
    auc_difference: Interval
    f1_a: Interval
    f1_b: Interval
    f1_difference: Interval
    resamples: int
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def stratified_indices(y_true, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) indices drawn with replacement within each class; columns are grouped by class."""
    labels = np.asarray(y_true)
    blocks = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        blocks.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
    return np.concatenate(blocks, axis=1)


def _auc_rows(level_rows: np.ndarray, positive: np.ndarray, n_levels: int) -> np.ndarray:
    """AUC of every resample from the score *levels* (ranks of the distinct original scores).

    A resample only repeats original cases, so instead of sorting each resample we count, per row,
    the positives and negatives at each score level; AUC = sum over levels of positives x (negatives
    below + half the negatives tied) / (m n). Linear in the resample size, ties handled exactly.
    """
    rows = len(level_rows)
    flat = level_rows + (np.arange(rows) * n_levels)[:, None]
    positive_counts = np.bincount(flat[:, positive].ravel(), minlength=rows * n_levels).reshape(
        rows, n_levels
    )
    negative_counts = np.bincount(flat[:, ~positive].ravel(), minlength=rows * n_levels).reshape(
        rows, n_levels
    )
    negatives_below = np.cumsum(negative_counts, axis=1) - negative_counts
    pairs = int(positive.sum()) * int((~positive).sum())
    return (positive_counts * (negatives_below + 0.5 * negative_counts)).sum(axis=1) / pairs


def _macro_auc_rows(
    levels: list[tuple[np.ndarray, int]], labels: np.ndarray, index: np.ndarray
) -> np.ndarray | None:
    """Binary: AUC of class 1. Multiclass: mean one-vs-rest AUC over classes present with both sides."""
    row_labels = labels[index[0]]
    classes = [1] if len(levels) == 2 else range(len(levels))
    per_class = []
    for k in classes:
        positive = row_labels == k
        if positive.all() or not positive.any():
            continue
        class_levels, n_levels = levels[k]
        per_class.append(_auc_rows(class_levels[index], positive, n_levels))
    return np.mean(per_class, axis=0) if per_class else None


def _score_levels(probs: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Per class: the rank level of each case's score among the distinct scores, and their number."""
    levels = []
    for k in range(probs.shape[1]):
        distinct, level = np.unique(probs[:, k], return_inverse=True)
        levels.append((level.ravel(), len(distinct)))
    return levels


def _f1_rows(predicted: np.ndarray, labels: np.ndarray, index: np.ndarray, n_classes: int) -> np.ndarray:
    """Binary: F1 of class 1. Multiclass: macro F1 (a class never predicted nor present scores 0)."""
    row_predictions = predicted[index]
    row_labels = labels[index[0]]
    classes = [1] if n_classes == 2 else range(n_classes)
    scores = []
    for k in classes:
        is_predicted, is_true = row_predictions == k, row_labels == k
        true_positive = (is_predicted & is_true).sum(axis=1)
        denominator = is_predicted.sum(axis=1) + is_true.sum()
        scores.append(
            np.divide(2.0 * true_positive, denominator, out=np.zeros(len(index)), where=denominator > 0)
        )
    return np.mean(scores, axis=0)


def _predict(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    if probs.shape[1] == 2:
        return (probs[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    return probs.argmax(axis=1)


def _interval(estimate: float | None, samples: np.ndarray | None, confidence: float) -> Interval:
    if estimate is None or samples is None:
        return Interval(estimate, None, None)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def paired_bootstrap(
    y_true,
    probs_a,
    probs_b,
    *,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """CIs for AUC and F1 of models a and b (probabilities (n, K); K = 2 is binary) and of a - b.

    Binary predictions are `P(class 1) >= threshold` (0.5 when not given); multiclass ones are argmax.
    """
    labels = np.asarray(y_true, dtype=np.int64)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or probs_a.ndim != 2 or len(labels) != len(probs_a):
        raise ValueError("probs_a and probs_b must both be (n_cases, n_classes) and match y_true")
    n_classes = probs_a.shape[1]
    predicted_a, predicted_b = _predict(probs_a, threshold_a), _predict(probs_b, threshold_b)
    rng = np.random.default_rng(seed)
    identity = np.arange(len(labels))[np.argsort(labels, kind="stable")][None, :]
    levels = [_score_levels(probs_a), _score_levels(probs_b)]
    auc_point = [_macro_auc_rows(side_levels, labels, identity) for side_levels in levels]
    f1_point = [_f1_rows(p, labels, identity, n_classes)[0] for p in (predicted_a, predicted_b)]

    chunk = max(1, _MAX_CELLS_PER_CHUNK // max(1, len(labels)))
    auc_samples: list[list[np.ndarray]] = [[], []]
    f1_samples: list[list[np.ndarray]] = [[], []]
    for start in range(0, resamples, chunk):
        index = stratified_indices(labels, min(chunk, resamples - start), rng)
        for side, predicted in enumerate((predicted_a, predicted_b)):
            auc_rows = _macro_auc_rows(levels[side], labels, index)
            if auc_rows is not None:
                auc_samples[side].append(auc_rows)
            f1_samples[side].append(_f1_rows(predicted, labels, index, n_classes))

    auc_a = np.concatenate(auc_samples[0]) if auc_samples[0] else None
    auc_b = np.concatenate(auc_samples[1]) if auc_samples[1] else None
    f1_a, f1_b = np.concatenate(f1_samples[0]), np.concatenate(f1_samples[1])
    auc_defined = auc_point[0] is not None
    auc_estimates = [float(p[0]) if p is not None else None for p in auc_point]
    if n_classes == 2 and inference_undefined(labels == 1):
        auc_a = auc_b = None
    return PairedBootstrap(
        auc_a=_interval(auc_estimates[0], auc_a, confidence),
        auc_b=_interval(auc_estimates[1], auc_b, confidence),
        auc_difference=_interval(
            auc_estimates[0] - auc_estimates[1] if auc_defined else None,
            auc_a - auc_b if auc_a is not None and auc_b is not None else None,
            confidence,
        ),
        f1_a=_interval(float(f1_point[0]), f1_a, confidence),
        f1_b=_interval(float(f1_point[1]), f1_b, confidence),
        f1_difference=_interval(float(f1_point[0] - f1_point[1]), f1_a - f1_b, confidence),
        resamples=resamples,
        confidence=confidence,
    )
