import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from renalmae.evaluate import classification_metrics, expected_calibration_error

BINARY = ["normal", "anomaly"]
MULTICLASS = ["normal", "utd", "mcdk"]


def _multiclass_case(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    logits = 1.2 * np.eye(3)[y_true] + rng.normal(size=(n, 3))
    return y_true, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_binary_metrics_match_sklearn_at_the_given_threshold():
    rng = np.random.default_rng(0)
    y_true = (rng.random(150) < 0.35).astype(int)
    p_anomaly = np.clip(0.3 * y_true + rng.random(150) * 0.7, 0, 1)
    predicted = (p_anomaly >= 0.42).astype(int)
    metrics = classification_metrics(y_true, np.c_[1 - p_anomaly, p_anomaly], BINARY, threshold=0.42)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted).ravel()
    assert metrics["auc"] == pytest.approx(roc_auc_score(y_true, p_anomaly))
    assert metrics["f1"] == pytest.approx(f1_score(y_true, predicted))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, predicted))
    assert metrics["sensitivity"] == pytest.approx(recall_score(y_true, predicted))
    assert metrics["precision"] == pytest.approx(precision_score(y_true, predicted))
    assert metrics["specificity"] == pytest.approx(tn / (tn + fp))
    assert metrics["npv"] == pytest.approx(tn / (tn + fn))
    assert metrics["brier"] == pytest.approx(brier_score_loss(y_true, p_anomaly))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, predicted).tolist()
    assert metrics["threshold"] == 0.42


def test_multiclass_metrics_are_argmax_and_macro_averages_matching_sklearn():
    y_true, probs = _multiclass_case()
    predicted = probs.argmax(axis=1)
    metrics = classification_metrics(y_true, probs, MULTICLASS)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
    for k, name in enumerate(MULTICLASS):
        assert metrics["auc_per_class"][name] == pytest.approx(roc_auc_score(y_true == k, probs[:, k]))
    assert metrics["f1"] == pytest.approx(f1_score(y_true, predicted, average="macro"))
    assert metrics["sensitivity"] == pytest.approx(recall_score(y_true, predicted, average="macro"))
    assert metrics["precision"] == pytest.approx(precision_score(y_true, predicted, average="macro"))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, predicted))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, predicted).tolist()
    assert metrics["brier"] == pytest.approx(np.mean(((probs - np.eye(3)[y_true]) ** 2).sum(axis=1)))
    assert metrics["threshold"] is None


def test_ece_known_value_binary():
    # bin (0.0, 0.1]: P = 0.1, observed anomaly rate 0.5 -> |0.1 - 0.5| x 2/4; bin (0.8, 0.9]: |0.9 - 1| x 2/4
    y_true = np.array([0, 1, 1, 1])
    p_anomaly = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(y_true, np.c_[1 - p_anomaly, p_anomaly], bins=10) == pytest.approx(0.25)


def test_ece_known_value_multiclass_top_label():
    # confidences 0.7 (right) and 0.7 (wrong) share a bin: |0.7 - 0.5| x 2/3; 0.4 (right): |0.4 - 1| x 1/3
    y_true = np.array([0, 1, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    assert expected_calibration_error(y_true, probs, bins=10) == pytest.approx(0.2 * 2 / 3 + 0.6 / 3)


def test_perfectly_calibrated_bins_have_zero_ece():
    y_true = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)
    p_anomaly = np.array([0.2] * 10 + [0.8] * 10)
    assert expected_calibration_error(y_true, np.c_[1 - p_anomaly, p_anomaly]) == pytest.approx(0.0)


def test_a_set_with_one_class_reports_auc_undefined_instead_of_failing():
    p_anomaly = np.linspace(0.1, 0.9, 8)
    metrics = classification_metrics(np.zeros(8, dtype=int), np.c_[1 - p_anomaly, p_anomaly], BINARY, 0.5)
    assert metrics["auc"] is None
    assert metrics["sensitivity"] is None  # no anomalies to find
    assert metrics["specificity"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.5)


def test_multiclass_set_missing_a_class_averages_auc_over_the_classes_present():
    y_true, probs = _multiclass_case()
    keep = y_true != 2
    metrics = classification_metrics(y_true[keep], probs[keep], MULTICLASS)
    assert metrics["auc_per_class"]["mcdk"] is None
    defined = [metrics["auc_per_class"][name] for name in ("normal", "utd")]
    assert metrics["auc"] == pytest.approx(np.mean(defined))
