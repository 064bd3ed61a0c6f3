"""The register component, called as a plain function against a throw-away sqlite MLflow store."""

import json

import yaml
from kfp.dsl import Dataset, Model

from components.register.component import register
from components.testkit import artifact, step_or_skip


def tracked_params_yaml(params_yaml: str, tmp_path) -> str:
    raw = yaml.safe_load(params_yaml)
    raw["tracking"] = {
        "enabled": True,
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "experiment": "kfp-test",
    }
    return yaml.safe_dump(raw)


def test_register_writes_what_it_registered(params_yaml, trained_runs, comparison, validation, tmp_path):
    step_or_skip("register")
    registered = artifact(Dataset, tmp_path / "registered.json")

    register.python_func(
        params_yaml=tracked_params_yaml(params_yaml, tmp_path),
        finetune_runs=[artifact(Model, path) for path in trained_runs["finetune_runs"]],
        baseline_runs=[artifact(Model, path) for path in trained_runs["baseline_runs"]],
        comparison=artifact(Dataset, comparison),
        validation=artifact(Dataset, validation),
        registered=registered,
    )

    assert json.loads((tmp_path / "registered.json").read_text())
