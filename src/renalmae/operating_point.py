"""How a model's probabilities become a class: the decision rule compare chooses and `predict` applies.

A threshold on P(class 1) for the binary task, weights applied before the argmax for three classes (the
prior correction); how they are chosen, and from which data, is `renalmae.evaluate.decision`. Kept apart
from `renalmae.evaluate` (numpy only) so that a registered model applies its rule without importing the
evaluation package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def predict(probs: np.ndarray, threshold: float | None = None, class_weights=None) -> np.ndarray:
    """Predicted class index: binary `P(class 1) >= threshold` (default 0.5), multiclass argmax of
    `probs` times `class_weights` (plain argmax when None; see renalmae.evaluate.decision)."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape[1] == 2:
        return (probs[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    if class_weights is not None:
        probs = probs * np.asarray(class_weights, dtype=float)[None, :]
    return probs.argmax(axis=1)


@dataclass(frozen=True)
class DecisionRule:
    """A threshold on P(class 1) (binary) or weights applied before the argmax (multiclass)."""

    threshold: float | None = None
    class_weights: tuple[float, ...] | None = None
    """Multiclass: probabilities are multiplied by these before the argmax (None = plain argmax)."""
    chosen_on: str = ""
    """Which data chose the rule (never the data it is measured on)."""

    def predict(self, probabilities: np.ndarray) -> np.ndarray:
        """Class index of each row of (n, K) probabilities."""
        return predict(probabilities, self.threshold, self.class_weights)

    @property
    def name(self) -> str:
        if self.threshold is not None:
            return f"P(anomaly) >= {self.threshold:.3f}"
        return "prior-corrected argmax" if self.class_weights else "argmax"

    def to_dict(self) -> dict:
        return asdict(self) | {"name": self.name}

    @classmethod
    def from_dict(cls, values: dict) -> DecisionRule:
        """The rule `to_dict` wrote (comparison.json's `decision_rules`)."""
        weights = values.get("class_weights")
        return cls(
            values.get("threshold"), None if weights is None else tuple(weights), values.get("chosen_on", "")
        )


def registered_rule(info: dict) -> DecisionRule | None:
    """The rule a registered ensemble carries (`decision_rule` of its ensemble.json); None for a bundle
    registered before versions carried one, and for a single trained run."""
    values = info.get("decision_rule")
    return None if values is None else DecisionRule.from_dict(values)
