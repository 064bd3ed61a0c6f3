"""The ingest component run by kfp.local in a subprocess, as KFP would run it in its container."""

from pathlib import Path

from components.ingest.component import ingest
from components.testkit import step_or_skip


def test_ingest_runs_under_kfp_local(kfp_local, params_yaml):
    step_or_skip("ingest")
    task = ingest(params_yaml=params_yaml)

    ingested = Path(task.outputs["ingested"].path)
    assert (ingested / "table.parquet").is_file()
    assert (ingested / "images.npy").is_file()
    assert task.outputs["metrics"].metadata
