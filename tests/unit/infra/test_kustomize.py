"""infra/: the base and the dev overlay render with kustomize, validate strictly against the Kubernetes
schema, and hold what running them needs: MLflow on PostgreSQL with its password only in a Secret, host
validation that lets the cluster's clients and the kubelet's probes in, probes and resources everywhere."""

from __future__ import annotations

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
OVERLAY = REPO_ROOT / "infra" / "overlays" / "dev"
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


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render(OVERLAY, tmp_path_factory.mktemp("kustomize"))


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


@pytest.mark.parametrize("kustomization", [BASE, OVERLAY], ids=["base", "dev"])
def test_kustomization_validates_strictly_against_the_kubernetes_schema(kustomization, tmp_path):
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
    password = resources[("Secret", "renalmae-postgres")]["stringData"]["POSTGRES_PASSWORD"]

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
            defined |= set(secrets[source["secretRef"]["name"]]["stringData"])
        for arg in [*container.get("command", []), *container.get("args", [])]:
            # Kubernetes leaves an undefined $(VAR) in place, silently: the server would get the literal text
            undefined += [f"{where}: $({name})" for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg)
                          if name not in defined]  # fmt: skip

    assert not undefined


@pytest.mark.parametrize("secret_owner", [BASE, OVERLAY], ids=["base", "dev"])
def test_mlflow_allowed_hosts_admit_the_tracking_uri_of_the_pipeline_secret(secret_owner, tmp_path):
    docs = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for doc in yaml.safe_load_all(render(secret_owner, tmp_path).read_text())
        if doc
    }
    namespace = docs[("Deployment", "renalmae-mlflow")]["metadata"].get("namespace", "default")
    host = urlparse(docs[("Secret", "renalmae-mlflow")]["stringData"]["MLFLOW_TRACKING_URI"]).netloc
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


def test_secrets_hold_placeholders_only(resources):
    secrets = [doc for (kind, _), doc in resources.items() if kind == "Secret"]
    pipeline_secret_names = {"renalmae-mlflow", "renalmae-s3"}

    assert pipeline_secret_names <= {secret["metadata"]["name"] for secret in secrets}
    for secret in secrets:
        assert "data" not in secret, "use stringData placeholders, never encoded values"
        for key, value in secret["stringData"].items():
            if any(word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY")) or key.endswith("USERNAME"):
                assert value.startswith("CHANGE-ME"), f"{secret['metadata']['name']}.{key}"


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
        assert set(keys) <= set(by_name[secret]["stringData"]), secret
