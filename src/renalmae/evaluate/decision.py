"""How a model's probabilities become a class: a threshold on P(anomaly), or a prior-corrected argmax.

Binary task: predict the anomaly when P(anomaly) >= threshold. A fold model's threshold is chosen on
its own validation fold (`choose_threshold`); a fold ensemble's (mean probability of its fold models)
is the mean of its members' thresholds. If the fold models are monotone rescalings of one score near
the operating point (the same model trained on other folds, calibrated differently), the mean of the
thresholds is that operating point on the mean of the probabilities, exactly for affine rescalings.
Re-choosing a threshold on the pooled validation predictions instead mixes differently calibrated
models: in a simulation with five such models a sensitivity target of 0.90 gave 0.94 on new data,
the mean of the thresholds 0.90 (tests/unit/evaluate/test_decision.py).

Multiclass task: prior-corrected argmax (Saerens, Latinne & Decaestecker 2002, Neural Computation
14:21-41). A model trained with class-balanced loss weights or a class-balanced sampler estimates the
class posteriors of a set in which every class is equally common; multiplying them by the class
frequencies of the development set (renormalising does not change the argmax) gives the posteriors
for the class mix the model will meet, whose argmax is the decision with the fewest errors. A plain
argmax of balanced posteriors hands many normal images to the rare classes. Models trained without
balancing (`class_balance: none`) already estimate those posteriors: their class weights are all 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from renalmae.evaluate.thresholds import choose_threshold
from renalmae.operating_point import DecisionRule as DecisionRule  # re-exported

BALANCED_TRAINING = ("loss", "sampler")


def fold_threshold(
    validation_labels, validation_probabilities, method: str, target: float, source: str
) -> float:
    """The threshold of one fold model, chosen on its own validation fold (see `choose_threshold`)."""
    return choose_threshold(
        validation_labels, np.asarray(validation_probabilities)[:, 1], method, target, source
    )


def ensemble_rule(fold_thresholds: Sequence[float], method: str) -> DecisionRule:
    """The binary rule of a fold ensemble: the mean of its fold models' validation thresholds."""
    return DecisionRule(
        threshold=float(np.mean(fold_thresholds)),
        chosen_on=f"mean of the {len(fold_thresholds)} fold models' thresholds, each chosen ({method}) "
        "on its own validation fold",
    )


def multiclass_rule(class_balance: str | None, development_labels, n_classes: int) -> DecisionRule:
    """Prior-corrected argmax for a model trained class-balanced (`loss` / `sampler`), else plain argmax.

    development_labels: class indices of the development images (the pooled validation folds), whose
    frequencies are the priors. class_balance None (unknown, e.g. runs written before it was recorded)
    gives a plain argmax, said so in `chosen_on`.
    """
    if class_balance not in BALANCED_TRAINING:
        why = (
            "the models were trained without class balancing" if class_balance else "class balancing unknown"
        )
        return DecisionRule(chosen_on=f"plain argmax ({why})")
    counts = np.bincount(np.asarray(development_labels, dtype=np.int64), minlength=n_classes).astype(float)
    priors = counts / counts.sum()
    return DecisionRule(
        class_weights=tuple(float(p) for p in priors),
        chosen_on=f"class frequencies of the {int(counts.sum())} development images (validation folds), "
        f"undoing the class-balanced training ({class_balance})",
    )
