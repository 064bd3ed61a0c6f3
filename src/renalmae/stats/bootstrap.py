"""Paired, stratified cluster bootstrap CIs of AUC, F1, sensitivity and specificity of two models and a - b.

Both models are scored on the same resampled images (paired). Correlated images are resampled together:
with `groups` (patient, clip) each resample draws whole clusters with replacement (Davison & Hinkley
1997, *Bootstrap Methods and their Application*, CUP, section 3.8: resample the first stage), within
strata of clusters holding the same classes, so every resample keeps the number of clusters of each
kind and has positives and negatives; without groups each image is its own cluster and the bootstrap
is the usual one stratified by class. A resample is held as the multiplicity of each image (how often
its cluster was drawn), and AUC is counted from the score levels of the original cases weighted by
those multiplicities (no sort per resample), so 2,000 resamples of 10,000 images take seconds.
`scipy.stats.bootstrap` is not used because it can neither resample clusters, stratify nor share one
resample between several statistics. Intervals are percentile intervals. Binary AUC intervals need two
images of each class (`renalmae.stats.auc.inference_undefined`): with one positive every resample
repeats it, and the "interval" would only echo that one image.
"""

from __future__ import annotations

import warnings
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
    """Intervals of each metric for model a, model b and a - b (binary: of the anomaly class; multiclass:
    macro averages over classes, as in `renalmae.evaluate.metrics`)."""

    auc_a: Interval
    auc_b: Interval
    auc_difference: Interval
    f1_a: Interval
    f1_b: Interval
    f1_difference: Interval
    sensitivity_a: Interval
    sensitivity_b: Interval
    sensitivity_difference: Interval
    specificity_a: Interval
    specificity_b: Interval
    specificity_difference: Interval
    resamples: int
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def cluster_weights(y_true, groups, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) multiplicity of each image in each stratified cluster-bootstrap resample.

    y_true: (n,) class labels; groups: (n,) cluster ids, None = every image its own cluster. Clusters
    are drawn with replacement within strata of clusters that hold the same set of classes (all normal,
    all anomalous, mixed), each stratum keeping its number of clusters; an image's multiplicity is how
    often its cluster was drawn. Without groups this is the bootstrap stratified by class.
    """
    labels = np.asarray(y_true)
    n = len(labels)
    clusters = (
        np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    )
    n_clusters = int(clusters.max()) + 1 if n else 0
    classes = np.unique(labels, return_inverse=True)[1].ravel()
    holds = np.zeros((n_clusters, int(classes.max()) + 1 if n else 0), dtype=bool)
    holds[clusters, classes] = True
    strata = np.unique(holds, axis=0, return_inverse=True)[1].ravel()
    counts = np.zeros((resamples, n_clusters))
    rows = np.arange(resamples)[:, None]
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        drawn = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        np.add.at(counts, (np.broadcast_to(rows, drawn.shape), drawn), 1.0)
    return counts[:, clusters]


def _auc_rows(levels: np.ndarray, positive: np.ndarray, n_levels: int, weights: np.ndarray) -> np.ndarray:
    """AUC of every resample from the score *levels* (ranks of the distinct original scores).

    weights: (rows, n) multiplicities. Instead of sorting each resample we sum, per row, the weights of
    the positives and negatives at each score level; AUC = sum over levels of positives x (negatives
    below + half the negatives tied) / (positives x negatives). Linear in n, ties handled exactly; NaN
    for a row without positives or negatives.
    """
    rows = len(weights)
    flat = (levels[None, :] + (np.arange(rows) * n_levels)[:, None]).ravel()

    def level_counts(side: np.ndarray) -> np.ndarray:
        side_weights = (weights * side[None, :]).ravel()
        return np.bincount(flat, weights=side_weights, minlength=rows * n_levels).reshape(rows, n_levels)

    positive_counts, negative_counts = level_counts(positive), level_counts(~positive)
    negatives_below = np.cumsum(negative_counts, axis=1) - negative_counts
    pairs = positive_counts.sum(axis=1) * negative_counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive_counts * (negatives_below + 0.5 * negative_counts)).sum(axis=1) / pairs


def _macro_auc_rows(
    levels: list[tuple[np.ndarray, int]], labels: np.ndarray, weights: np.ndarray
) -> np.ndarray | None:
    """Binary: AUC of class 1. Multiclass: mean one-vs-rest AUC over classes present with both sides."""
    classes = [1] if len(levels) == 2 else range(len(levels))
    per_class = []
    for k in classes:
        positive = labels == k
        if positive.all() or not positive.any():
            continue
        class_levels, n_levels = levels[k]
        per_class.append(_auc_rows(class_levels, positive, n_levels, weights))
    if not per_class:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row that lost a class: that class left out
        return np.nanmean(per_class, axis=0)


def _score_levels(probs: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Per class: the rank level of each case's score among the distinct scores, and their number."""
    levels = []
    for k in range(probs.shape[1]):
        distinct, level = np.unique(probs[:, k], return_inverse=True)
        levels.append((level.ravel(), len(distinct)))
    return levels


DECISION_METRICS = ("f1", "sensitivity", "specificity")


