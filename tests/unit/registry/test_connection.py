"""Which store the registry talks to, and what a user sees when it cannot."""

from __future__ import annotations

import pytest

from renalmae.errors import ServiceError
from renalmae.params import params_from_dict
from renalmae.registry.connection import DEFAULT_TRACKING_URI, redacted, service_errors, tracking_uri


def test_embedded_sqlite_is_the_default(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(params_from_dict({})) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"


def test_environment_points_at_a_server(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(params_from_dict({})) == "http://mlflow:5000"


def test_params_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert (
        tracking_uri(params_from_dict({"tracking": {"tracking_uri": "sqlite:///other.db"}}))
        == "sqlite:///other.db"
    )


def test_passwords_never_reach_messages():
    assert redacted("postgresql://user:s3cret@db:5432/mlflow") == "postgresql://user:***@db:5432/mlflow"
    assert redacted("http://mlflow:5000") == "http://mlflow:5000"
    with pytest.raises(ServiceError) as raised, service_errors("postgresql://user:s3cret@db/mlflow"):
        raise ImportError("No module named 'psycopg'")
    assert "s3cret" not in str(raised.value) and "psycopg" in str(raised.value)
