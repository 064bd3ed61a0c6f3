"""Non-inferiority of AUCs: the bound agrees with DeLong's test, and the simulated operating characteristics
the promotion gate relies on (194 images, 65 anomalies, as in the issue)."""

import numpy as np
import pytest
from scipy.stats import norm
from test_delong import MARKERS, OUTCOME_POOR

from renalmae.stats.delong import delong_test
from renalmae.stats.noninferiority import noninferiority_test

POSITIVES, NEGATIVES = 65, 129
SIMULATIONS = 200


def _binormal_pairs(auc_candidate: float, auc_champion: float, correlation: float, seed: int):
    """SIMULATIONS draws of (labels, candidate scores, champion scores): equal-variance binormal models
    with the given AUCs (AUC = Phi(d / sqrt 2)) whose scores correlate `correlation` within a class."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(POSITIVES, dtype=int), np.zeros(NEGATIVES, dtype=int)]
    separations = np.sqrt(2.0) * norm.ppf([auc_candidate, auc_champion])
    noise = (
        rng.standard_normal((SIMULATIONS, len(labels), 2))
        @ np.linalg.cholesky([[1.0, correlation], [correlation, 1.0]]).T
    )
    scores = separations * labels[None, :, None] + noise
    return labels, scores[..., 0], scores[..., 1]


def _pass_rate(auc_candidate, auc_champion, correlation, margin, seed=0) -> float:
    labels, candidate, champion = _binormal_pairs(auc_candidate, auc_champion, correlation, seed)
    decisions = [
        noninferiority_test(labels, c, r, margin=margin, alpha=0.05).non_inferior
        for c, r in zip(candidate, champion, strict=True)
    ]
    return float(np.mean(decisions))


def test_a_candidate_0_04_worse_than_a_0_90_champion_passes_at_most_5_percent_of_the_time():
    assert _pass_rate(0.86, 0.90, correlation=0.8, margin=0.02) <= 0.05


def test_an_equal_candidate_correlated_0_8_passes_at_least_80_percent_of_the_time_with_margin_0_05():
    assert _pass_rate(0.90, 0.90, correlation=0.8, margin=0.05) >= 0.80


@pytest.mark.parametrize(("first", "second"), [("wfns", "s100b"), ("s100b", "ndka"), ("wfns", "ndka")])
def test_the_bound_is_the_one_sided_delong_interval_and_matches_the_z_test(first, second):
    # DeLong's SE is checked against R pROC on these data in test_delong.py
    delong = delong_test(OUTCOME_POOR, MARKERS[first], MARKERS[second])
    result = noninferiority_test(OUTCOME_POOR, MARKERS[first], MARKERS[second], margin=0.05, alpha=0.05)
    assert result.lower_bound == pytest.approx(delong.difference - 1.6448536269514722 * delong.std_error)
    assert result.p_value == pytest.approx(norm.sf((delong.difference + 0.05) / delong.std_error))
    assert result.non_inferior == (result.p_value < 0.05)
    assert result.superior == (result.lower_bound > 0)


def test_superiority_needs_the_bound_above_zero():
    result = noninferiority_test(OUTCOME_POOR, MARKERS["wfns"], MARKERS["ndka"], margin=0.02, alpha=0.05)
    assert result.difference > 0 and result.lower_bound > 0
    assert result.non_inferior and result.superior


def test_an_undefined_comparison_concludes_nothing_and_says_why():
    result = noninferiority_test([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.3, 0.4, 0.5, 0.6], 0.02, 0.05)
    assert not result.non_inferior and not result.superior
    assert "perfectly" in result.undefined and result.lower_bound is None


def test_a_negative_margin_is_a_bug():
    with pytest.raises(ValueError, match="margin"):
        noninferiority_test(OUTCOME_POOR, MARKERS["wfns"], MARKERS["ndka"], margin=-0.1, alpha=0.05)
