"""The explain component, called as a plain function: Score-CAM outputs land in its dataset."""

from kfp.dsl import HTML, Dataset, Metrics, Model

from components.explain.component import explain
from components.testkit import artifact, step_or_skip


def test_explain_writes_explanations_for_the_collected_models(
    params_yaml, ingested, splits, trained_runs, tmp_path
):
    step_or_skip("explain")

    explain.python_func(
        params_yaml=params_yaml,
        ingested=artifact(Dataset, ingested),
        splits=artifact(Dataset, splits),
        finetune_runs=[artifact(Model, trained_runs["finetune_runs"][0])],
        baseline_runs=[artifact(Model, trained_runs["baseline_runs"][0])],
        explanations=artifact(Dataset, tmp_path / "explanations"),
        report=artifact(HTML, tmp_path / "report.html"),
        metrics=artifact(Metrics, tmp_path / "metrics"),
    )

    assert (tmp_path / "explanations").is_dir() and any((tmp_path / "explanations").iterdir())
