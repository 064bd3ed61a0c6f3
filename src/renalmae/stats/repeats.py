"""Two models compared over repeated training runs on the same clustered test images (Obuchowski-Rockette).

One training run is one draw: the same recipe under another seed gives another model, and a test on one
run's predictions (DeLong) accounts only for which test images were drawn. Training each model R times
(repeats) and treating the runs like the readers of a multi-reader multi-case study puts both sources
of variance in the inference: Obuchowski & Rockette (1995), Commun Stat Simul Comput 24:285-308, with
the degrees of freedom of Hillis (2007), Stat Med 26:596-619 (and Hillis, Obuchowski & Berbaum 2008,
Acad Radiol 15:647-661, for random readers and random cases). For two models, the R repeats and the
AUC difference d_r of repeat r:

    MS(T x R) = sum_r (d_r - mean d)^2 / (2 (R - 1))
    denominator = MS(T x R) + R max(Cov2 - Cov3, 0)
    SE(mean d) = sqrt(2 / R x denominator),   df = denominator^2 / (MS(T x R)^2 / (R - 1))

Cov2 is the mean covariance of one model's AUCs across two repeats, Cov3 that of the two models' AUCs
across two repeats, both over the test images: here Obuchowski's (1997) clustered covariances, so frames
of one clip count as one unit (`renalmae.stats.delong`). With one repeat the training variance cannot be
estimated and the result is undefined: report the single run's clustered DeLong test, and say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import t as student_t

from renalmae.stats.delong import _check_binary, _placements, cluster_codes


@dataclass(frozen=True)
class RepeatsResult:
    """The mean AUC difference (a - b) over R repeats with its Obuchowski-Rockette-Hillis inference."""

    repeats: int
    auc_a: list[float]
    auc_b: list[float]
    differences: list[float]
    """d_r = AUC_a - AUC_b of each repeat."""
    mean_difference: float | None
    spread: float | None
    """Standard deviation of the d_r across repeats (training variance, seen on one test set)."""
    std_error: float | None
    df: float | None
    """Hillis's denominator degrees of freedom (inf when every repeat gives the same difference)."""
    p_value: float | None
    low: float | None
    high: float | None
    confidence: float
    images: int = 0
    clusters: int = 0
    undefined: str | None = None

    @property
    def defined(self) -> bool:
        return self.undefined is None

    def to_dict(self) -> dict:
        return asdict(self) | {"df": None if self.df is None or np.isinf(self.df) else self.df}


def auc_covariance(y_true, scores, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of K score vectors on the same images and their (K, K) covariance (Obuchowski 1997).

    y_true: (n,) 0/1; scores: (K, n), higher = more likely positive; groups: (n,) cluster ids or None
    (every image its own: DeLong's covariance). Needs two clusters holding positives and two holding
    negatives (ValueError otherwise).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positive = _check_binary(y_true, *scores)
    clusters = cluster_codes(groups, len(positive))
    n_clusters = int(clusters.max()) + 1
    m_i = np.bincount(clusters[positive], minlength=n_clusters)
    n_i = np.bincount(clusters[~positive], minlength=n_clusters)
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        raise ValueError(f"need 2 clusters with positives and 2 with negatives (got {i10} and {i01})")
    positives, negatives = int(positive.sum()), int((~positive).sum())
    aucs, x, y = [], [], []
    for row in scores:
        auc, v10, v01 = _placements(row[positive], row[~positive])
        aucs.append(auc)
        x.append(np.bincount(clusters[positive], weights=v10, minlength=n_clusters) - m_i * auc)
        y.append(np.bincount(clusters[~positive], weights=v01, minlength=n_clusters) - n_i * auc)
    x, y = np.array(x), np.array(y)
    s10 = i10 / ((i10 - 1) * positives) * (x @ x.T)
    s01 = i01 / ((i01 - 1) * negatives) * (y @ y.T)
    s11 = n_clusters / (n_clusters - 1) * (x @ y.T)
    covariance = s10 / positives + s01 / negatives + (s11 + s11.T) / (positives * negatives)
    return np.array(aucs), covariance


def repeats_test(y_true, scores_a, scores_b, groups=None, confidence: float = 0.95) -> RepeatsResult:
    """Compare models a and b trained R times each, all scored on the same test images.

    y_true: (n,) 0/1 labels; scores_a, scores_b: (R, n), row r = repeat r's fold ensemble (repeat r of
    a is paired with repeat r of b only for the per-repeat differences; the test does not rely on it);
    groups: (n,) cluster ids (patient, clip) or None. Undefined (with the reason) for R = 1 or a set
    without two clusters of each class.
    """
    scores_a, scores_b = np.atleast_2d(scores_a), np.atleast_2d(scores_b)
    if scores_a.shape != scores_b.shape:
        raise ValueError(f"scores_a {scores_a.shape} and scores_b {scores_b.shape} must both be (R, n)")
    repeats = len(scores_a)
    images = len(np.asarray(y_true))
    clusters = int(cluster_codes(groups, images).max()) + 1 if images else 0
    empty = RepeatsResult(
        repeats, [], [], [], None, None, None, None, None, None, None, confidence, images, clusters
    )
    positive = _check_binary(y_true, *scores_a, *scores_b)
    if positive.all() or not positive.any():
        return _replace(empty, undefined="the set holds a single class: no AUC")
    aucs = np.array([_placements(row[positive], row[~positive])[0] for row in (*scores_a, *scores_b)])
    auc_a, auc_b = aucs[:repeats], aucs[repeats:]
    differences = auc_a - auc_b
    mean = float(differences.mean())
    described = _replace(
        empty,
        auc_a=auc_a.tolist(),
        auc_b=auc_b.tolist(),
        differences=differences.tolist(),
        mean_difference=mean,
    )
    if repeats < 2:
        return _replace(
            described,
            undefined="one training run per model: the variance between training runs cannot be estimated "
            "(set evaluate.repeats >= 3)",
        )
    try:
        _, covariance = auc_covariance(y_true, np.concatenate([scores_a, scores_b]), groups)
    except ValueError as error:
        return _replace(described, undefined=f"the test set cannot carry a variance: {error}")
    off_diagonal = ~np.eye(repeats, dtype=bool)
    cov2 = float(
        np.mean([covariance[:repeats, :repeats][off_diagonal], covariance[repeats:, repeats:][off_diagonal]])
    )
    cov3 = float(covariance[:repeats, repeats:][off_diagonal].mean())
    ms_tr = float(np.sum((differences - mean) ** 2) / (2 * (repeats - 1)))
    denominator = ms_tr + repeats * max(cov2 - cov3, 0.0)
    if not denominator > 1e-15:
        return _replace(
            described, undefined="zero variance: every repeat of both models ranks the images alike"
        )
    std_error = float(np.sqrt(2.0 / repeats * denominator))
    df = float("inf") if ms_tr == 0 else denominator**2 / (ms_tr**2 / (repeats - 1))
    statistic = mean / std_error
    half_width = float(student_t.ppf(0.5 + confidence / 2.0, df)) * std_error
    return _replace(
        described,
        spread=float(np.std(differences, ddof=1)),
        std_error=std_error,
        df=df,
        p_value=float(2.0 * student_t.sf(abs(statistic), df)),
        low=mean - half_width,
        high=mean + half_width,
    )


def _replace(result: RepeatsResult, **changes) -> RepeatsResult:
    return RepeatsResult(**(asdict(result) | changes))
