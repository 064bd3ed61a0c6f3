"""Registry settings are checked with the params, and a relative store is the project's (issue 26 kind 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from renalmae.errors import ModelError, ParamsError
from renalmae.params import load_params, params_from_dict
from renalmae.registry.connection import mlflow_client, service_errors, tracking_uri


@pytest.mark.parametrize(
    "prefix",
    ["renal/site-a", "renal:v2", "renal@site", "renal site", "renal?x", "renal#1", "..renal", "", "-renal"],
    ids=["slash", "colon", "at", "space", "question-mark", "hash", "dot-dot", "empty", "leading-dash"],
)
def test_model_prefix_mlflow_or_a_models_uri_cannot_carry_is_refused_with_the_params(prefix):
    with pytest.raises(ParamsError) as error:
        params_from_dict({"registry": {"model_prefix": prefix}})
    message = str(error.value)
    assert "registry.model_prefix" in message and "letters, digits" in message
    assert "unreachable" not in message


@pytest.mark.parametrize("prefix", ["renal", "Renal_2.0-site", "nieren-ü"])
def test_model_prefix_of_name_characters_is_accepted(prefix):
    assert params_from_dict({"registry": {"model_prefix": prefix}}).registry.model_prefix == prefix


def test_a_request_mlflow_refuses_as_invalid_is_not_called_unreachable():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    with pytest.raises(ModelError) as error, service_errors("sqlite:///x.db"):
        raise MlflowException("Invalid model name 'a/b'. Names cannot contain '/'", INVALID_PARAMETER_VALUE)
    assert "unreachable" not in str(error.value) and "Invalid model name 'a/b'" in str(error.value)


def project(root: Path, tracking_uri_setting: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tracking = {"tracking_uri": tracking_uri_setting} if tracking_uri_setting else {}
    (root / "params.yaml").write_text(yaml.safe_dump({"tracking": tracking}))
    return root / "params.yaml"


@pytest.mark.parametrize("setting", [None, "sqlite:///mlflow.db", "sqlite:///stores/registry.db"])
def test_relative_sqlite_store_is_the_projects_from_any_working_directory(tmp_path, monkeypatch, setting):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params_file = project(tmp_path / "project", setting)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = (setting or "sqlite:///mlflow.db").removeprefix("sqlite:///")
    assert (
        tracking_uri(load_params(params_file)) == f"sqlite:///{(tmp_path / 'project' / relative).as_posix()}"
    )


def test_absolute_and_server_stores_are_kept_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in (f"sqlite:///{tmp_path}/abs.db", "http://mlflow:5000", "postgresql://db/mlflow"):
        assert tracking_uri(load_params(project(tmp_path / "p", uri))) == uri


def test_reading_a_registry_that_does_not_exist_refuses_and_creates_nothing(tmp_path, monkeypatch):
    from renalmae.params import RegistryParams
    from renalmae.registry.promote import promote
    from renalmae.registry.serving import load_ensemble

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ModelError, match="no MLflow registry at .*mlflow.db does not exist"):
        load_ensemble("models:/renal-usfmae-binary@champion", uri)
    with pytest.raises(ModelError, match="no MLflow registry at"):
        promote(uri, "renal-usfmae-binary", None, RegistryParams())
    with pytest.raises(ModelError, match="no MLflow registry at"):
        mlflow_client(uri, read_only=True)
    assert list(tmp_path.iterdir()) == []
