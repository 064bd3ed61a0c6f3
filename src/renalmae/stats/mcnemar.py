"""McNemar's test: do two classifiers err on the same images at different rates?

Independent images: the exact test, a two-sided binomial test on the d discordant pairs (McNemar 1947,
Psychometrika 12:153-157; exact form e.g. Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol
13:91). Its smallest attainable p is 2 / 2^d: with fewer than six discordant pairs it cannot reach 0.05.

Clustered images (frames of one clip, images of one patient): Durkalski, Palesch, Lipsitz & Rust
(2003), "Analysis of clustered matched-pair data", Stat Med 22:2417-2428, with b_i and c_i the
discordant pairs of cluster i:  X^2 = (sum_i (b_i - c_i))^2 / sum_i (b_i - c_i)^2, chi-square with one
degree of freedom. With one image per cluster it is McNemar's (b - c)^2 / (b + c). Under H0 each
cluster's difference is symmetric about 0, so no p below 2 / 2^k is credible from k clusters with a
non-zero difference: that is its smallest attainable p here, as for the exact test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, chi2


@dataclass(frozen=True)
class McNemarResult:
    """`a_only_correct` / `b_only_correct` are the discordant pairs; p is the exact two-sided binomial p."""

    a_only_correct: int
    b_only_correct: int
    p_value: float
    smallest_attainable_p: float = 1.0
    """2 / 2^d for d discordant pairs, or d clusters with a non-zero difference (1 when there are none)."""
    method: str = "exact"
    """`exact` (independent images) or `clustered` (Durkalski et al. 2003)."""
    clusters: int = 0
    """Clusters the test counted (0: every image its own)."""

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Exact McNemar test on paired correct/incorrect indicators (binomial test on the discordant pairs)."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError("correct_a and correct_b must be 1-D and paired (same length)")
    a_only = int((correct_a & ~correct_b).sum())
    b_only = int((~correct_a & correct_b).sum())
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return McNemarResult(a_only, b_only, p_value, min(1.0, 2.0 ** (1 - discordant)))


def mcnemar_test(correct_a, correct_b, groups=None) -> McNemarResult:
    """McNemar's test on paired correct/incorrect indicators ((n,) bools), clustered by `groups`.

    Every image its own cluster (groups None, or all distinct): the exact test. Otherwise Durkalski's
    clustered statistic, whose p is 1 when no cluster has a non-zero difference.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError("correct_a and correct_b must be 1-D and paired (same length)")
    if groups is None or len(np.unique(np.asarray(groups))) == len(correct_a):
        return mcnemar_exact(correct_a, correct_b)
    clusters = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    a_only = np.bincount(clusters, weights=correct_a & ~correct_b)
    b_only = np.bincount(clusters, weights=~correct_a & correct_b)
    difference = a_only - b_only
    nonzero = int(np.count_nonzero(difference))
    squares = float(np.sum(difference**2))
    p_value = 1.0 if squares == 0 else float(chi2.sf(difference.sum() ** 2 / squares, df=1))
    return McNemarResult(
        int(a_only.sum()), int(b_only.sum()), p_value, min(1.0, 2.0 ** (1 - nonzero)), "clustered",
        len(difference),
    )  # fmt: skip
