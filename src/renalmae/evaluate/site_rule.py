"""A decision rule for a new site, chosen on a small labelled sample of that site.

A threshold chosen on the development data need not keep its sensitivity at another site (another
scanner, population or protocol: `compare` flags it). A site with a small labelled sample can get its own
rule: the threshold is chosen on the sample the same way as on validation (`evaluate.threshold`), and
the sensitivity and specificity it reaches there are given with cluster-bootstrap intervals. They are
measured on the same images that chose the threshold, so they are optimistic, and the record says so;
its size says how much a reader should trust it.
"""

from __future__ import annotations

import numpy as np

from renalmae.errors import DataError
from renalmae.evaluate.thresholds import choose_threshold
from renalmae.stats.bootstrap import decision_intervals

MIN_PER_CLASS = 5
"""Fewer normal or anomalous images than this in a site's sample give no rule: the threshold would be
one image's score."""


def site_rule(
    site: str,
    y_true,
    p_anomaly,
    method: str = "youden",
    target_sensitivity: float = 0.9,
    groups=None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The binary rule of `site` chosen on its labelled sample, with the sample's size and intervals.

    y_true: (n,) 0/1 (1 = anomaly); p_anomaly: (n,) the model's P(anomaly); groups: (n,) patient / series
    or None. Raises `DataError` naming the site when the sample holds fewer than `MIN_PER_CLASS` images of
    a class. Returns a JSON-ready dict: threshold, method, n, class counts, clusters, sensitivity and
    specificity ({estimate, low, high}) and `chosen_on` in words.
    """
    labels = np.asarray(y_true).astype(np.int64)
    scores = np.asarray(p_anomaly, dtype=float)
    positives, negatives = int(labels.sum()), int((labels == 0).sum())
    if min(positives, negatives) < MIN_PER_CLASS:
        raise DataError(
            f"site {site}: the labelled sample holds {positives} anomalous and {negatives} normal images; a "
            f"site rule needs at least {MIN_PER_CLASS} of each: label more images of that site"
        )
    threshold = choose_threshold(labels, scores, method, target_sensitivity, f"site {site} sample")
    intervals = decision_intervals(
        labels, (scores >= threshold).astype(np.int64), 2, groups=groups, resamples=resamples,
        confidence=confidence, seed=seed,
    )  # fmt: skip
    clusters = len(labels) if groups is None else len(set(np.asarray(groups).tolist()))
    return {
        "site": site,
        "threshold": threshold,
        "method": method,
        "n": int(len(labels)),
        "anomalous": positives,
        "normal": negatives,
        "clusters": clusters,
        "confidence": confidence,
        **{name: interval.to_dict() for name, interval in intervals.items()},
        "chosen_on": f"{len(labels)} labelled images of site {site} ({method}); its sensitivity and "
        "specificity are measured on the same images (optimistic)",
    }
