"""The split component run by kfp.local."""

from kfp import dsl
from kfp.dsl import Dataset

from components.split.component import split
from components.testkit import imported, step_or_skip


def test_split_runs_under_kfp_local(kfp_local, params_yaml, params, ingested, validation):
    step_or_skip("split")
    from renalmae.data.splits import load_splits

    @dsl.pipeline
    def split_only(params_yaml: str) -> Dataset:
        task = split(
            params_yaml=params_yaml,
            ingested=imported(Dataset, ingested),
            validation=imported(Dataset, validation),
        )
        return task.outputs["splits"]

    run = split_only(params_yaml=params_yaml)

    assert load_splits(run.output.path).k_folds == len(params.split.folds)
