"""Wilcoxon signed-rank test over paired fold-level metrics (scipy.stats.wilcoxon).

With n folds the test has only 2^n sign patterns, so no result can be more extreme than all n folds
favouring one model: the smallest attainable two-sided p is 2 / 2^n (0.0625 for 5 folds; Wilcoxon
1945, Biometrics Bulletin 1(6):80-83). A test whose floor is at or above alpha cannot reject anything
and belongs among the descriptive statistics, not in a family of hypotheses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import wilcoxon


@dataclass(frozen=True)
class WilcoxonResult:
    """Two-sided test that fold metrics of a and b have a median difference of zero; None when untestable."""

    statistic: float | None
    p_value: float | None
    n_pairs: int
    median_difference: float | None
    smallest_attainable_p: float | None = None
    """2 / 2^n over the n folds with a non-zero difference (1 when there are none)."""

    def to_dict(self) -> dict:
        return asdict(self)


def wilcoxon_folds(metric_a: Sequence[float | None], metric_b: Sequence[float | None]) -> WilcoxonResult:
    """Pairs where either metric is undefined (None / NaN) are dropped; all-equal pairs give p = 1."""
    if len(metric_a) != len(metric_b):
        raise ValueError("metric_a and metric_b must be paired by fold (same length)")
    pairs = [
        (a, b)
        for a, b in zip(metric_a, metric_b, strict=True)
        if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))
    ]
    if not pairs:
        return WilcoxonResult(None, None, 0, None)
    differences = np.array([a - b for a, b in pairs], dtype=float)
    median = float(np.median(differences))
    floor = smallest_attainable_p(int(np.count_nonzero(differences)))
    if np.all(differences == 0):
        return WilcoxonResult(0.0, 1.0, len(pairs), median, floor)
    result = wilcoxon(differences, alternative="two-sided")
    return WilcoxonResult(float(result.statistic), float(result.pvalue), len(pairs), median, floor)


def smallest_attainable_p(nonzero_pairs: int) -> float:
    """The smallest two-sided p of the signed-rank test on this many non-zero differences: 2 / 2^n."""
    return min(1.0, 2.0 ** (1 - nonzero_pairs))
