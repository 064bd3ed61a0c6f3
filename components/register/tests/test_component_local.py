"""The register component run by kfp.local against a throw-away sqlite MLflow store."""

import json
from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Model

from components.register.component import register
from components.register.tests.test_component_unit import tracked_params_yaml
from components.testkit import imported, imported_list, step_or_skip


def test_register_runs_under_kfp_local(
    kfp_local, params_yaml, trained_runs, comparison, validation, tmp_path
):
    step_or_skip("register")

    @dsl.pipeline
    def register_only(params_yaml: str) -> Dataset:
        task = register(
            params_yaml=params_yaml,
            finetune_runs=imported_list(Model, trained_runs["finetune_runs"]),
            baseline_runs=imported_list(Model, trained_runs["baseline_runs"]),
            comparison=imported(Dataset, comparison),
            validation=imported(Dataset, validation),
        )
        return task.outputs["registered"]

    run = register_only(params_yaml=tracked_params_yaml(params_yaml, tmp_path))

    assert json.loads(Path(run.output.path).read_text())
