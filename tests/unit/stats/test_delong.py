"""DeLong's test against R pROC's published values and a slow O(m n) reference implementation.

Reference values: R package pROC (Robin et al. 2011, BMC Bioinformatics 12:77), its own test suite,
`tests/testthat/test-roc.test.R` in https://github.com/xrobin/pROC ("roc.test statistic and p are
as expected with defaults"): `roc.test(r.wfns, r.s100b)`, `roc.test(r.wfns, r.ndka)` and
`roc.test(r.ndka, r.s100b)` with the default method="delong", where `r.x <- roc(aSAH$outcome, aSAH$x)`.
The AUCs 0.8237 (wfns), 0.7314 (s100b) and 0.6120 (ndka) are the ones pROC prints for these curves.

Data: pROC's `data(aSAH)` (113 patients after aneurysmal subarachnoid haemorrhage; Turck et al. 2010,
Intensive Care Medicine 36(1):107-115), columns outcome (Poor = 1), wfns, s100b, ndka, in the
package's row order. Each pROC curve above has direction "<" (higher value = poor outcome), which is
the convention of `delong_test`.
"""

import numpy as np
import pytest

from renalmae.stats.delong import delong_test, delong_test_ovr

OUTCOME_POOR = np.array(
    [
        0,
        0,
        0,
        0,
        1,
        1,
        0,
        1,
        0,
        0,
        1,
        0,
        1,
        1,
        0,
        0,
        1,
        0,
        1,
        1,
        1,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        1,
        1,
        0,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        1,
        0,
        1,
        0,
        0,
        1,
        1,
        1,
        0,
        1,
        1,
        0,
        1,
        1,
        1,
        1,
        0,
        0,
        0,
        1,
        1,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        1,
        1,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
    ]
)
WFNS = np.array(
    [
        1,
        1,
        1,
        1,
        3,
        2,
        5,
        4,
        1,
        2,
        5,
        2,
        5,
        5,
        1,
        2,
        5,
        2,
        2,
        5,
        2,
        1,
        1,
        1,
        1,
        2,
        1,
        2,
        1,
        1,
        3,
        4,
        2,
        1,
        4,
        5,
        4,
        1,
        4,
        2,
        5,
        5,
        1,
        1,
        2,
        4,
        1,
        1,
        2,
        5,
        5,
        2,
        1,
        2,
        5,
        1,
        2,
        2,
        2,
        1,
        5,
        1,
        1,
        2,
        5,
        2,
        1,
        4,
        5,
        2,
        4,
        4,
        1,
        4,
        1,
        2,
        1,
        4,
        2,
        1,
        2,
        3,
        2,
        4,
        2,
        1,
        4,
        5,
        1,
        1,
        5,
        4,
        2,
        2,
        1,
        1,
        1,
        3,
        1,
        2,
        5,
        2,
        2,
        5,
        5,
        5,
        2,
        4,
        4,
        5,
        1,
        1,
        1,
    ]
)
S100B = np.array(
    [
        0.13,
        0.14,
        0.1,
        0.04,
        0.13,
        0.1,
        0.47,
        0.16,
        0.18,
        0.1,
        0.12,
        0.1,
        0.44,
        0.71,
        0.04,
        0.08,
        0.49,
        0.04,
        0.07,
        0.33,
        0.09,
        0.09,
        0.07,
        0.11,
        0.07,
        0.17,
        0.07,
        0.11,
        0.13,
        0.19,
        0.05,
        0.16,
        0.41,
        0.14,
        0.34,
        0.35,
        0.48,
        0.09,
        0.96,
        0.25,
        0.5,
        0.46,
        0.16,
        0.07,
        0.43,
        0.45,
        0.11,
        0.08,
        0.09,
        0.86,
        0.52,
        0.08,
        0.06,
        0.13,
        2.07,
        0.1,
        0.14,
        0.15,
        0.07,
        0.06,
        0.77,
        0.05,
        0.09,
        0.3,
        0.03,
        0.09,
        0.04,
        0.23,
        0.7,
        0.09,
        0.27,
        0.71,
        0.08,
        0.26,
        0.08,
        0.16,
        0.09,
        0.13,
        0.1,
        0.08,
        0.11,
        0.33,
        0.11,
        0.28,
        0.07,
        0.1,
        0.32,
        0.22,
        0.07,
        0.05,
        0.24,
        0.38,
        0.1,
        0.15,
        0.08,
        0.14,
        0.1,
        0.07,
        0.04,
        0.19,
        0.56,
        0.14,
        0.58,
        0.32,
        0.82,
        0.74,
        0.15,
        0.47,
        0.17,
        0.44,
        0.15,
        0.5,
        0.48,
    ]
)
NDKA = np.array(
    [
        3.01,
        8.54,
        8.09,
        10.42,
        17.4,
        12.75,
        6.0,
        13.2,
        15.54,
        6.01,
        15.96,
        17.86,
        5.18,
        8.9,
        13.41,
        20.75,
        11.6,
        16.11,
        32.37,
        54.82,
        32.41,
        49.94,
        40.34,
        9.47,
        6.29,
        12.53,
        6.54,
        6.3,
        80.3,
        12.8,
        9.8,
        9.81,
        9.85,
        18.21,
        5.03,
        14.04,
        21.93,
        8.02,
        7.42,
        8.38,
        6.59,
        9.63,
        13.12,
        7.96,
        14.34,
        41.43,
        7.63,
        7.06,
        12.59,
        13.56,
        3.87,
        9.44,
        7.66,
        12.98,
        419.19,
        27.19,
        22.27,
        9.95,
        21.22,
        11.73,
        10.4,
        58.83,
        6.39,
        11.09,
        12.22,
        13.67,
        17.21,
        22.63,
        12.9,
        9.7,
        21.57,
        8.23,
        72.57,
        15.54,
        10.51,
        10.6,
        14.57,
        5.19,
        9.63,
        4.61,
        21.48,
        17.3,
        12.71,
        9.44,
        11.07,
        19.46,
        10.83,
        5.37,
        11.97,
        7.75,
        9.83,
        10.55,
        28.49,
        8.53,
        12.57,
        12.9,
        46.83,
        11.68,
        12.67,
        9.01,
        9.57,
        34.06,
        11.72,
        14.26,
        47.61,
        11.67,
        24.58,
        10.33,
        13.87,
        15.89,
        22.43,
        6.79,
        13.45,
    ]
)

