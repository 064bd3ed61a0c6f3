"""The validate component run by kfp.local on a data set ingested earlier in the session."""

from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset

from components.testkit import imported, step_or_skip
from components.validate.component import validate


def test_validate_runs_under_kfp_local(kfp_local, params_yaml, ingested):
    step_or_skip("validate")

    @dsl.pipeline
    def validate_only(params_yaml: str) -> Dataset:
        return validate(params_yaml=params_yaml, ingested=imported(Dataset, ingested)).outputs["validation"]

    run = validate_only(params_yaml=params_yaml)

    assert any(Path(run.output.path).iterdir())
