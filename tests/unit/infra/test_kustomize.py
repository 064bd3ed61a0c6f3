"""infra/: the base and the dev overlay render with kustomize, validate strictly against the Kubernetes
schema, and hold what running them needs: MLflow on PostgreSQL with its password only in a Secret, host
validation that lets the cluster's clients and the kubelet's probes in, probes and resources everywhere;
MLflow behind its basic-auth app, Secrets generated from ignored local files (never placeholders applied
as resources), NetworkPolicies around MLflow and PostgreSQL, a scoped MinIO user."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
BASE = REPO_ROOT / "infra" / "base"
NAMESPACE = "renalmae-dev"
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN", re.IGNORECASE)


def tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (see requirements/dev.lock)")
    return found


def render(kustomization: Path, out_dir: Path) -> Path:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    path = out_dir / f"{kustomization.name}.yaml"
    path.write_text(result.stdout)
    return path


def infra_copy(root: Path) -> Path:
    """A copy of infra/ whose dev overlay has its Secret files, written by make-secrets.sh as a user would."""
    copy = root / "infra"
    shutil.copytree(REPO_ROOT / "infra", copy, ignore=shutil.ignore_patterns("*.env"))
    subprocess.run([str(copy / "overlays" / "dev" / "make-secrets.sh")], check=True, capture_output=True)
    return copy


@pytest.fixture(scope="module")
def dev_overlay(tmp_path_factory) -> Path:
    return infra_copy(tmp_path_factory.mktemp("infra")) / "overlays" / "dev"


@pytest.fixture(scope="module")
def rendered(dev_overlay, tmp_path_factory) -> Path:
    return render(dev_overlay, tmp_path_factory.mktemp("kustomize"))


def secret_values(doc: dict) -> dict[str, str]:
    """A Secret's keys and decoded values (generated Secrets carry base64 `data`)."""
    return {
        **{key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()},
        **doc.get("stringData", {}),
    }


@pytest.fixture(scope="module")
def resources(rendered) -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(rendered.read_text()) if doc
    }


def containers(resources) -> dict[str, dict]:
    """`Kind/name/container` -> container spec, for every workload."""
    found = {}
    for (kind, name), doc in resources.items():
        if kind in {"Deployment", "StatefulSet", "Job"}:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                found[f"{kind}/{name}/{container['name']}"] = container
    return found


def mlflow_container(resources) -> dict:
    return resources[("Deployment", "renalmae-mlflow")]["spec"]["template"]["spec"]["containers"][0]


def allowed_hosts(container: dict, namespace: str) -> list[str]:
    """The server's --allowed-hosts patterns with $(POD_NAMESPACE) expanded as the kubelet does."""
    (arg,) = [arg for arg in container["args"] if arg.startswith("--allowed-hosts=")]
    return arg.removeprefix("--allowed-hosts=").replace("$(POD_NAMESPACE)", namespace).split(",")


@pytest.mark.parametrize("which", ["base", "dev"])
def test_kustomization_validates_strictly_against_the_kubernetes_schema(which, dev_overlay, tmp_path):
    kustomization = BASE if which == "base" else dev_overlay
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(render(kustomization, tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_overlay_holds_mlflow_postgres_minio_and_the_bucket_job(resources):
    expected = {
        ("Deployment", "renalmae-mlflow"), ("Service", "renalmae-mlflow"),
        ("StatefulSet", "renalmae-postgres"), ("Deployment", "renalmae-minio"),
        ("Job", "renalmae-create-buckets"), ("ConfigMap", "kfp-launcher"),
    }  # fmt: skip
    assert expected <= set(resources)
    assert {
        doc["metadata"].get("namespace") for kind, doc in resources.items() if kind[0] != "Namespace"
    } == {"renalmae-dev"}


def test_mlflow_server_uses_postgres_through_psycopg_s3_artifacts_and_few_workers(resources):
    container = mlflow_container(resources)
    args = container["args"]

    backend = [arg for arg in args if arg.startswith("--backend-store-uri=")]
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3 too; the URI names the driver the lock pins
    assert backend == [
        "--backend-store-uri=postgresql+psycopg://$(POSTGRES_USER)@$(POSTGRES_HOST):$(POSTGRES_PORT)/$(POSTGRES_DB)"
    ]
    assert "--workers=1" in args
    assert {"name": "ARTIFACTS_DESTINATION", "value": "s3://mlflow/artifacts"} in container["env"]


def test_postgres_password_reaches_mlflow_only_through_the_secret(resources):
    container = mlflow_container(resources)
    env = {entry["name"]: entry for entry in container["env"]}
    password = secret_values(resources[("Secret", "renalmae-postgres")])["POSTGRES_PASSWORD"]

    # libpq reads PGPASSWORD; it comes from the Secret's key, not from a literal or the command line
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "renalmae-postgres",
        "key": "POSTGRES_PASSWORD",
    }
    assert not [arg for arg in container["args"] if "PASSWORD" in arg or password in arg]
    assert {"secretRef": {"name": "renalmae-postgres"}} not in container.get("envFrom", [])
    rendered_text = yaml.safe_dump(resources[("Deployment", "renalmae-mlflow")])
    assert password not in rendered_text


def test_no_workload_sets_a_secret_like_variable_to_a_literal(resources):
    literal = {
        f"{where}: {entry['name']}"
        for where, container in containers(resources).items()
        for entry in container.get("env", [])
        if SECRET_LIKE.search(entry["name"]) and "value" in entry
    }

    assert not literal


def test_every_variable_in_container_arguments_is_defined_in_its_environment(resources):
    secrets = {name: doc for (kind, name), doc in resources.items() if kind == "Secret"}
    undefined = []
    for where, container in containers(resources).items():
        defined = {entry["name"] for entry in container.get("env", [])}
        for source in container.get("envFrom", []):
            defined |= set(secret_values(secrets[source["secretRef"]["name"]]))
        for arg in [*container.get("command", []), *container.get("args", [])]:
            # Kubernetes leaves an undefined $(VAR) in place, silently: the server would get the literal text
            undefined += [f"{where}: $({name})" for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg)
                          if name not in defined]  # fmt: skip

    assert not undefined