MARKERS = {"wfns": WFNS, "s100b": S100B, "ndka": NDKA}

# (first, second, Z, two-sided p) from pROC's test-roc.test.R
PROC_ROC_TEST = [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054),
]
PROC_AUC = {"wfns": 0.8237, "s100b": 0.7314, "ndka": 0.6120}


def test_asah_data_is_the_published_table():
    assert len(OUTCOME_POOR) == len(WFNS) == len(S100B) == len(NDKA) == 113
    assert OUTCOME_POOR.sum() == 41  # 72 good, 41 poor outcomes


@pytest.mark.parametrize(("first", "second", "z", "p_value"), PROC_ROC_TEST)
def test_matches_proc_roc_test_on_asah(first, second, z, p_value):
    result = delong_test(OUTCOME_POOR, MARKERS[first], MARKERS[second])
    assert result.auc_a == pytest.approx(PROC_AUC[first], abs=1e-4)
    assert result.auc_b == pytest.approx(PROC_AUC[second], abs=1e-4)
    assert result.difference == pytest.approx(result.auc_a - result.auc_b)
    assert result.z == pytest.approx(z, abs=1e-6)
    assert result.p_value == pytest.approx(p_value, abs=1e-3)
    assert result.p_value == pytest.approx(p_value, rel=1e-8)


@pytest.mark.parametrize(("first", "second", "z", "p_value"), PROC_ROC_TEST)
def test_swapping_the_models_flips_the_sign_and_keeps_p(first, second, z, p_value):
    forward = delong_test(OUTCOME_POOR, MARKERS[first], MARKERS[second])
    backward = delong_test(OUTCOME_POOR, MARKERS[second], MARKERS[first])
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.z == pytest.approx(-forward.z)
    assert backward.std_error == pytest.approx(forward.std_error)
    assert backward.p_value == pytest.approx(forward.p_value)


