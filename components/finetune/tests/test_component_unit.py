"""The finetune component, called as a plain function: a fold model, its metrics, a confusion matrix."""

import pytest
from kfp.dsl import ClassificationMetrics, Dataset, Metrics, Model

from components.finetune.component import finetune
from components.testkit import artifact, step_or_skip


def _call(params_yaml, ingested, splits, encoder, tmp_path, fold):
    outputs = {
        "model": artifact(Model, tmp_path / "model"),
        "metrics": artifact(Metrics, tmp_path / "metrics"),
        "holdout_confusion": artifact(ClassificationMetrics, tmp_path / "confusion"),
    }
    finetune.python_func(
        params_yaml=params_yaml,
        ingested=artifact(Dataset, ingested),
        splits=artifact(Dataset, splits),
        encoder=artifact(Model, encoder),
        task="binary",
        fold=fold,
        repeat=0,
        **outputs,
    )
    return outputs


def test_finetune_writes_predictions_and_a_confusion_matrix(params_yaml, ingested, splits, encoder, tmp_path):
    step_or_skip("finetune")
    from renalmae.data.predictions import PREDICTIONS_FILE, RUN_FILE

    outputs = _call(params_yaml, ingested, splits, encoder, tmp_path, fold=0)

    run_dir = tmp_path / "model" / "binary" / "fold0"
    assert (run_dir / PREDICTIONS_FILE).is_file() and (run_dir / RUN_FILE).is_file()
    matrix = outputs["holdout_confusion"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == ["normal", "anomaly"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) > 0


def test_finetune_refuses_a_fold_outside_the_splits(params_yaml, ingested, splits, encoder, tmp_path):
    step_or_skip("finetune")
    from renalmae.errors import RenalMAEError

    with pytest.raises(RenalMAEError, match="fold"):
        _call(params_yaml, ingested, splits, encoder, tmp_path, fold=7)
