"""The ingest component, called as a plain function: the ingested data set lands in its output artifact."""

import json

import pytest
from kfp.dsl import Dataset, Metrics

from components.ingest.component import ingest
from components.testkit import artifact, step_or_skip


def test_ingest_writes_the_cache_into_the_dataset_and_logs_counts(params_yaml, tmp_path):
    step_or_skip("ingest")
    ingested, metrics = artifact(Dataset, tmp_path / "ingested"), artifact(Metrics, tmp_path / "metrics")

    ingest.python_func(params_yaml=params_yaml, ingested=ingested, metrics=metrics)

    for name in ("table.parquet", "images.npy", "masks.npy", "ingest.json"):
        assert (tmp_path / "ingested" / name).is_file(), name
    summary_numbers = json.dumps(metrics.metadata)
    assert metrics.metadata and all(isinstance(value, float) for value in metrics.metadata.values()), (
        summary_numbers
    )


def test_ingest_refuses_an_unknown_params_key(tmp_path):
    from renalmae.errors import ParamsError

    with pytest.raises(ParamsError, match="data.sorce"):
        ingest.python_func(
            params_yaml="data:\n  sorce: phantom://renal?n=60\n",
            ingested=artifact(Dataset, tmp_path / "ingested"),
            metrics=artifact(Metrics, tmp_path / "metrics"),
        )
    assert not (tmp_path / "ingested").exists()
