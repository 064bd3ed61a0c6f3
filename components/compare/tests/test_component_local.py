"""The compare component run by kfp.local with lists of model artifacts (what dsl.Collected hands it)."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.compare.component import compare
from components.testkit import imported, imported_list, step_or_skip


def test_compare_runs_under_kfp_local(kfp_local, params_yaml, predicted_runs):
    step_or_skip("compare")

    @dsl.pipeline
    def compare_only(params_yaml: str) -> Dataset:
        task = compare(
            params_yaml=params_yaml,
            finetune_runs=imported_list(Model, predicted_runs["finetune_runs"]),
            baseline_runs=imported_list(Model, predicted_runs["baseline_runs"]),
            splits=imported(Dataset, predicted_runs["splits"]),
        )
        return task.outputs["comparison"]

    run = compare_only(params_yaml=params_yaml)

    assert any(Path(run.output.path).iterdir())
