"""The Kubeflow pipeline run end to end by kfp.local, and checked against `dvc repro` with the same params.

Both run the same step functions with the same seeds, so the comparison metrics must agree: the KFP
wrappers add nothing to the computation. MLflow tracking goes to a throw-away sqlite store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renalmae.kfp_io import numeric_leaves

# In the default run (issue 18): the DAG runs once per session, beside the `dvc repro` it is compared with
# (tests/e2e/conftest.py).
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kfp_run(pipeline_runs) -> Path:
    """The `python -m pipelines run --local` run's directory under the pipeline root."""
    return pipeline_runs.kfp_run


@pytest.fixture(scope="module")
def dvc_comparison(pipeline_runs) -> Path:
    """`reports/comparison` of `dvc repro compare` in a fresh git + DVC repository with the same params."""
    return pipeline_runs.dvc_repo / "reports" / "comparison"


def test_every_step_of_the_dag_ran_under_kfp_local(kfp_run):
    assert (kfp_run / "ingest" / "ingested" / "table.parquet").is_file()
    assert (kfp_run / "validate" / "validation" / "summary.json").is_file()
    iterations = sorted(path.name for path in kfp_run.glob("for-loop-*-iteration-*"))
    assert len(iterations) == 2, iterations  # binary × 2 folds × 1 repeat
    for iteration in iterations:
        for step in ("finetune", "baseline"):
            # the model artifact holds the task's one run: <task>/fold<k> below it
            assert list((kfp_run / iteration / step / "model").glob("*/fold*/predictions.parquet")), (
                iteration,
                step,
            )
    assert (kfp_run / "compare" / "comparison" / "metrics.json").is_file()
    assert any((kfp_run / "explain" / "explanations").iterdir())
    registered = json.loads((kfp_run / "register" / "registered").read_text())
    assert registered["models"]


def test_kfp_and_dvc_ingest_and_split_the_same_way(kfp_run, dvc_comparison):
    dvc_repo = dvc_comparison.parents[1]

    for name in ("images.npy", "masks.npy"):
        kfp_bytes = (kfp_run / "ingest" / "ingested" / name).read_bytes()
        assert kfp_bytes == (dvc_repo / "data" / "ingested" / name).read_bytes(), name
    assert json.loads((kfp_run / "split" / "splits").read_text()) == json.loads(
        (dvc_repo / "data" / "splits.json").read_text()
    )


def test_kfp_and_dvc_give_the_same_comparison_metrics(kfp_run, dvc_comparison):
    kfp_metrics = json.loads((kfp_run / "compare" / "comparison" / "metrics.json").read_text())
    dvc_metrics = json.loads((dvc_comparison / "metrics.json").read_text())

    kfp_numbers, dvc_numbers = numeric_leaves(kfp_metrics), numeric_leaves(dvc_metrics)
    assert kfp_numbers.keys() == dvc_numbers.keys()
    assert kfp_numbers == pytest.approx(dvc_numbers, rel=1e-6, abs=1e-9)
