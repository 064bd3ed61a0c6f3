"""What `register` reads besides the models: validation status and the compare report's p-values."""

from __future__ import annotations

import json

import pytest

from renalmae.registry.versions import p_values, version_tags
from renalmae.steps.register import comparison_report, validation_status


def test_validation_status_passed(tmp_path):
    (tmp_path / "summary.json").write_text('{"success": true}')
    assert validation_status(tmp_path) == "passed"


def test_validation_status_failed(tmp_path):
    (tmp_path / "summary.json").write_text('{"success": false}')
    assert validation_status(tmp_path) == "failed"


def test_validation_status_unknown_without_a_summary(tmp_path):
    assert validation_status(tmp_path) == "unknown"


def test_p_values_of_a_task_come_from_both_compare_files(tmp_path):
    (tmp_path / "comparison.json").write_text(
        json.dumps(
            {
                "binary": {
                    "p_values": {"delong": 0.03, "mcnemar": 0.2},
                    "differences": {"auc": {"absolute": 0.1}},
                }
            }
        )
    )
    (tmp_path / "metrics.json").write_text(
        json.dumps({"binary": {"usfmae": {"test_auc": 0.9}, "delong_p": 0.03, "delong_p_holm": 0.06}})
    )
    found = p_values(comparison_report(tmp_path), "binary")
    assert found == {
        "p_values.delong": 0.03,
        "p_values.mcnemar": 0.2,
        "delong_p": 0.03,
        "delong_p_holm": 0.06,
    }
    assert p_values(comparison_report(tmp_path), "multiclass") == {}


def test_version_tags_carry_lineage_validation_metrics_and_p_values():
    lineage = {"renalmae.git_commit": "abc", "renalmae.params_hash": "f00"}
    tags = version_tags(lineage, "passed", {"auc": 0.91, "f1": 0.8, "n": 40}, {"delong_p": 0.03}, "normal")
    assert tags["renalmae.git_commit"] == "abc"
    assert tags["renalmae.validation_status"] == "passed"
    assert tags["holdout.auc"] == "0.91" and tags["holdout.n"] == "40"
    assert tags["comparison.delong_p"] == "0.03"


def test_fold_models_trained_on_different_data_are_not_registered_as_one_ensemble():
    from pathlib import Path

    import pandas as pd

    from renalmae.errors import DataError
    from renalmae.evaluate.runs import ModelRun
    from renalmae.steps.register import trained_data_version

    def fold_run(fold, version):
        return ModelRun(Path(f"fold{fold}"), "usfmae", "candidate", "binary", fold, ["normal", "anomaly"],
                        pd.DataFrame(), version)  # fmt: skip

    assert trained_data_version([fold_run(0, "a" * 64), fold_run(1, "a" * 64)]) == "a" * 64
    with pytest.raises(DataError, match=r"trained on different ingested data \(fold 0: aaaaaaaaaaaa"):
        trained_data_version([fold_run(0, "a" * 64), fold_run(1, "b" * 64)])
