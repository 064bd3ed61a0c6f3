"""Means of per-image explanation metrics with cluster-bootstrap confidence intervals.

Frames of one ultrasound series (or images of one patient) are strongly correlated, so images are not
independent: the bootstrap resamples whole groups (the ingest table's `group`) with replacement and
recomputes the mean over the images of the drawn groups (a ratio of group sums to group sizes).
`scipy.stats.bootstrap` does the resampling (paired over the two group-level arrays), percentile
intervals as in `renalmae.stats.bootstrap`. With fewer than two groups there is no interval (null).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.stats import bootstrap


def _ratio_of_sums(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def _rounded(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def mean_interval(
    values: np.ndarray | list[float],
    groups: np.ndarray | list[str],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """{mean, low, high, n, groups} of `values` (NaNs left out), cluster-bootstrap percentile interval."""
    frame = pd.DataFrame({"value": np.asarray(values, dtype=float), "group": np.asarray(groups)})
    frame = frame[np.isfinite(frame["value"])]
    entry: dict[str, float | int | None] = {
        "mean": _rounded(frame["value"].mean()) if len(frame) else None,
        "low": None,
        "high": None,
        "n": int(len(frame)),
        "groups": int(frame["group"].nunique()),
    }
    by_group = frame.groupby("group")["value"].agg(["sum", "count"])
    if len(by_group) < 2:
        return entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample distribution (all equal) is not an error here
        result = bootstrap(
            (by_group["sum"].to_numpy(), by_group["count"].to_numpy(dtype=float)),
            _ratio_of_sums, paired=True, vectorized=True, n_resamples=resamples,
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        )  # fmt: skip
    entry["low"] = _rounded(result.confidence_interval.low)
    entry["high"] = _rounded(result.confidence_interval.high)
    return entry
