import pytest

from renalmae.stats.multiple import holm, relative_improvement


def test_holm_matches_the_textbook_step_down():
    adjusted = holm({"delong": 0.01, "mcnemar": 0.04, "wilcoxon": 0.03})
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert adjusted == pytest.approx({"delong": 0.03, "wilcoxon": 0.06, "mcnemar": 0.06})


def test_holm_caps_at_one_and_keeps_undefined_p_values_undefined():
    adjusted = holm({"a": 0.6, "b": None, "c": 0.9})
    assert adjusted == {"a": 1.0, "b": None, "c": 1.0}


def test_holm_never_lowers_a_p_value():
    raw = {"a": 0.001, "b": 0.2, "c": 0.049, "d": 0.5}
    assert all(holm(raw)[name] >= p for name, p in raw.items())


def test_relative_improvement_is_percent_of_the_baseline():
    assert relative_improvement(0.88, 0.80) == pytest.approx(10.0)
    assert relative_improvement(0.72, 0.80) == pytest.approx(-10.0)


def test_relative_improvement_undefined_without_a_baseline():
    assert relative_improvement(0.9, 0.0) is None
    assert relative_improvement(None, 0.8) is None
