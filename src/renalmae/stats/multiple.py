"""Holm's step-down correction for several p-values, and the relative improvement used in reports."""

from __future__ import annotations

from collections.abc import Mapping


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values (family-wise error control); undefined (None) p-values stay None."""
    defined = sorted(((p, name) for name, p in p_values.items() if p is not None), key=lambda item: item[0])
    family = len(defined)
    adjusted: dict[str, float | None] = {name: None for name in p_values}
    running_max = 0.0
    for rank, (p, name) in enumerate(defined):
        running_max = max(running_max, min(1.0, (family - rank) * p))
        adjusted[name] = running_max
    return adjusted


def relative_improvement(candidate: float | None, baseline: float | None) -> float | None:
    """(candidate - baseline) / baseline x 100, in percent; None when undefined (baseline 0 or missing).

    The paper (Megahed et al., arXiv 2512.13434) reports gains such as "+2.32 % AUC" without stating
    the formula in the text available to us; we report this relative definition and, beside it, the
    absolute difference in metric points, so a reader can check either reading.
    """
    if candidate is None or baseline is None or baseline == 0:
        return None
    return (candidate - baseline) / baseline * 100.0
