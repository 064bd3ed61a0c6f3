import numpy as np
import pytest
from comparekit import FOLDS, rewrite_predictions

from renalmae.errors import DataError
from renalmae.evaluate import check_runs, choose_threshold, compare_task, load_run
from renalmae.params import EvaluateParams


def _validation_case(seed=0, n=200):
    rng = np.random.default_rng(seed)
    y_val = (rng.random(n) < 0.4).astype(int)
    return y_val, np.clip(0.35 * y_val + 0.65 * rng.random(n), 0, 1)


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    y_val, p_val = _validation_case()

    def youden(threshold):
        predicted = p_val >= threshold
        return predicted[y_val == 1].mean() + (~predicted)[y_val == 0].mean() - 1

    chosen = choose_threshold(y_val, p_val, "youden")
    assert youden(chosen) == pytest.approx(max(youden(t) for t in np.unique(p_val)))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_sensitivity_threshold_reaches_the_target_as_specifically_as_possible(target):
    y_val, p_val = _validation_case()
    chosen = choose_threshold(y_val, p_val, "sensitivity", target_sensitivity=target)
    assert (p_val[y_val == 1] >= chosen).mean() >= target
    higher = np.unique(p_val[p_val > chosen])
    assert all((p_val[y_val == 1] >= t).mean() < target for t in higher)


def test_validation_with_a_single_class_is_refused():
    with pytest.raises(DataError, match="single class"):
        choose_threshold(np.zeros(10, dtype=int), np.linspace(0, 1, 10))


def _scramble_test_probabilities(frame):
    test = frame["split"] == "test"
    frame.loc[test, "prob_anomaly"] = 1.0 - frame.loc[test, "prob_anomaly"]
    frame.loc[test, "prob_normal"] = 1.0 - frame.loc[test, "prob_anomaly"]
    return frame


def _thresholds(comparison) -> dict:
    return {model: rule.threshold for model, rule in comparison.decisions.items()}


def test_changing_test_probabilities_does_not_move_any_threshold(prediction_runs):
    settings = EvaluateParams(bootstrap_resamples=100)
    before = check_runs([load_run(d) for d in prediction_runs], ["binary"], FOLDS)["binary"]
    for run_dir in prediction_runs:
        if run_dir.parts[-2] == "binary":
            rewrite_predictions(run_dir, _scramble_test_probabilities)
    after = check_runs([load_run(d) for d in prediction_runs], ["binary"], FOLDS)["binary"]
    compared_before, compared_after = (compare_task("binary", runs, settings) for runs in (before, after))
    assert _thresholds(compared_after) == _thresholds(compared_before)
    for model in before:
        old_folds, new_folds = compared_before.summary["folds"][model], compared_after.summary["folds"][model]
        for old, new in zip(old_folds, new_folds, strict=True):
            assert new["threshold"] == old["threshold"]
            assert new["test"]["auc"] != old["test"]["auc"]


def test_each_fold_model_uses_its_own_validation_threshold(prediction_runs):
    runs = check_runs([load_run(d) for d in prediction_runs], ["binary"], FOLDS)["binary"]
    comparison = compare_task("binary", runs, EvaluateParams(bootstrap_resamples=100))
    for model, by_fold in runs.items():
        for run, fold in zip(by_fold.values(), comparison.summary["folds"][model], strict=True):
            validation = run.split("val")
            expected = choose_threshold(validation["y_true"], validation["prob_anomaly"], "youden")
            assert fold["threshold"] == expected


def test_the_ensemble_threshold_is_the_mean_of_its_fold_models_thresholds(prediction_runs):
    runs = check_runs([load_run(d) for d in prediction_runs], ["binary"], FOLDS)["binary"]
    comparison = compare_task("binary", runs, EvaluateParams(bootstrap_resamples=100))
    for model, rule in comparison.decisions.items():
        fold_thresholds = [fold["threshold"] for fold in comparison.summary["folds"][model]]
        assert rule.threshold == pytest.approx(np.mean(fold_thresholds))
        assert comparison.summary["decision_rules"][model]["threshold"] == rule.threshold