def slow_delong(y_true, scores_a, scores_b):
    """DeLong et al. (1988) by explicit pairwise comparison: structural components V10, V01 in O(m n)."""
    y_true = np.asarray(y_true, dtype=bool)

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    components = []
    for scores in (scores_a, scores_b):
        positives, negatives = scores[y_true], scores[~y_true]
        v10 = np.array([np.mean([psi(x, y) for y in negatives]) for x in positives])
        v01 = np.array([np.mean([psi(x, y) for x in positives]) for y in negatives])
        components.append((v10, v01))
    s10 = np.cov([components[0][0], components[1][0]])
    s01 = np.cov([components[0][1], components[1][1]])
    covariance = s10 / y_true.sum() + s01 / (~y_true).sum()
    aucs = [components[0][0].mean(), components[1][0].mean()]
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    return aucs, (aucs[0] - aucs[1]) / np.sqrt(variance)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_algorithm_equals_slow_reference_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=60)
    y_true[:2] = [0, 1]
    # rounding creates ties, which the midranks must handle exactly like psi = 1/2
    scores_a = np.round(y_true * 0.8 + rng.normal(size=60), 1)
    scores_b = np.round(0.5 * scores_a + y_true * 0.3 + rng.normal(size=60), 1)
    (auc_a, auc_b), z = slow_delong(y_true, scores_a, scores_b)
    result = delong_test(y_true, scores_a, scores_b)
    assert result.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert result.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert result.z == pytest.approx(z, rel=1e-9)


def test_identical_models_have_zero_variance_and_an_undefined_p():
    result = delong_test(OUTCOME_POOR, S100B, S100B)
    assert result.difference == 0
    assert result.p_value is None and result.z is None
    assert "zero variance" in result.undefined


def test_a_set_with_one_class_is_undefined_with_the_reason():
    result = delong_test(np.ones(10, dtype=int), np.arange(10.0), np.arange(10.0)[::-1])
    assert result.p_value is None and result.auc_a is None
    assert "10 positive and 0 negative" in result.undefined


def test_two_images_give_no_p_value_never_p_zero():
    # one positive, one negative, the models ranking them oppositely: the old code gave z = inf, p = 0
    result = delong_test([0, 1], [0.2, 0.8], [0.8, 0.2])
    assert (result.auc_a, result.auc_b) == (1.0, 0.0)
    assert result.p_value is None
    assert "at least 2 positive and 2 negative" in result.undefined


def test_fewer_than_two_negatives_is_undefined():
    y_true = np.array([1, 1, 1, 1, 1, 0])
    result = delong_test(y_true, np.linspace(0, 1, 6), np.linspace(0, 1, 6) ** 2)
    assert result.p_value is None and "5 positive and 1 negative" in result.undefined


def test_perfect_separation_is_undefined():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    imperfect = np.array([0.1, 0.6, 0.3, 0.4, 0.2, 0.7, 0.8, 0.9])
    result = delong_test(y_true, perfect, imperfect)
    assert result.auc_a == 1.0 and result.auc_b < 1.0
    assert result.p_value is None and "separates the classes perfectly" in result.undefined
    assert "model a" in result.undefined and "model b" not in result.undefined


def test_ovr_tests_each_class_against_the_rest():
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], 30)
    probs_a = rng.dirichlet([1, 1, 1], size=90) + np.eye(3)[y_true]
    probs_b = rng.dirichlet([1, 1, 1], size=90) + 0.3 * np.eye(3)[y_true]
    results = delong_test_ovr(y_true, probs_a, probs_b, ["normal", "utd", "mcdk"])
    assert list(results) == ["normal", "utd", "mcdk"]
    for k, name in enumerate(results):
        expected = delong_test((y_true == k).astype(int), probs_a[:, k], probs_b[:, k])
        assert results[name] == expected


def test_ovr_class_absent_from_the_set_is_undefined_not_an_error():
    y_true = np.array([0, 1, 0, 1, 0, 1])
    probs = np.tile([0.5, 0.3, 0.2], (6, 1))
    probs[y_true == 1] = [0.2, 0.6, 0.2]
    results = delong_test_ovr(y_true, probs, probs[::-1])
    assert results["2"].p_value is None and "0 positive" in results["2"].undefined
    assert results["0"].auc_a is not None
