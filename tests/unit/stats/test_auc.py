"""The one AUC helper: published reference value, scikit-learn agreement, and each undefined case."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from renalmae.stats.auc import inference_undefined, roc_auc

# Hanley & McNeil (1982), Radiology 143:29-36, Table 1: 109 CT images rated 1 (definitely normal) to
# 5 (definitely abnormal); 58 normal, 51 abnormal. The paper's area under the rating ROC curve
# (Wilcoxon statistic, ties counted one half) is 0.893.
HANLEY_NORMAL = {1: 33, 2: 6, 3: 6, 4: 11, 5: 2}
HANLEY_ABNORMAL = {1: 3, 2: 2, 3: 2, 4: 11, 5: 33}


def _hanley_mcneil():
    ratings, labels = [], []
    for label, counts in ((0, HANLEY_NORMAL), (1, HANLEY_ABNORMAL)):
        for rating, count in counts.items():
            ratings += [rating] * count
            labels += [label] * count
    return np.array(labels), np.array(ratings, dtype=float)


def test_hanley_mcneil_rating_data_gives_the_published_area():
    labels, ratings = _hanley_mcneil()
    assert (len(labels), labels.sum()) == (109, 51)
    result = roc_auc(labels, ratings)
    assert result.value == pytest.approx(0.893, abs=5e-4)
    assert result.undefined is None


def test_two_column_probabilities_are_scored_on_the_positive_column():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    p_positive = np.clip(0.3 * labels + rng.uniform(size=50) * 0.7, 0, 1)
    probabilities = np.column_stack([1 - p_positive, p_positive])
    assert roc_auc(labels, probabilities).value == pytest.approx(roc_auc_score(labels, p_positive))
    assert roc_auc(labels, p_positive).value == roc_auc(labels, probabilities).value


def test_multiclass_is_the_macro_one_vs_rest_mean_matching_sklearn():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 20)
    probabilities = rng.dirichlet([1, 1, 1], size=60) + np.eye(3)[labels]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    result = roc_auc(labels, probabilities, ["normal", "utd", "mcdk"])
    assert result.value == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr"))
    assert result.per_class["utd"] == pytest.approx(roc_auc_score(labels == 1, probabilities[:, 1]))
    assert result.left_out == ()


def test_multiclass_leaves_out_and_names_a_class_absent_from_the_set():
    labels = np.array([0, 1, 0, 1, 0, 1])
    probabilities = np.tile([0.5, 0.3, 0.2], (6, 1))
    probabilities[labels == 1] = [0.2, 0.6, 0.2]
    result = roc_auc(labels, probabilities, ["normal", "utd", "mcdk"])
    assert result.left_out == ("mcdk",) and result.per_class["mcdk"] is None
    assert result.value == pytest.approx(1.0)


def test_a_set_without_positives_is_undefined_with_the_reason():
    result = roc_auc(np.zeros(8, dtype=int), np.linspace(0, 1, 8))
    assert result.value is None and result.undefined == "the set holds no positive image (8 images)"


def test_a_set_without_negatives_is_undefined_with_the_reason():
    result = roc_auc(np.ones(3, dtype=int), np.linspace(0, 1, 3))
    assert result.value is None and "no negative image" in result.undefined


def test_a_multiclass_set_of_one_class_is_undefined():
    result = roc_auc(np.full(5, 2), np.tile([0.2, 0.3, 0.5], (5, 1)))
    assert result.value is None and result.undefined == "the set holds a single class"


def test_an_empty_set_is_undefined_not_an_error():
    assert roc_auc(np.array([], dtype=int), np.empty((0, 2))).value is None


def test_inference_needs_two_images_of_each_class():
    assert inference_undefined([0, 0, 1, 1]) is None
    assert "1 positive and 3 negative" in inference_undefined([0, 0, 0, 1])
    assert "2 positive and 1 negative" in inference_undefined([0, 1, 1], "the interval")


def test_mismatched_shapes_are_a_bug_not_a_data_error():
    with pytest.raises(ValueError, match="must match"):
        roc_auc([0, 1, 1], [0.1, 0.2])
