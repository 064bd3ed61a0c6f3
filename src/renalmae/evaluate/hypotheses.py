"""Declared hypotheses: which tests form Holm's family, and which are only described.

A comparison computes several tests, but only the hypotheses declared before the data were seen
(`evaluate.hypotheses`, e.g. `delong:test`, `delong:external`) are confirmatory. Holm's correction
(Holm 1979, Scand J Statist 6:65-70) runs over exactly those, so an extra test never costs the
declared ones power. A declared test is still left out of the family, and described instead, when it
is undefined on the data at hand (too few images of a class) or cannot reach alpha at all: its
smallest attainable p (e.g. 0.0625 for Wilcoxon over 5 folds) is at or above alpha, so it could only
dilute the family. A multiclass DeLong hypothesis is one test per class (one-vs-rest), all in the
family. Every test is reported with the reason it is or is not in the family.

Hypothesis ids are `<test>:<data>`: `delong:test`, `delong:external`, `mcnemar:test`,
`mcnemar:external` (the fold ensembles on the internal holdout / the external set) and
`wilcoxon_auc:validation`, `wilcoxon_f1:validation` (the fold models on their validation folds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import get_args

from renalmae.params import Hypothesis
from renalmae.stats.multiple import holm

HYPOTHESES: tuple[str, ...] = get_args(Hypothesis)
TEST_NAMES = {
    "delong": "DeLong (AUC)",
    "mcnemar": "McNemar (correct / incorrect; exact, or clustered where images share a cluster)",
    "wilcoxon_auc": "Wilcoxon signed-rank (fold AUC)",
    "wilcoxon_f1": "Wilcoxon signed-rank (fold F1)",
}
DATA_NAMES = {"test": "internal holdout", "external": "external set", "validation": "validation folds"}


@dataclass(frozen=True)
class HypothesisOutcome:
    """One computed test: which hypothesis it belongs to, its p, and (after `declared_family`) its place."""

    hypothesis: str
    """The hypothesis id (`delong:test`, ...)."""
    class_name: str | None
    """One-vs-rest class of a multiclass DeLong test; None otherwise."""
    statistic: str
    """Human-readable statistic (z, discordant pairs, folds and median difference)."""
    p_value: float | None
    smallest_attainable_p: float | None = None
    """The floor of p on these data (exact tests); None for asymptotic tests, which have none."""
    undefined: str | None = None
    in_family: bool = False
    p_holm: float | None = None
    rejected: bool = False
    reason: str = ""
    """Why the test is, or is not, in the family."""

    @property
    def label(self) -> str:
        test, data = self.hypothesis.split(":")
        label = f"{TEST_NAMES[test]}, {DATA_NAMES[data]}"
        return f"{label}, {self.class_name} vs rest" if self.class_name else label

    @property
    def key(self) -> str:
        return self.hypothesis + (f":{self.class_name}" if self.class_name else "")

    def to_dict(self) -> dict:
        return asdict(self) | {"label": self.label, "key": self.key}


def declared_family(
    outcomes: list[HypothesisOutcome], declared: list[str], alpha: float
) -> list[HypothesisOutcome]:
    """Place each outcome in Holm's family or among the descriptive tests, and Holm-adjust the family.

    A test is in the family when its hypothesis is declared, it is defined, and its smallest attainable
    p is below `alpha`. `rejected` = Holm-adjusted p < alpha. Returns the outcomes in the same order.
    """
    placed = []
    for outcome in outcomes:
        if outcome.hypothesis not in declared:
            reason = "descriptive: not declared in evaluate.hypotheses"
        elif outcome.undefined or outcome.p_value is None:
            reason = f"descriptive: not defined on these data ({outcome.undefined or 'no p-value'})"
        elif outcome.smallest_attainable_p is not None and outcome.smallest_attainable_p >= alpha:
            reason = (
                f"descriptive: cannot reach alpha {alpha:g} with these data (smallest attainable p "
                f"{outcome.smallest_attainable_p:.4g})"
            )
        else:
            reason = "declared hypothesis, in Holm's family"
        placed.append(replace(outcome, in_family=reason.startswith("declared"), reason=reason))
    adjusted = holm({o.key: o.p_value for o in placed if o.in_family})
    return [
        replace(o, p_holm=adjusted[o.key], rejected=adjusted[o.key] < alpha) if o.in_family else o
        for o in placed
    ]
