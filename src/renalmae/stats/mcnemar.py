"""Exact McNemar test: do two classifiers err on the same images at different rates?

Exact = a two-sided binomial test on the d discordant pairs (McNemar 1947, Psychometrika 12:153-157;
exact form e.g. Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91). Its smallest
attainable p is 2 / 2^d: with fewer than six discordant pairs it cannot reach 0.05.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class McNemarResult:
    """`a_only_correct` / `b_only_correct` are the discordant pairs; p is the exact two-sided binomial p."""

    a_only_correct: int
    b_only_correct: int
    p_value: float
    smallest_attainable_p: float = 1.0
    """2 / 2^d for d discordant pairs (1 when there are none)."""

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
