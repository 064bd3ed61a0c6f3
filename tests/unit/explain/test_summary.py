"""Means of per-image metrics with cluster-bootstrap intervals: series are resampled whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from renalmae.explain.measure import FAITHFULNESS_METRICS, LOCALISATION_METRICS, summarise
from renalmae.explain.summary import mean_interval


def test_the_mean_is_over_images_and_the_interval_contains_it():
    values = np.random.default_rng(0).random(60)
    entry = mean_interval(values, np.repeat(np.arange(20), 3), resamples=500)
    assert entry["mean"] == pytest.approx(values.mean(), abs=1e-6)
    assert entry["low"] < entry["mean"] < entry["high"]
    assert (entry["n"], entry["groups"]) == (60, 20)


def test_frames_of_one_series_move_together():
    # two series of ten identical frames: resampling series gives means 0, 1/2 or 1, never anything narrower
    values, groups = np.repeat([0.0, 1.0], 10), np.repeat(["a", "b"], 10)
    entry = mean_interval(values, groups, resamples=2000)
    assert (entry["mean"], entry["low"], entry["high"]) == (0.5, 0.0, 1.0)


def test_one_series_has_a_mean_but_no_interval_and_missing_values_are_left_out():
    entry = mean_interval([0.2, np.nan, 0.4], ["a", "a", "a"])
    assert entry == {"mean": pytest.approx(0.3), "low": None, "high": None, "n": 2, "groups": 1}
    assert mean_interval([np.nan], ["a"])["mean"] is None


def test_localisation_is_summarised_over_lesion_images_and_faithfulness_over_all():
    table = pd.DataFrame(
        {
            "weighting": "score",
            "label": ["utd", "utd", "normal", "normal"],
            "group": ["s1", "s2", "s3", "s4"],
            "has_mask": [True, True, False, False],
            **{metric: [1.0, 0.0, np.nan, np.nan] for metric in LOCALISATION_METRICS},
            **{metric: [0.1, 0.2, 0.3, 0.4] for metric in FAITHFULNESS_METRICS},
        }
    )
    summary = summarise(table, resamples=200)["score"]
    assert set(summary) == {"utd", "normal", "all"}
    assert summary["all"]["pointing_game"]["n"] == 2 and summary["all"]["pointing_game"]["mean"] == 0.5
    assert summary["all"]["deletion_auc"]["n"] == 4
    assert summary["all"]["deletion_auc"]["mean"] == pytest.approx(0.25)
    assert summary["normal"]["energy_in_mask"]["n"] == 0


def test_an_interval_with_a_negative_bound_reads_low_to_high_and_zero_has_no_sign():
    from renalmae.explain.report import interval_text

    assert interval_text({"mean": 0.25, "low": 0.1, "high": 0.4}) == "0.250 (0.100–0.400)"
    assert interval_text({"mean": -0.1, "low": -0.23, "high": -0.0001}) == "-0.100 (-0.230 to 0.000)"
    assert interval_text({"mean": -0.0004, "low": None, "high": None}) == "0.000"
    assert interval_text({"mean": None}) is None
