"""The compare component, called as a plain function on the collected fold models of both kinds."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model

from components.compare.component import compare
from components.testkit import artifact, step_or_skip


def test_compare_reports_on_every_collected_model(params_yaml, predicted_runs, tmp_path):
    step_or_skip("compare")
    report, metrics = artifact(HTML, tmp_path / "report.html"), artifact(Metrics, tmp_path / "metrics")
    rocs = {
        f"{role}_roc": artifact(ClassificationMetrics, tmp_path / role) for role in ("candidate", "baseline")
    }

    compare.python_func(
        params_yaml=params_yaml,
        finetune_runs=[artifact(Model, path) for path in predicted_runs["finetune_runs"]],
        baseline_runs=[artifact(Model, path) for path in predicted_runs["baseline_runs"]],
        splits=artifact(Dataset, predicted_runs["splits"]),
        comparison=artifact(Dataset, tmp_path / "comparison"),
        report=report,
        metrics=metrics,
        **rocs,
    )

    assert (tmp_path / "comparison").is_dir() and any((tmp_path / "comparison").iterdir())
    assert (tmp_path / "report.html").is_file()
    assert metrics.metadata
    for roc in rocs.values():  # the KFP UI draws these: fpr 0 → 1 with the thresholds
        points = roc.metadata["confidenceMetrics"]
        assert points[0]["falsePositiveRate"] == 0.0 and points[-1]["falsePositiveRate"] == 1.0
