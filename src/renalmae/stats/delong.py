"""DeLong's test for two correlated ROC AUCs, clustered as Obuchowski (1997), with Sun & Xu's midranks.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845, estimate the covariance of two AUCs
computed on the same cases from their structural components (placement values). Sun & Xu (2014),
IEEE Signal Processing Letters 21(11):1389-1393, obtain every placement value from three midrank
vectors, so the test costs O(n log n) instead of O(m n). It gives the same numbers as R pROC's
`roc.test(method="delong")` (checked in tests/unit/stats/test_delong.py).

Images are rarely independent: frames of one clip, several images of one patient. Obuchowski (1997),
"Nonparametric analysis of clustered ROC curve data", Biometrics 53:567-578, sums the placement values
within each cluster (patient, clip) and estimates the variance from the I cluster sums:

    S10 = I10 / ((I10 - 1) M) sum_i (V10_i - m_i AUC)^2      (I10 clusters holding positives, M positives)
    S01 = I01 / ((I01 - 1) N) sum_i (V01_i - n_i AUC)^2      (I01 clusters holding negatives, N negatives)
    S11 = I / (I - 1)         sum_i (V10_i - m_i AUC)(V01_i - n_i AUC)
    Var(AUC) = S10 / M + S01 / N + 2 S11 / (M N)

applied here to the difference of the two models' placement values (the paired test). With one image
per cluster S11 = 0 and S10, S01 are DeLong's sample variances: the clustered test *is* DeLong's test.
Checked against a literal translation of the Cleveland Clinic's `funcs_clusteredROC.R` (as adapted in
the FDA's iMRMC `doAUCcluster`) and against a large cluster bootstrap (tests/unit/stats/test_clustered.py).

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
    images: int = 0
    clusters: int = 0
    """Independent units the variance was estimated from (= `images` when every image is its own)."""

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


def cluster_codes(groups, n: int) -> np.ndarray:
    """(n,) integer cluster index of each image; `groups` None makes every image its own cluster."""
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must be (n,) = ({n},), one cluster id per image (got {groups.shape})")
    return np.unique(groups, return_inverse=True)[1].ravel()


def clustered_variance(
    positive: np.ndarray, clusters: np.ndarray, v10: np.ndarray, v01: np.ndarray, auc: float
) -> tuple[float, str | None]:
    """Obuchowski's (1997) variance of an AUC (or an AUC difference) from its placement values.

    positive: (n,) bool; clusters: (n,) cluster index; v10: (M,) placement values of the positives and
    v01: (N,) of the negatives, in image order; auc: the AUC (or difference) they average to. Returns
    (variance, None), or (nan, reason) with fewer than two clusters holding positives or negatives.
    """
    n_clusters = int(clusters.max()) + 1
    with_positive = np.bincount(clusters[positive], minlength=n_clusters)
    with_negative = np.bincount(clusters[~positive], minlength=n_clusters)
    i10, i01 = int((with_positive > 0).sum()), int((with_negative > 0).sum())
    if i10 < 2 or i01 < 2:
        return float("nan"), (
            f"the variance needs at least 2 clusters holding positive and 2 holding negative images; "
            f"{i10} and {i01} here"
        )
    positives, negatives = int(positive.sum()), int((~positive).sum())
    x = np.bincount(clusters[positive], weights=v10, minlength=n_clusters) - with_positive * auc
    y = np.bincount(clusters[~positive], weights=v01, minlength=n_clusters) - with_negative * auc
    s10 = i10 / ((i10 - 1) * positives) * np.sum(x * x)
    s01 = i01 / ((i01 - 1) * negatives) * np.sum(y * y)
    s11 = n_clusters / (n_clusters - 1) * np.sum(x * y)
    return float(s10 / positives + s01 / negatives + 2.0 * s11 / (positives * negatives)), None


def _undefined(reason: str, auc_a=None, auc_b=None, images: int = 0, clusters: int = 0) -> DeLongResult:
    difference = None if auc_a is None or auc_b is None else auc_a - auc_b
    return DeLongResult(auc_a, auc_b, difference, None, None, None, reason, images, clusters)


def delong_test(
    y_true, scores_a, scores_b, names: tuple[str, str] = ("model a", "model b"), groups=None
) -> DeLongResult:
    """Compare the AUCs of two score vectors on the same cases (higher score = more likely positive).

    y_true: (n,) 0/1 labels; scores_a, scores_b: (n,) scores; groups: (n,) cluster ids (patient, clip)
    for Obuchowski's clustered variance, None when every image is independent (DeLong). `names` name
    the two in an undefined reason. Raises ValueError on mismatched shapes or labels other than 0/1; a
    set the test cannot use gives an undefined result, not an error.
    """
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    positive = _check_binary(y_true, scores_a, scores_b)
    clusters = cluster_codes(groups, len(positive))
    units = {"images": len(positive), "clusters": int(clusters.max()) + 1 if len(positive) else 0}
    too_few = inference_undefined(positive, "DeLong's test")
    if positive.all() or not positive.any():
        return _undefined(too_few, **units)
    auc_a, v10_a, v01_a = _placements(scores_a[positive], scores_a[~positive])
    auc_b, v10_b, v01_b = _placements(scores_b[positive], scores_b[~positive])
    if too_few:
        return _undefined(too_few, auc_a, auc_b, **units)
    perfect = [(name, auc) for name, auc in zip(names, (auc_a, auc_b), strict=True) if auc in (0.0, 1.0)]
    if perfect:
        which = " and ".join(f"{name} (AUC {auc:.0f})" for name, auc in perfect)
        return _undefined(
            f"{which} separate{'s' if len(perfect) == 1 else ''} the classes perfectly: DeLong's variance "
            "estimate is degenerate at AUC 0 or 1; evaluate on more (or harder) images",
            auc_a,
            auc_b,
            **units,
        )
    # Var(AUC_a - AUC_b) from the differences of the placement values (one image per cluster: DeLong's
    # (1, -1) S10 (1, -1)' / m + (1, -1) S01 (1, -1)' / n).
    difference = auc_a - auc_b
    variance, too_few_clusters = clustered_variance(
        positive, clusters, v10_a - v10_b, v01_a - v01_b, difference
    )
    if too_few_clusters:
        return _undefined(f"DeLong's test: {too_few_clusters}", auc_a, auc_b, **units)
    if not variance > 1e-15:
        return _undefined(
            "zero variance of the AUC difference: the two models order every positive-negative pair "
            "alike, so there is nothing to test",
            auc_a,
            auc_b,
            **units,
        )
    std_error = float(np.sqrt(variance))
    z = difference / std_error
    return DeLongResult(
        auc_a, auc_b, float(difference), std_error, float(z), float(2.0 * ndtr(-abs(z))), None, **units
    )


def delong_test_ovr(
    y_true,
    probs_a,
    probs_b,
    classes: list[str] | None = None,
    names: tuple[str, str] = ("model a", "model b"),
    groups=None,
) -> dict[str, DeLongResult]:
    """One-vs-rest DeLong test per class of multiclass probabilities (n, K), clustered by `groups` when
    given; undefined where a class has too few images (see `delong_test`)."""
    labels = np.asarray(y_true)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or probs_a.ndim != 2 or len(labels) != len(probs_a):
        raise ValueError("probs_a and probs_b must both be (n_cases, n_classes) and match y_true")
    class_names = classes if classes is not None else [str(k) for k in range(probs_a.shape[1])]
    return {
        class_name: delong_test(
            (labels == index).astype(int), probs_a[:, index], probs_b[:, index], names, groups
        )
        for index, class_name in enumerate(class_names)
    }
