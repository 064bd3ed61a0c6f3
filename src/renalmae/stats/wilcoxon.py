"""Wilcoxon signed-rank test over paired fold-level metrics (scipy.stats.wilcoxon)."""

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
    if np.all(differences == 0):
        return WilcoxonResult(0.0, 1.0, len(pairs), median)
    result = wilcoxon(differences, alternative="two-sided")
    return WilcoxonResult(float(result.statistic), float(result.pvalue), len(pairs), median)
