"""Ingest spread over pods under kfp.local: plan, a ParallelFor of parts, merge = the one-task ingest."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kfp import dsl
from kfp.dsl import Dataset
from PIL import Image

from components.ingest_parts.component import ingest_merge, ingest_part, ingest_plan
from renalmae.testing import tiny_params, tiny_params_yaml


# Four kfp.local subprocesses (half a minute or more on 2 shared cores): slow. The default run checks the
# same plan / parts / merge on the step (tests/unit/data/test_ingest_shards.py) and the DAG's wiring
# (tests/unit/pipelines/test_pipeline_compile.py).
@pytest.mark.slow
def test_ingest_in_two_parts_under_kfp_local_equals_one_ingest(kfp_local, tmp_path):
    from renalmae.steps import ingest

    rng = np.random.default_rng(0)
    for index in range(9):
        path = tmp_path / "pool" / f"p{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + index, 48), dtype=np.uint8)).save(path)
    data = {"pool": [str(tmp_path / "pool")], "shard_size": 2}
    one_task = ingest.run(tiny_params(data=data), tmp_path / "one-task")

    @dsl.pipeline
    def ingest_in_parts(params_yaml: str) -> Dataset:
        plan_task = ingest_plan(params_yaml=params_yaml, parts=2)
        with dsl.ParallelFor(plan_task.outputs["Output"], parallelism=2) as part:
            part_task = ingest_part(
                params_yaml=params_yaml, plan=plan_task.outputs["plan"], part=part, parts=2
            )
        merge_task = ingest_merge(
            params_yaml=params_yaml,
            plan=plan_task.outputs["plan"],
            shards=dsl.Collected(part_task.outputs["shards"]),
        )
        return merge_task.outputs["ingested"]

    merged = Path(ingest_in_parts(params_yaml=tiny_params_yaml(data=data)).output.path)

    pd.testing.assert_frame_equal(
        pd.read_parquet(merged / "table.parquet"), pd.read_parquet(one_task / "table.parquet")
    )
    for name in ("images.npy", "masks.npy"):
        assert (merged / name).read_bytes() == (one_task / name).read_bytes(), name
