"""The baseline component run by kfp.local (CPU, one tiny epoch)."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.baseline.component import baseline
from components.testkit import imported, step_or_skip


def test_baseline_runs_under_kfp_local(kfp_local, params_yaml, ingested, splits):
    step_or_skip("baseline")

    @dsl.pipeline
    def baseline_only(params_yaml: str) -> Model:
        task = baseline(
            params_yaml=params_yaml,
            ingested=imported(Dataset, ingested),
            splits=imported(Dataset, splits),
            task="binary",
            fold=1,
            repeat=0,
        )
        return task.outputs["model"]

    run = baseline_only(params_yaml=params_yaml)

    assert (Path(run.output.path) / "binary" / "fold1" / "predictions.parquet").is_file()
