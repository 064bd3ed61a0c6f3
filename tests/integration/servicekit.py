"""Starting and reaching the local services (infra/local/ scripts) from tests: ports, env, S3 client."""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def start_s3(run_dir: Path) -> str:
    result = subprocess.run(
        [str(INFRA / "start-s3.sh"), str(free_port()), str(run_dir)],
        env=service_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"start-s3.sh failed: {result.stderr}")
    return result.stdout.strip()


def start_mlflow(run_dir: Path, s3_endpoint: str, **extra_env: str) -> str:
    result = subprocess.run(
        [str(INFRA / "start-mlflow.sh"), str(free_port()), s3_endpoint, ARTIFACT_BUCKET, str(run_dir)],
        env=service_env(**extra_env), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"start-mlflow.sh failed: {result.stderr}")
    return result.stdout.strip()
