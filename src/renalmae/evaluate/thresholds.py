"""Decision thresholds for the binary task, chosen on validation predictions only.

`youden` maximises Youden's J = sensitivity + specificity - 1 on the validation ROC curve;
`sensitivity` takes the highest threshold whose validation sensitivity reaches the target (the most
specific operating point that still finds that share of anomalies). The holdout test set is never
looked at: the caller passes validation labels and probabilities only.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from renalmae.errors import DataError


def choose_threshold(
    y_val, p_anomaly_val, method: str = "youden", target_sensitivity: float = 0.9, source: str = "validation"
) -> float:
    """Threshold on P(anomaly): predict anomaly when `p >= threshold`."""
    labels = np.asarray(y_val).astype(bool)
    if labels.all() or not labels.any():
        raise DataError(
            f"{source}: the validation predictions hold a single class, so no decision threshold can be "
            "chosen; re-split so that every validation fold has normal and anomaly images"
        )
    false_positive_rate, true_positive_rate, thresholds = roc_curve(
        labels, np.asarray(p_anomaly_val, dtype=float), drop_intermediate=False
    )
    # The first point of sklearn's curve is an infinite threshold (nothing positive): never useful.
    false_positive_rate, true_positive_rate, thresholds = (
        false_positive_rate[1:],
        true_positive_rate[1:],
        thresholds[1:],
    )
    if method == "youden":
        best = int(np.argmax(true_positive_rate - false_positive_rate))
    elif method == "sensitivity":
        best = int(np.flatnonzero(true_positive_rate >= target_sensitivity - 1e-12)[0])
    else:
        raise ValueError(f"unknown threshold method {method!r}")
    return float(thresholds[best])
