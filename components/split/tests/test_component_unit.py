"""The split component, called as a plain function: splits.json is the output artifact itself."""

from kfp.dsl import Dataset

from components.split.component import split
from components.testkit import artifact, step_or_skip


def test_split_writes_one_fold_per_params_fold(params_yaml, params, ingested, validation, tmp_path):
    step_or_skip("split")
    from renalmae.data.splits import load_splits

    splits = artifact(Dataset, tmp_path / "splits")
    split.python_func(
        params_yaml=params_yaml,
        ingested=artifact(Dataset, ingested),
        validation=artifact(Dataset, validation),
        splits=splits,
    )

    loaded = load_splits(splits.path)
    assert loaded.k_folds == len(params.split.folds)
    assert loaded.test_ids and not set(loaded.test_ids) & set(loaded.development_ids)
