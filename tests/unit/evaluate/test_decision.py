"""Decision rules: the fold ensemble's operating point and the multiclass prior-corrected argmax, on
seeded simulations whose right answer is known."""

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from renalmae.evaluate.decision import ensemble_rule, fold_threshold, multiclass_rule
from renalmae.evaluate.thresholds import choose_threshold

FOLDS = 5
TARGET = 0.90


def _fold_models(rng):
    """Five fold models of one task: the same latent score, each with its own calibration (logit scale and
    shift) and a little noise of its own."""
    return rng.uniform(0.5, 2.0, FOLDS), rng.uniform(-1.5, 1.5, FOLDS)


def _images(rng, n, prevalence):
    labels = (rng.uniform(size=n) < prevalence).astype(int)
    return labels, rng.normal(1.5 * labels, 1.0)


def _p_anomaly(rng, latent, scale, shift):
    return expit(shift + scale * latent + rng.normal(0.0, 0.3, len(latent)))


def _simulate(seed=0):
    rng = np.random.default_rng(seed)
    scales, shifts = _fold_models(rng)
    thresholds, pooled_labels, pooled_scores = [], [], []
    for fold in range(FOLDS):
        labels, latent = _images(rng, 400, prevalence=0.5)
        p = _p_anomaly(rng, latent, scales[fold], shifts[fold])
        thresholds.append(fold_threshold(labels, np.c_[1 - p, p], "sensitivity", TARGET, f"fold {fold}"))
        pooled_labels.append(labels)
        pooled_scores.append(p)
    # fresh test data with another class mix
    labels, latent = _images(rng, 20_000, prevalence=0.3)
    ensemble = np.mean([_p_anomaly(rng, latent, scales[k], shifts[k]) for k in range(FOLDS)], axis=0)
    pooled = choose_threshold(
        np.concatenate(pooled_labels), np.concatenate(pooled_scores), "sensitivity", TARGET
    )
    return labels, ensemble, thresholds, pooled


def _sensitivity(labels, scores, threshold):
    return float((scores[labels == 1] >= threshold).mean())


def test_a_sensitivity_target_of_0_90_holds_for_the_fold_ensemble_on_new_data():
    labels, ensemble, thresholds, _ = _simulate()
    rule = ensemble_rule(thresholds, "sensitivity")
    assert abs(_sensitivity(labels, ensemble, rule.threshold) - TARGET) <= 0.03
    assert "each chosen (sensitivity) on its own validation fold" in rule.chosen_on


def test_a_threshold_re_chosen_on_pooled_validation_misses_the_target():
    # why the ensemble does not re-choose on the pooled out-of-fold predictions (the former rule)
    labels, ensemble, _, pooled = _simulate()
    assert _sensitivity(labels, ensemble, pooled) - TARGET > 0.03


def test_the_ensemble_threshold_is_the_mean_of_the_fold_thresholds():
    assert ensemble_rule([0.2, 0.4, 0.6], "youden").threshold == pytest.approx(0.4)


PRIORS = np.array([0.67, 0.27, 0.06])  # normal, utd, mcdk as in the study
MEANS = np.array([[0.0, 0.0], [1.2, 0.0], [0.0, 1.2]])


def _three_class_images(rng, n):
    labels = rng.choice(3, size=n, p=PRIORS)
    features = rng.normal(MEANS[labels], 1.0)
    likelihood = np.prod(norm.pdf(features[:, None, :], MEANS[None], 1.0), axis=2)  # (n, 3)
    balanced = likelihood / likelihood.sum(axis=1, keepdims=True)  # what class-balanced training estimates
    return labels, balanced, likelihood * PRIORS


def test_prior_corrected_argmax_undoes_class_balanced_training():
    rng = np.random.default_rng(0)
    development_labels, _, _ = _three_class_images(rng, 2000)
    labels, balanced, joint = _three_class_images(rng, 20_000)
    rule = multiclass_rule("loss", development_labels, 3)
    corrected, plain = rule.predict(balanced), balanced.argmax(axis=1)
    bayes = joint.argmax(axis=1)
    assert (corrected == bayes).mean() > 0.97  # the decision with the fewest errors, up to prior noise
    assert (corrected == labels).mean() > (plain == labels).mean() + 0.15
    normal = labels == 0
    assert (plain[normal] != 0).mean() > 0.4  # balanced posteriors hand normal images to rare classes
    assert (corrected[normal] == 0).mean() > 0.9
    assert rule.name == "prior-corrected argmax" and "2000 development images" in rule.chosen_on


def test_models_trained_without_balancing_keep_the_plain_argmax():
    rule = multiclass_rule("none", [0, 0, 1, 2], 3)
    assert rule.class_weights is None and rule.name == "argmax"
    probabilities = np.array([[0.2, 0.5, 0.3]])
    assert rule.predict(probabilities).tolist() == [1]


def test_unknown_class_balancing_falls_back_to_argmax_and_says_so():
    assert "class balancing unknown" in multiclass_rule(None, [0, 1, 2], 3).chosen_on
