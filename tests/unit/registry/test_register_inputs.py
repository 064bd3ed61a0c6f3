"""What `register` reads besides the models: validation status, and compare's operating point and p-values."""

from __future__ import annotations

import pytest
from registrykit import compared_runs

from renalmae.errors import DataError
from renalmae.evaluate import classification_metrics, load_run
from renalmae.registry.versions import p_values, version_tags
from renalmae.steps.register import comparison_report, holdout_metrics, validation_status


def test_validation_status_passed(tmp_path):
    (tmp_path / "summary.json").write_text('{"success": true}')
    assert validation_status(tmp_path) == "passed"


def test_validation_status_failed(tmp_path):
    (tmp_path / "summary.json").write_text('{"success": false}')
    assert validation_status(tmp_path) == "failed"


def test_validation_status_unknown_without_a_summary(tmp_path):
    assert validation_status(tmp_path) == "unknown"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """USF-MAE runs and compare's report on them (comparison.json)."""
    root = tmp_path_factory.mktemp("register-inputs")
    run_dirs, comparison_dir = compared_runs(root, "binary", folds=2, quality=1.0, seed=1)
    return [load_run(path) for path in run_dirs], comparison_report(comparison_dir)


def test_the_version_is_tagged_at_compares_threshold_never_at_0_5(compared):
    runs, report = compared
    point, evaluation = holdout_metrics(runs, report)
    rule = point["rule"]
    assert rule.threshold == report["binary"]["decision_rules"]["usfmae"]["threshold"] != 0.5
    assert point["sets"]["test"] == report["binary"]["sets"]["test"]["ensemble"]["usfmae"]
    at_rule = classification_metrics(
        evaluation["y_true"],
        evaluation[["prob_normal", "prob_anomaly"]],
        ["normal", "anomaly"],
        rule.threshold,
    )
    at_half = classification_metrics(
        evaluation["y_true"], evaluation[["prob_normal", "prob_anomaly"]], ["normal", "anomaly"], 0.5
    )
    assert point["sets"]["test"]["sensitivity"] == at_rule["sensitivity"] != at_half["sensitivity"]
    assert (evaluation["y_pred"] == (evaluation["prob_anomaly"] >= rule.threshold)).all()


def test_version_tags_carry_the_decision_rule_the_metrics_at_it_and_the_p_values(compared):
    runs, report = compared
    point, _ = holdout_metrics(runs, report)
    lineage = {"renalmae.git_commit": "abc", "renalmae.params_hash": "f00"}
    tags = version_tags(lineage, "passed", point, p_values(report, "binary"), "normal")
    assert tags["renalmae.git_commit"] == "abc" and tags["renalmae.validation_status"] == "passed"
    assert float(tags["decision.threshold"]) == point["rule"].threshold
    assert "validation fold" in tags["decision.chosen_on"]
    for key in ("auc", "f1", "sensitivity", "specificity", "n"):
        assert tags[f"holdout.{key}"] == str(point["sets"]["test"][key])
    assert "comparison.delong.test.p" in tags or "undefined" in str(
        report["binary"]["sets"]["test"]["delong"]
    )
    assert all(":" not in key for key in tags)  # MLflow tag keys allow no colon


def test_register_without_compares_operating_point_is_refused(compared):
    runs, _ = compared
    with pytest.raises(
        DataError, match="no operating point for usfmae on task binary.*run `renalmae compare`"
    ):
        holdout_metrics(runs, {})


def test_fold_models_trained_on_different_data_are_not_registered_as_one_ensemble():
    from pathlib import Path

    import pandas as pd

    from renalmae.evaluate.runs import ModelRun
    from renalmae.steps.register import trained_data_version

    def fold_run(fold, version):
        return ModelRun(Path(f"fold{fold}"), "usfmae", "candidate", "binary", fold, ["normal", "anomaly"],
                        pd.DataFrame(), version)  # fmt: skip

    assert trained_data_version([fold_run(0, "a" * 64), fold_run(1, "a" * 64)]) == "a" * 64
    with pytest.raises(DataError, match=r"trained on different ingested data \(fold 0: aaaaaaaaaaaa"):
        trained_data_version([fold_run(0, "a" * 64), fold_run(1, "b" * 64)])