def test_mlflow_allowed_hosts_admit_the_tracking_uri_of_the_pipeline_secret(resources):
    docs = resources
    namespace = docs[("Deployment", "renalmae-mlflow")]["metadata"].get("namespace", "default")
    host = urlparse(secret_values(docs[("Secret", "renalmae-mlflow")])["MLFLOW_TRACKING_URI"]).netloc
    patterns = allowed_hosts(mlflow_container(docs), namespace)

    assert any(fnmatch.fnmatch(host, pattern) for pattern in patterns), (host, patterns)
    assert any(fnmatch.fnmatch("localhost:5000", pattern) for pattern in patterns), "kubectl port-forward"
    assert not any(fnmatch.fnmatch("attacker.example:5000", pattern) for pattern in patterns)


def test_mlflow_probes_hit_the_health_endpoint_that_host_validation_exempts(resources):
    from mlflow.server.security_utils import HEALTH_ENDPOINTS

    container = mlflow_container(resources)
    port_names = {port["name"] for port in container["ports"]}

    for probe in ("readinessProbe", "livenessProbe"):
        # the kubelet sends Host: <pod IP>, which --allowed-hosts does not list: only an exempt path works
        assert container[probe]["httpGet"]["path"] in HEALTH_ENDPOINTS
        assert container[probe]["httpGet"]["port"] in port_names


def test_every_long_running_container_has_probes_and_bounded_resources(resources):
    for where, container in containers(resources).items():
        resources_ = container["resources"]
        for kind in ("cpu", "memory"):
            assert kind in resources_["requests"] and kind in resources_["limits"], where
        if not where.startswith("Job/"):
            assert "readinessProbe" in container, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_postgres_keeps_its_data_on_a_volume_claim(resources):
    statefulset = resources[("StatefulSet", "renalmae-postgres")]

    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]


def test_the_pipeline_root_bucket_is_created_and_used(resources):
    job_script = " ".join(
        resources[("Job", "renalmae-create-buckets")]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    launcher = resources[("ConfigMap", "kfp-launcher")]["data"]

    assert "store/renalmae-pipelines" in job_script
    assert launcher["defaultPipelineRoot"].startswith("s3://renalmae-pipelines/")


def test_no_secret_is_a_committed_resource_and_the_base_renders_none(tmp_path):
    committed = subprocess.run(["git", "ls-files", "infra"], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True).stdout.split()  # fmt: skip
    manifests = [REPO_ROOT / path for path in committed if path.endswith((".yaml", ".yml"))]
    kinds = [doc.get("kind") for path in manifests for doc in yaml.safe_load_all(path.read_text()) if doc]

    assert "Secret" not in kinds
    assert not [path for path in committed if path.endswith(".env")]
    base = [doc for doc in yaml.safe_load_all(render(BASE, tmp_path).read_text()) if doc]
    assert not [doc for doc in base if doc["kind"] == "Secret"]


def test_generated_secrets_hold_the_local_files_values_never_placeholders(resources, dev_overlay):
    files = {}
    for path in (dev_overlay / "secrets").glob("*.env"):
        files.update(line.split("=", 1) for line in path.read_text().splitlines() if line)
    secrets = {name: secret_values(doc) for (kind, name), doc in resources.items() if kind == "Secret"}

    assert {"renalmae-postgres", "renalmae-mlflow", "renalmae-mlflow-server", "renalmae-s3"} <= set(secrets)
    for name, values in secrets.items():
        for key, value in values.items():
            assert "CHANGE-ME" not in value, f"{name}.{key}"
            if SECRET_LIKE.search(key):
                assert value == files[key], f"{name}.{key}"
            if "PASSWORD" in key or "SECRET" in key:
                assert len(value) >= 32, f"{name}.{key}: not a random value"


def test_make_secrets_keeps_a_file_that_exists(tmp_path):
    copy = infra_copy(tmp_path)
    first = (copy / "overlays" / "dev" / "secrets" / "postgres.env").read_text()
    subprocess.run([str(copy / "overlays" / "dev" / "make-secrets.sh")], check=True, capture_output=True)

    assert (copy / "overlays" / "dev" / "secrets" / "postgres.env").read_text() == first
    assert "/infra/overlays/dev/secrets/*.env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_mlflow_runs_the_basic_auth_app_with_its_admin_from_a_secret(resources):
    container = mlflow_container(resources)
    env = {entry["name"]: entry for entry in container["env"]}
    config = resources[("ConfigMap", "renalmae-mlflow-auth")]["data"]["basic_auth.ini"]

    assert container["command"] == ["mlflow", "server", "--app-name", "basic-auth"]
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "renalmae-mlflow-server", "key": key}
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow-auth/basic_auth.ini"
    settings = [line for line in config.splitlines() if line and not line.startswith("#")]
    assert "default_permission = READ" in settings
    assert not [line for line in settings if line.startswith(("admin_password", "admin_username"))]
    # the accounts live in the backend's PostgreSQL (password from PGPASSWORD), not in a file in the pod
    assert "database_uri = postgresql+psycopg://mlflow@renalmae-postgres:5432/mlflow" in config


