import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from renalmae.stats.bootstrap import cluster_weights, paired_bootstrap
from renalmae.stats.delong import delong_test


def _binary_case(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.3).astype(int)
    score_a = 1 / (1 + np.exp(-(2.0 * y_true - 1 + rng.normal(size=n))))
    score_b = 1 / (1 + np.exp(-(1.0 * y_true - 0.5 + rng.normal(size=n))))
    return y_true, np.c_[1 - score_a, score_a], np.c_[1 - score_b, score_b]


def test_resamples_of_independent_images_keep_the_class_counts():
    y_true = np.array([0] * 7 + [1] * 3 + [2] * 2)
    weights = cluster_weights(y_true, None, 50, np.random.default_rng(0))
    assert weights.shape == (50, 12)
    for row in weights:
        assert np.bincount(y_true, weights=row, minlength=3).tolist() == [7, 3, 2]


def test_point_estimates_match_sklearn_and_lie_inside_their_intervals():
    y_true, probs_a, probs_b = _binary_case()
    result = paired_bootstrap(y_true, probs_a, probs_b, threshold_a=0.4, resamples=300, seed=1)
    assert result.auc_a.estimate == pytest.approx(roc_auc_score(y_true, probs_a[:, 1]))
    assert result.f1_a.estimate == pytest.approx(f1_score(y_true, probs_a[:, 1] >= 0.4))
    assert result.f1_b.estimate == pytest.approx(f1_score(y_true, probs_b[:, 1] >= 0.5))
    assert result.auc_difference.estimate == pytest.approx(result.auc_a.estimate - result.auc_b.estimate)
    for interval in (result.auc_a, result.auc_b, result.auc_difference, result.f1_a, result.f1_difference):
        assert interval.low <= interval.estimate <= interval.high


def test_same_seed_same_intervals_other_seed_other_intervals():
    y_true, probs_a, probs_b = _binary_case()
    first = paired_bootstrap(y_true, probs_a, probs_b, resamples=200, seed=3)
    assert paired_bootstrap(y_true, probs_a, probs_b, resamples=200, seed=3) == first
    assert paired_bootstrap(y_true, probs_a, probs_b, resamples=200, seed=4) != first


def test_difference_interval_agrees_with_delong_standard_error():
    y_true, probs_a, probs_b = _binary_case(n=600)
    boot = paired_bootstrap(y_true, probs_a, probs_b, resamples=1000, seed=0)
    delong = delong_test(y_true, probs_a[:, 1], probs_b[:, 1])
    width = boot.auc_difference.high - boot.auc_difference.low
    assert width == pytest.approx(2 * 1.96 * delong.std_error, rel=0.2)


def test_multiclass_uses_macro_one_vs_rest_auc_and_macro_f1():
    rng = np.random.default_rng(0)
    y_true = rng.choice(3, size=200, p=[0.6, 0.3, 0.1])
    logits = 1.5 * np.eye(3)[y_true] + rng.normal(size=(200, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = paired_bootstrap(y_true, probs, probs[:, [0, 2, 1]], resamples=200)
    assert result.auc_a.estimate == pytest.approx(
        roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    )
    assert result.f1_a.estimate == pytest.approx(f1_score(y_true, probs.argmax(axis=1), average="macro"))


def test_a_set_with_one_class_gives_undefined_auc_but_an_f1_interval():
    y_true = np.ones(20, dtype=int)
    probs = np.c_[np.linspace(0.9, 0.1, 20), np.linspace(0.1, 0.9, 20)]
    result = paired_bootstrap(y_true, probs, probs, resamples=100)
    assert result.auc_a.estimate is None and result.auc_difference.low is None
    assert result.f1_a.estimate is not None


def test_a_binary_set_with_one_positive_gives_no_auc_interval():
    y_true = np.array([0] * 19 + [1])
    probs = np.c_[np.linspace(0.9, 0.1, 20), np.linspace(0.1, 0.9, 20)]
    result = paired_bootstrap(y_true, probs, probs[::-1], resamples=100)
    assert result.auc_a.low is None and result.auc_difference.low is None
    assert result.f1_a.low is not None


def test_sensitivity_and_specificity_intervals_match_the_metrics_at_the_given_decisions():
    from renalmae.evaluate.metrics import classification_metrics

    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 150)
    probs_a = rng.dirichlet([1, 1, 1], 150) + np.eye(3)[y_true]
    probs_a /= probs_a.sum(axis=1, keepdims=True)
    probs_b = rng.dirichlet([1, 1, 1], 150)
    predicted_a = probs_a.argmax(axis=1)
    predicted_b = np.roll(predicted_a, 7)
    result = paired_bootstrap(
        y_true, probs_a, probs_b, predicted_a=predicted_a, predicted_b=predicted_b, resamples=300
    )
    classes = ["normal", "utd", "mcdk"]
    metrics_a = classification_metrics(y_true, np.eye(3)[predicted_a], classes)
    assert result.sensitivity_a.estimate == pytest.approx(metrics_a["sensitivity"])
    assert result.specificity_a.estimate == pytest.approx(metrics_a["specificity"])
    assert result.f1_a.estimate == pytest.approx(metrics_a["f1"])
    for name in ("sensitivity", "specificity"):
        interval = getattr(result, f"{name}_difference")
        assert interval.low <= interval.estimate <= interval.high
