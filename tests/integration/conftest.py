"""Real services for integration tests: PostgreSQL, moto S3 and `mlflow server`, via the infra/local/ scripts.

Session-scoped: one PostgreSQL and one S3 + MLflow pair on free ports for the whole session (the
server's backend is a database of that PostgreSQL, as in infra/; bucket `mlflow` for artifacts, `dvc`
for the DVC remote), stopped by PID at the end. Dummy AWS credentials and the session's PostgreSQL
password live only in the services' environment and in the tests' `monkeypatch` environment.
Destructive tests start their own S3 + MLflow pair, on a fresh database of the same PostgreSQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from servicekit import (
    ARTIFACT_BUCKET,
    DUMMY_AWS,
    DVC_BUCKET,
    Postgres,
    Services,
    postgres_installed,
    require,
    s3_client,
    start_mlflow,
    start_postgres,
    start_s3,
)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[Postgres]:
    """One PostgreSQL server for the session (Debian's `postgresql`; initdb + pg_ctl on 127.0.0.1)."""
    require(postgres_installed(), "PostgreSQL's initdb", "postgresql")
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def services(tmp_path_factory, postgres) -> Iterator[Services]:
    """One moto S3 + one MLflow server (PostgreSQL backend, S3 artifacts) for the session."""
    require(shutil.which("curl") is not None, "curl", "curl")
    run_dir = tmp_path_factory.mktemp("services")
    started = Services(run_dir, "", "")
    try:
        started.s3_url = start_s3(run_dir)
        for bucket in (ARTIFACT_BUCKET, DVC_BUCKET):
            s3_client(started.s3_url).create_bucket(Bucket=bucket)
        started.mlflow_url = start_mlflow(run_dir, started.s3_url, postgres)
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