def _decision_rows(
    predicted: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    """F1, sensitivity and specificity of every resample row (weights: (rows, n) multiplicities): binary
    those of class 1; multiclass macro means (F1 of a class never predicted nor present is 0; sensitivity
    of an absent class is left out)."""
    classes = [1] if n_classes == 2 else range(n_classes)
    per_class: dict[str, list[np.ndarray]] = {name: [] for name in DECISION_METRICS}
    for k in classes:
        is_predicted, is_true = predicted == k, labels == k
        true_positive = weights @ (is_predicted & is_true).astype(float)
        predicted_count = weights @ is_predicted.astype(float)
        positives, negatives = weights @ is_true.astype(float), weights @ (~is_true).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            denominator = predicted_count + positives
            per_class["f1"].append(np.where(denominator > 0, 2.0 * true_positive / denominator, 0.0))
            per_class["sensitivity"].append(np.where(positives > 0, true_positive / positives, np.nan))
            true_negative = negatives - (predicted_count - true_positive)
            per_class["specificity"].append(np.where(negatives > 0, true_negative / negatives, np.nan))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: the metric is undefined
        return {name: np.nanmean(values, axis=0) for name, values in per_class.items()}


def _predict(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    if probs.shape[1] == 2:
        return (probs[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    return probs.argmax(axis=1)


def _interval(estimate: float | None, samples: np.ndarray | None, confidence: float) -> Interval:
    if estimate is not None and np.isnan(estimate):
        estimate = None
    if estimate is None or samples is None:
        return Interval(estimate, None, None)
    tail = (1.0 - confidence) / 2.0
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return Interval(float(estimate), None, None)
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def paired_bootstrap(
    y_true,
    probs_a,
    probs_b,
    *,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    predicted_a=None,
    predicted_b=None,
    groups=None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """CIs for AUC, F1, sensitivity and specificity of models a and b and of a - b.

    y_true: (n,) class indices; probs_a, probs_b: (n, K) probabilities, K = 2 binary; groups: (n,)
    cluster ids (patient, clip) resampled together, None when every image is independent. The decisions
    behind F1 / sensitivity / specificity are `predicted_a` / `predicted_b` ((n,) class indices) when
    given, else binary `P(class 1) >= threshold` (0.5 when not given) and multiclass argmax. Raises
    ValueError on mismatched shapes.
    """
    labels = np.asarray(y_true, dtype=np.int64)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or probs_a.ndim != 2 or len(labels) != len(probs_a):
        raise ValueError("probs_a and probs_b must both be (n_cases, n_classes) and match y_true")
    if groups is not None and np.shape(groups) != labels.shape:
        raise ValueError(f"groups must be (n,) = {labels.shape}, one cluster id per image")
    n_classes = probs_a.shape[1]
    predicted = [
        np.asarray(given, dtype=np.int64) if given is not None else _predict(probs, threshold)
        for given, probs, threshold in (
            (predicted_a, probs_a, threshold_a),
            (predicted_b, probs_b, threshold_b),
        )
    ]
    rng = np.random.default_rng(seed)
    original = np.ones((1, len(labels)))
    levels = [_score_levels(probs_a), _score_levels(probs_b)]
    auc_point = [_macro_auc_rows(side_levels, labels, original) for side_levels in levels]
    decision_point = [_decision_rows(p, labels, original, n_classes) for p in predicted]

    chunk = max(1, _MAX_CELLS_PER_CHUNK // max(1, len(labels)))
    auc_samples: list[list[np.ndarray]] = [[], []]
    decision_samples: list[dict[str, list[np.ndarray]]] = [
        {m: [] for m in DECISION_METRICS} for _ in range(2)
    ]
    for start in range(0, resamples, chunk):
        weights = cluster_weights(labels, groups, min(chunk, resamples - start), rng)
        for side in range(2):
            auc_rows = _macro_auc_rows(levels[side], labels, weights)
            if auc_rows is not None:
                auc_samples[side].append(auc_rows)
            for name, rows in _decision_rows(predicted[side], labels, weights, n_classes).items():
                decision_samples[side][name].append(rows)

    auc_a = np.concatenate(auc_samples[0]) if auc_samples[0] else None
    auc_b = np.concatenate(auc_samples[1]) if auc_samples[1] else None
    auc_defined = auc_point[0] is not None
    auc_estimates = [float(p[0]) if p is not None else None for p in auc_point]
    if n_classes == 2 and inference_undefined(labels == 1):
        auc_a = auc_b = None
    intervals = {
        "auc_a": _interval(auc_estimates[0], auc_a, confidence),
        "auc_b": _interval(auc_estimates[1], auc_b, confidence),
        "auc_difference": _interval(
            auc_estimates[0] - auc_estimates[1] if auc_defined else None,
            auc_a - auc_b if auc_a is not None and auc_b is not None else None,
            confidence,
        ),
    }
    for name in DECISION_METRICS:
        samples = [np.concatenate(decision_samples[side][name]) for side in range(2)]
        points = [float(decision_point[side][name][0]) for side in range(2)]
        intervals[f"{name}_a"] = _interval(points[0], samples[0], confidence)
        intervals[f"{name}_b"] = _interval(points[1], samples[1], confidence)
        intervals[f"{name}_difference"] = _interval(
            points[0] - points[1], samples[0] - samples[1], confidence
        )
    return PairedBootstrap(**intervals, resamples=resamples, confidence=confidence)


def decision_intervals(
    y_true,
    predicted,
    n_classes: int,
    *,
    groups=None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Sensitivity and specificity of one set of decisions with stratified cluster-bootstrap CIs.

    y_true, predicted: (n,) class indices; binary: those of class 1, multiclass: macro means (as in
    `paired_bootstrap`); groups: (n,) cluster ids or None. Returns {"sensitivity": ..., "specificity": ...}.
    """
    labels, predicted = np.asarray(y_true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    point = _decision_rows(predicted, labels, np.ones((1, len(labels))), n_classes)
    weights = cluster_weights(labels, groups, resamples, np.random.default_rng(seed))
    samples = _decision_rows(predicted, labels, weights, n_classes)
    return {
        name: _interval(float(point[name][0]), samples[name], confidence)
        for name in ("sensitivity", "specificity")
    }
