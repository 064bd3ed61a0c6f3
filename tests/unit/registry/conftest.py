"""One embedded sqlite MLflow store for the registry unit tests (creating its schema takes seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-store') / 'mlflow.db'}"
