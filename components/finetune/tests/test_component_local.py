"""The finetune component run by kfp.local (CPU, one tiny epoch)."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.finetune.component import finetune
from components.testkit import imported, step_or_skip


def test_finetune_runs_under_kfp_local(kfp_local, params_yaml, ingested, splits, encoder):
    step_or_skip("finetune")

    @dsl.pipeline
    def finetune_only(params_yaml: str) -> Model:
        task = finetune(
            params_yaml=params_yaml,
            ingested=imported(Dataset, ingested),
            splits=imported(Dataset, splits),
            encoder=imported(Model, encoder),
            task="binary",
            fold=1,
            repeat=0,
        )
        return task.outputs["model"]

    run = finetune_only(params_yaml=params_yaml)

    assert (Path(run.output.path) / "binary" / "fold1" / "predictions.parquet").is_file()
