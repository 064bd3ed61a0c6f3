"""The registry behind authentication: the real `mlflow server --app-name basic-auth` (infra/local), its
backend and its accounts in PostgreSQL as in infra/base. Anonymous requests are refused, a read-only
account cannot move an alias, the pipeline's account registers and promotes, a wrong password is told
apart without the secret reaching the message."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
import requests
from PIL import Image
from registrykit import register_bundle
from servicekit import ARTIFACT_BUCKET, DUMMY_AWS, Services, require, s3_client, start_mlflow, start_s3

from renalmae.cli import main
from renalmae.errors import ServiceError
from renalmae.params import RegistryParams
from renalmae.registry.audit import audit_registry
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promote
from renalmae.registry.serving import predict_files

pytestmark = pytest.mark.integration

SETTINGS = RegistryParams(noninferiority_margin=0.5)


class Accounts(dict):
    """user name -> password, made per session; only ever in environments."""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, postgres) -> Iterator[tuple[str, Accounts]]:
    """An authenticated MLflow server (own S3 and database) with accounts admin, pipeline and reader."""
    require(shutil.which("curl") is not None, "curl", "curl")
    run_dir = tmp_path_factory.mktemp("auth-services")
    accounts = Accounts(admin=secrets.token_urlsafe(16), pipeline=secrets.token_urlsafe(16),
                        reader=secrets.token_urlsafe(16))  # fmt: skip
    services = Services(run_dir, "", "")
    database = postgres.create_database("auth_registry")
    try:
        services.s3_url = start_s3(run_dir)
        s3_client(services.s3_url).create_bucket(Bucket=ARTIFACT_BUCKET)
        services.mlflow_url = start_mlflow(
            run_dir, services.s3_url, postgres, database,
            MLFLOW_AUTH_ADMIN_USERNAME="admin", MLFLOW_AUTH_ADMIN_PASSWORD=accounts["admin"],
            MLFLOW_AUTH_DATABASE_URI=postgres.backend_store_uri(database),
        )  # fmt: skip
        from mlflow.server import get_app_client

        admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": accounts["admin"]}
        with mock.patch.dict(os.environ, admin):
            users = get_app_client("basic-auth", tracking_uri=services.mlflow_url)
            for user in ("pipeline", "reader"):
                users.create_user(user, accounts[user])
        log = (run_dir / "mlflow.log").read_text()
        assert not [password for password in accounts.values() if password in log]
        yield services.mlflow_url, accounts
    finally:
        services.stop()


@pytest.fixture
def as_user(auth_server, monkeypatch, tmp_path):
    """Switch this test's MLflow credentials (MLflow reads them from the environment)."""
    url, accounts = auth_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)

    def switch(user: str | None, password: str | None = None) -> None:
        if user is None:
            monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
            return
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or accounts[user])

    return switch


def test_an_anonymous_request_is_refused(auth_server, as_user):
    url, _ = auth_server
    as_user(None)

    answer = requests.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=30)
    assert answer.status_code == 401
    assert requests.get(f"{url}/health", timeout=30).status_code == 200  # the probes' endpoint stays open
    with pytest.raises(ServiceError, match="requires authentication .* no credentials were given"):
        promote(url, "anonymous-usfmae-binary", None, SETTINGS)


def test_register_and_promote_work_with_the_pipeline_accounts_credentials(auth_server, as_user, tmp_path):
    url, _ = auth_server
    name = "auth-usfmae-binary"
    as_user("pipeline")

    register_bundle(url, tmp_path / "v1", name)
    decision = promote(url, name, None, SETTINGS)

    assert decision["decision"] == "promoted" and decision["by"] == "pipeline"
    champion = mlflow_client(url).get_model_version_by_alias(name, "champion")
    assert champion.tags["promotion.by"] == "pipeline"
    assert all(record.problem is None for record in audit_registry(url, name))
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)).save(image)
    as_user("reader")  # reading (and so serving) needs no more than the default READ permission
    assert predict_files(f"models:/{name}@champion", url, [image])["predicted"].size == 1


def test_a_read_only_user_cannot_move_an_alias(auth_server, as_user, tmp_path):
    url, _ = auth_server
    name = "guarded-usfmae-binary"
    as_user("pipeline")
    register_bundle(url, tmp_path / "v1", name)
    promote(url, name, "1", SETTINGS)
    register_bundle(url, tmp_path / "v2", name, seed=3)

    as_user("reader")
    with pytest.raises(ServiceError, match="user 'reader' lacks the permission"):
        promote(url, name, "2", SETTINGS)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="403"):  # nor by hand, the bypass of the gate
        mlflow_client(url).set_registered_model_alias(name, "champion", "2")

    as_user("pipeline")
    assert str(mlflow_client(url).get_model_version_by_alias(name, "champion").version) == "1"


def test_a_wrong_password_gets_a_clear_message_without_the_secret(auth_server, as_user, tmp_path, capsys):
    wrong = secrets.token_urlsafe(16)
    as_user("pipeline", wrong)
    (tmp_path / "params.yaml").write_text("{}\n")

    code = main(["promote", "--model", "renal-usfmae-binary", "--params", str(tmp_path / "params.yaml")])

    error = capsys.readouterr().err
    assert code != 0
    assert "the password of user 'pipeline' is wrong" in error and "MLFLOW_TRACKING_PASSWORD" in error
    assert wrong not in error and "Traceback" not in error
