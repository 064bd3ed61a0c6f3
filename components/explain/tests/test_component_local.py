"""The explain component run by kfp.local."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.explain.component import explain
from components.testkit import imported, imported_list, step_or_skip


def test_explain_runs_under_kfp_local(kfp_local, params_yaml, ingested, splits, trained_runs):
    step_or_skip("explain")

    @dsl.pipeline
    def explain_only(params_yaml: str) -> Dataset:
        task = explain(
            params_yaml=params_yaml,
            ingested=imported(Dataset, ingested),
            splits=imported(Dataset, splits),
            finetune_runs=imported_list(Model, trained_runs["finetune_runs"][:1]),
            baseline_runs=imported_list(Model, trained_runs["baseline_runs"][:1]),
        )
        return task.outputs["explanations"]

    run = explain_only(params_yaml=params_yaml)

    assert any(Path(run.output.path).iterdir())
