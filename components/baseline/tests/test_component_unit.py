"""The baseline component, called as a plain function: one fold's CNN model and holdout confusion matrix."""

from kfp.dsl import ClassificationMetrics, Dataset, Metrics, Model

from components.baseline.component import baseline
from components.testkit import artifact, step_or_skip


def test_baseline_writes_predictions_and_a_confusion_matrix(params_yaml, ingested, splits, tmp_path):
    step_or_skip("baseline")
    from renalmae.data.predictions import PREDICTIONS_FILE

    confusion = artifact(ClassificationMetrics, tmp_path / "confusion")
    baseline.python_func(
        params_yaml=params_yaml,
        ingested=artifact(Dataset, ingested),
        splits=artifact(Dataset, splits),
        task="binary",
        fold=0,
        repeat=1,
        model=artifact(Model, tmp_path / "model"),
        metrics=artifact(Metrics, tmp_path / "metrics"),
        holdout_confusion=confusion,
    )

    assert (
        tmp_path / "model" / "binary" / "fold0-repeat1" / PREDICTIONS_FILE
    ).is_file()  # repeat 1: seed + 1
    assert len(confusion.metadata["confusionMatrix"]["rows"]) == 2
