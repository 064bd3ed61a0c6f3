"""The MLflow server exactly as infra/base/mlflow.yaml starts it, against the test PostgreSQL and S3.

The Deployment is rendered by `kubectl kustomize infra/base`; its command, arguments and environment are
taken from the rendered YAML and expanded as the kubelet does ($(VAR) from the container's env, Secret
keys, the namespace), its basic-auth settings read from the rendered ConfigMap. Only what a cluster
would supply differs: the Secrets' values, the database Service's address and name (POSTGRES_HOST /
POSTGRES_PORT / POSTGRES_DB, and the same in the auth settings' database URI), the mounted ConfigMap's
path and the listen address (127.0.0.1 on a free port instead of 0.0.0.0:5000, which a shared machine
must not bind).
"""

from __future__ import annotations

import os
import re
import secrets as tokens
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from servicekit import ARTIFACT_BUCKET, DUMMY_AWS, REPO_ROOT, free_port, s3_client

pytestmark = pytest.mark.integration

NAMESPACE = "renalmae-test"
VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """$(VAR) -> its value when VAR is defined (else left as is), $$ -> $: Kubernetes' expansion rules."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return VARIABLE.sub(replace, text)


def container_environment(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment: envFrom Secrets first, then `env` in order (later entries see earlier)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = kubelet_expand(entry["value"], env)
        elif "secretKeyRef" in entry["valueFrom"]:
            reference = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[reference["name"]][reference["key"]]
        else:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", entry
            env[entry["name"]] = NAMESPACE
    return env


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict]:
    kubectl = Path(sys.executable).parent / "kubectl"
    kubectl = str(kubectl) if kubectl.exists() else "kubectl"
    result = subprocess.run([kubectl, "kustomize", str(REPO_ROOT / "infra" / "base")],
                            capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(result.stdout) if doc}


@pytest.fixture(scope="module")
def manifest_server(rendered, postgres, services, tmp_path_factory):
    """`mlflow server` with the Deployment's command, args and env; yields (url, pid, password, database)."""
    container = rendered[("Deployment", "renalmae-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    database = postgres.create_database("mlflow_manifest")
    admin = {"MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": tokens.token_urlsafe(18),
             "MLFLOW_FLASK_SERVER_SECRET_KEY": tokens.token_hex(24)}  # fmt: skip
    secrets = {
        "renalmae-postgres": {"POSTGRES_PASSWORD": postgres.password},
        "renalmae-s3": {**DUMMY_AWS, "MLFLOW_S3_ENDPOINT_URL": services.s3_url},
        "renalmae-mlflow-server": admin,
    }
    assert ("Secret", "renalmae-postgres") not in rendered  # the base references Secrets, never holds them
    env = container_environment(container, secrets)
    # the database Service's address and name in the cluster -> the test server's
    cluster_database = (env["POSTGRES_USER"], env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DB"])
    assert cluster_database == ("mlflow", "renalmae-postgres", "5432", "mlflow")
    env |= {"POSTGRES_USER": postgres.user, "POSTGRES_HOST": postgres.host,
            "POSTGRES_PORT": str(postgres.port), "POSTGRES_DB": database}  # fmt: skip
    auth_settings = rendered[("ConfigMap", "renalmae-mlflow-auth")]["data"]["basic_auth.ini"]
    cluster_uri = "postgresql+psycopg://mlflow@renalmae-postgres:5432/mlflow"
    assert cluster_uri in auth_settings
    auth_file = tmp_path_factory.mktemp("mlflow-auth") / "basic_auth.ini"
    auth_file.write_text(auth_settings.replace(cluster_uri, postgres.backend_store_uri(database)))
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow-auth/basic_auth.ini"
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_file)
    arguments = [kubelet_expand(arg, env) for arg in container["args"]]
    port = free_port()
    listen = {"--host=0.0.0.0": "--host=127.0.0.1", "--port=5000": f"--port={port}"}
    assert set(listen) <= set(arguments)
    arguments = [listen.get(arg, arg) for arg in arguments]
    env["HOME"] = str(tmp_path_factory.mktemp("mlflow-home"))  # the manifest's /tmp, private to this test
    process_env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path_factory.mktemp("mlflow-manifest") / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen([*container["command"], *arguments], env=process_env, stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"the server exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no /health within 180 s: {log.read_text()[-3000:]}"
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or too busy to answer
                pass
            time.sleep(0.5)
        yield {"url": url, "pid": server.pid, "database": database, "password": postgres.password, "log": log,
               "admin": ("admin", admin["MLFLOW_AUTH_ADMIN_PASSWORD"])}  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_manifest_server_keeps_runs_in_postgres_and_artifacts_in_s3(
    manifest_server, postgres, services, monkeypatch
):
    import mlflow

    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", manifest_server["admin"][0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", manifest_server["admin"][1])
    client = mlflow.MlflowClient(tracking_uri=manifest_server["url"])
    experiment_id = client.create_experiment("manifest-check")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.91)
    client.log_text(run.info.run_id, "written through the server", "note.txt")

    with postgres.connect(manifest_server["database"]) as connection:
        stored = connection.execute(
            "SELECT key, value FROM metrics WHERE run_uuid = %s", (run.info.run_id,)
        ).fetchall()
    assert stored == [("auc", 0.91)]
    keys = [
        item["Key"] for item in s3_client(services.s3_url).list_objects_v2(Bucket=ARTIFACT_BUCKET)["Contents"]
    ]
    assert any(
        key.startswith("artifacts/") and key.endswith(f"{run.info.run_id}/artifacts/note.txt") for key in keys
    )


def test_manifest_server_admits_cluster_clients_and_probes_and_refuses_other_hosts(manifest_server):
    url, api = manifest_server["url"], "/api/2.0/mlflow/experiments/search?max_results=1"

    def status(path: str, host: str, auth: tuple[str, str] | None = manifest_server["admin"]) -> int:
        return requests.get(f"{url}{path}", headers={"Host": host}, auth=auth, timeout=30).status_code

    assert status(api, f"renalmae-mlflow.{NAMESPACE}.svc.cluster.local:5000") == 200
    assert status(api, f"renalmae-mlflow.{NAMESPACE}.svc.cluster.local:5000", auth=None) == 401
    assert status(api, "renalmae-mlflow:5000") == 200
    assert status(api, "attacker.example:5000") == 403
    assert status("/health", "10.244.1.17:5000", auth=None) == 200  # the kubelet's probe names the pod IP


def test_manifest_server_never_shows_the_database_or_admin_password(manifest_server):
    pids = [manifest_server["pid"]]
    pids += [int(pid) for pid in subprocess.run(["pgrep", "-g", str(manifest_server["pid"])],
                                                capture_output=True, text=True).stdout.split()]  # fmt: skip
    command_lines = [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in set(pids)
                     if Path(f"/proc/{pid}/cmdline").exists()]  # fmt: skip

    assert command_lines and any(
        "--backend-store-uri=postgresql+psycopg://" in line for line in command_lines
    )
    for secret in (manifest_server["password"], manifest_server["admin"][1]):
        assert not [line for line in command_lines if secret in line]
        assert secret not in manifest_server["log"].read_text()
