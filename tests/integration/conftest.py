"""Real services for integration tests: moto S3 + `mlflow server`, started with the infra/local/ scripts.

Session-scoped: one S3 + MLflow pair on free ports for the whole session (bucket `mlflow` for
artifacts, `dvc` for the DVC remote), stopped by PID at the end. Dummy AWS credentials live only in
the services' environment and in the tests' `monkeypatch` environment. Destructive tests start their
own pair.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from servicekit import ARTIFACT_BUCKET, DUMMY_AWS, DVC_BUCKET, Services, s3_client, start_mlflow, start_s3


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    """One moto S3 + one MLflow server (sqlite backend, S3 artifacts) for the session."""
    if shutil.which("curl") is None:
        pytest.skip("the infra/local scripts need curl")
    run_dir = tmp_path_factory.mktemp("services")
    started = Services(run_dir, "", "")
    try:
        started.s3_url = start_s3(run_dir)
        for bucket in (ARTIFACT_BUCKET, DVC_BUCKET):
            s3_client(started.s3_url).create_bucket(Bucket=bucket)
        started.mlflow_url = start_mlflow(run_dir, started.s3_url)
        yield started
    finally:
        started.stop()


@pytest.fixture
def mlflow_server(services, monkeypatch, tmp_path) -> Services:
    """Point this test's MLflow client at the session server; work in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.mlflow_url)
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    return services