def _ingress_sources(resources, target: str) -> list[dict]:
    """The `from` peers of every NetworkPolicy that selects pods `app.kubernetes.io/name: target`."""
    selector = {"app.kubernetes.io/name": target}
    policies = [
        doc
        for (kind, _), doc in resources.items()
        if kind == "NetworkPolicy" and doc["spec"]["podSelector"]["matchLabels"] == selector
    ]
    assert policies, f"no NetworkPolicy selects {target}"
    assert all(policy["spec"]["policyTypes"] == ["Ingress"] for policy in policies)
    return [peer for policy in policies for rule in policy["spec"]["ingress"] for peer in rule["from"]]


def test_only_pipeline_pods_reach_mlflow_and_only_mlflow_reaches_postgres(resources):
    pipeline_pods = {"podSelector": {"matchLabels": {"pipelines.kubeflow.org/v2_component": "true"}}}
    accounts_job = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "renalmae-mlflow-accounts"}}}
    mlflow = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "renalmae-mlflow"}}}

    assert _ingress_sources(resources, "renalmae-mlflow") == [pipeline_pods, accounts_job]
    assert _ingress_sources(resources, "renalmae-postgres") == [mlflow]
    job_labels = resources[("Job", "renalmae-mlflow-accounts")]["spec"]["template"]["metadata"]["labels"]
    assert job_labels["app.kubernetes.io/name"] == "renalmae-mlflow-accounts"
    # no peer is a namespaceSelector: nothing outside the namespace gets in
    assert not [peer for target in ("renalmae-mlflow", "renalmae-postgres", "renalmae-minio")
                for peer in _ingress_sources(resources, target) if "namespaceSelector" in peer]  # fmt: skip


def test_minio_root_stays_with_minio_and_the_bucket_job_others_get_a_scoped_user(resources):
    users = {
        name: values
        for (kind, name), doc in resources.items()
        if kind == "Secret" and (values := secret_values(doc))
    }
    root_readers = {
        where
        for where, container in containers(resources).items()
        for entry in container.get("env", [])
        if entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "renalmae-minio-root"
    }
    job_script = " ".join(
        resources[("Job", "renalmae-create-buckets")]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    policy = json.loads(resources[("ConfigMap", "renalmae-minio-policy")]["data"]["renalmae-buckets.json"])

    assert users["renalmae-s3"]["AWS_ACCESS_KEY_ID"] != users["renalmae-minio-root"]["MINIO_ROOT_USER"]
    assert root_readers == {"Deployment/renalmae-minio/minio", "Job/renalmae-create-buckets/mc"}
    assert 'mc admin user add store "$AWS_ACCESS_KEY_ID"' in job_script
    assert "mc admin policy attach store renalmae-buckets" in job_script
    resources_allowed = {arn for statement in policy["Statement"] for arn in statement["Resource"]}
    assert resources_allowed == {"arn:aws:s3:::mlflow", "arn:aws:s3:::renalmae-pipelines",
                                 "arn:aws:s3:::mlflow/*", "arn:aws:s3:::renalmae-pipelines/*"}  # fmt: skip


def test_pipeline_secrets_match_what_the_pipeline_mounts(resources):
    # In a fresh process: kfp walks the call stack's modules on every resource setter while it builds the
    # DAG, which takes seconds per call in a process that has loaded torch (as this worker may have).
    code = (
        "import json\nfrom pipelines import renal_pipeline as p\n"
        "mounted = {p.MLFLOW_SECRET: list(p.MLFLOW_SECRET_KEYS), p.S3_SECRET: list(p.S3_SECRET_KEYS)}\n"
        "print(json.dumps(mounted))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    mounted = json.loads(result.stdout)

    by_name = {doc["metadata"]["name"]: doc for (kind, _), doc in resources.items() if kind == "Secret"}
    assert len(mounted) == 2
    for secret, keys in mounted.items():
        assert set(keys) <= set(secret_values(by_name[secret])), secret
