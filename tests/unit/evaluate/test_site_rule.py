"""A site's own decision rule, chosen on a small labelled sample of that site."""

import numpy as np
import pytest

from renalmae.errors import DataError
from renalmae.evaluate.site_rule import site_rule


def _site_sample(n=80, shift=0.25, seed=0):
    """A site whose anomalies score lower than at development: the development threshold misses them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    p = np.clip(0.3 + shift * y + rng.normal(0, 0.1, n), 0, 1)
    return y, p


def test_a_site_rule_keeps_the_target_sensitivity_on_its_sample_and_records_its_size():
    y, p = _site_sample()
    rule = site_rule("clinic-b", y, p, method="sensitivity", target_sensitivity=0.9, resamples=300)
    assert rule["sensitivity"]["estimate"] >= 0.9
    assert rule["sensitivity"]["low"] <= rule["sensitivity"]["estimate"] <= rule["sensitivity"]["high"]
    assert (rule["n"], rule["anomalous"] + rule["normal"]) == (80, 80)
    assert rule["threshold"] < 0.5  # lower than a development threshold near 0.5 would be
    assert "optimistic" in rule["chosen_on"] and "clinic-b" in rule["chosen_on"]


def test_a_site_sample_with_too_few_anomalies_is_refused_naming_the_site():
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(DataError, match="site clinic-c: .* 3 anomalous .* at least 5 of each"):
        site_rule("clinic-c", y, np.linspace(0, 1, 23))


def test_a_clustered_site_sample_is_counted_in_clusters_and_widens_the_interval():
    rng = np.random.default_rng(2)
    series = np.arange(120) // 6
    y = (rng.random(20) < 0.5).astype(int)[series]  # every frame of a series has the series' label
    p = np.clip(0.3 + 0.25 * y + rng.normal(0, 0.12, 20)[series] + rng.normal(0, 0.03, 120), 0, 1)
    independent = site_rule("s", y, p, resamples=400)
    clustered = site_rule("s", y, p, groups=series, resamples=400)
    assert clustered["clusters"] == 20 and independent["clusters"] == 120

    def width(rule):
        return rule["sensitivity"]["high"] - rule["sensitivity"]["low"]

    assert width(clustered) > width(independent)
