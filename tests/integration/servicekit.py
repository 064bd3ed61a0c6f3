"""Starting and reaching the local services (infra/local/ scripts) from tests: ports, env, S3 client.

PostgreSQL (`start_postgres`) is the MLflow server's backend store, as in infra/base/mlflow.yaml: the
server gets a `postgresql+psycopg://USER@HOST:PORT/DB` URI and the password only as `PGPASSWORD` in
its environment. The password is made per session and lives only in the servers' environments.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra" / "local"
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "renalmae-test",
    "AWS_SECRET_ACCESS_KEY": "renalmae-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ARTIFACT_BUCKET = "mlflow"
DVC_BUCKET = "dvc"
POSTGRES_ROLE = "mlflow"
"""Role and first database of the test PostgreSQL (as POSTGRES_USER / POSTGRES_DB of infra/base)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require(found: bool, what: str, package: str) -> None:
    """Skip when a Debian package the test needs is missing; in CI (`CI` set, as .ci/run has it), fail."""
    if found:
        return
    message = f"{what} not found: install Debian's `{package}` (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def service_env(**extra: str) -> dict[str, str]:
    """The environment of the service scripts: this venv's binaries first, dummy AWS credentials."""
    env = {**os.environ, **DUMMY_AWS, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
    )


@dataclass
class Services:
    run_dir: Path
    s3_url: str
    mlflow_url: str

    def stop(self, *names: str) -> None:
        subprocess.run([str(INFRA / "stop.sh"), str(self.run_dir), *names], env=service_env(), check=False)


@dataclass
class Postgres:
    """A PostgreSQL server from start-postgres.sh: where it listens and the role owning its databases."""

    run_dir: Path
    port: int
    password: str
    user: str = POSTGRES_ROLE
    host: str = "127.0.0.1"

    def backend_store_uri(self, database: str = POSTGRES_ROLE) -> str:
        """MLflow's `--backend-store-uri` for `database`, without the password (it goes in PGPASSWORD)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = POSTGRES_ROLE):
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database,
            autocommit=True,
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        subprocess.run(
            [str(INFRA / "stop.sh"), str(self.run_dir), "postgres"], env=service_env(), check=False
        )


def postgres_installed() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def start_postgres(run_dir: Path) -> Postgres:
    """A fresh cluster on a free port, role and database `mlflow` with a new random password."""
    server = Postgres(run_dir, free_port(), secrets.token_urlsafe(18))
    env = service_env(POSTGRES_USER=server.user, POSTGRES_DB=POSTGRES_ROLE, POSTGRES_PASSWORD=server.password)
    result = subprocess.run(
        [str(INFRA / "start-postgres.sh"), str(server.port), str(run_dir)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if result.returncode != 0:
        server.stop()
        pytest.fail(f"start-postgres.sh failed: {result.stderr}")
    return server


def start_s3(run_dir: Path) -> str:
    result = subprocess.run(
        [str(INFRA / "start-s3.sh"), str(free_port()), str(run_dir)],
        env=service_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"start-s3.sh failed: {result.stderr}")
    return result.stdout.strip()


def start_mlflow(
    run_dir: Path,
    s3_endpoint: str,
    postgres: Postgres | None = None,
    database: str = POSTGRES_ROLE,
    **extra_env: str,
) -> str:
    """`mlflow server` on a free port; backend: `database` on `postgres`, else sqlite in `run_dir`."""
    arguments = [str(INFRA / "start-mlflow.sh"), str(free_port()), s3_endpoint, ARTIFACT_BUCKET, str(run_dir)]
    if postgres is not None:
        arguments.append(postgres.backend_store_uri(database))
        extra_env["PGPASSWORD"] = postgres.password
    result = subprocess.run(
        arguments, env=service_env(**extra_env), capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        pytest.fail(f"start-mlflow.sh failed: {result.stderr}")
    return result.stdout.strip()
