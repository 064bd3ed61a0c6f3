"""The pretrain component run by kfp.local (CPU, one tiny epoch)."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.pretrain.component import pretrain
from components.testkit import imported, step_or_skip


def test_pretrain_runs_under_kfp_local(kfp_local, params_yaml, ingested, splits):
    step_or_skip("pretrain")

    @dsl.pipeline
    def pretrain_only(params_yaml: str) -> Model:
        task = pretrain(
            params_yaml=params_yaml, ingested=imported(Dataset, ingested), splits=imported(Dataset, splits)
        )
        return task.outputs["encoder"]

    run = pretrain_only(params_yaml=params_yaml)

    assert any(Path(run.output.path).iterdir())
