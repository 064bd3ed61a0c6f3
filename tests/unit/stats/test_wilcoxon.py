import pytest
from scipy.stats import wilcoxon

from renalmae.stats.wilcoxon import wilcoxon_folds


def test_matches_scipy_on_five_folds():
    candidate = [0.91, 0.88, 0.93, 0.90, 0.95]
    baseline = [0.85, 0.86, 0.87, 0.91, 0.89]
    result = wilcoxon_folds(candidate, baseline)
    expected = wilcoxon([a - b for a, b in zip(candidate, baseline, strict=True)])
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.n_pairs == 5


def test_five_folds_all_better_gives_the_smallest_exact_p():
    result = wilcoxon_folds([0.9] * 5, [0.8, 0.81, 0.82, 0.83, 0.84])
    assert result.p_value == pytest.approx(0.0625)
    assert result.smallest_attainable_p == pytest.approx(0.0625)


@pytest.mark.parametrize(("folds", "floor"), [(5, 0.0625), (6, 0.03125), (8, 0.0078125)])
def test_the_smallest_attainable_p_is_two_over_two_to_the_folds(folds, floor):
    # reached exactly when every fold favours one model (scipy's exact distribution)
    result = wilcoxon_folds([0.9] * folds, [0.8 - 0.01 * k for k in range(folds)])
    assert result.smallest_attainable_p == pytest.approx(floor)
    assert result.p_value == pytest.approx(floor)


def test_folds_without_a_difference_do_not_count_towards_the_floor():
    result = wilcoxon_folds([0.9, 0.8, 0.7, 0.6], [0.9, 0.7, 0.6, 0.5])
    assert result.smallest_attainable_p == pytest.approx(0.25)


def test_folds_with_an_undefined_metric_are_dropped():
    result = wilcoxon_folds([0.9, None, 0.8, 0.7], [0.8, 0.7, float("nan"), 0.6])
    assert result.n_pairs == 2


def test_identical_folds_give_p_one_and_no_folds_give_undefined():
    assert wilcoxon_folds([0.8, 0.9], [0.8, 0.9]).p_value == 1.0
    assert wilcoxon_folds([None], [0.5]).p_value is None
