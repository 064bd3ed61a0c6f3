"""infra/: the dev overlay renders with kustomize and every resource validates against the k8s schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
OVERLAY = REPO_ROOT / "infra" / "overlays" / "dev"


def tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (see requirements/dev.lock)")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120, check=True
    )
    path = tmp_path_factory.mktemp("kustomize") / "dev.yaml"
    path.write_text(result.stdout)
    return path


@pytest.fixture(scope="module")
def resources(rendered) -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(rendered.read_text()) if doc
    }


def test_dev_overlay_validates_strictly_against_the_kubernetes_schema(rendered):
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(rendered)],
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


def test_mlflow_server_uses_postgres_s3_allowed_hosts_and_few_workers(resources):
    container = resources[("Deployment", "renalmae-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]

    assert any(arg.startswith("--backend-store-uri=postgresql://") for arg in args)
    assert any(arg.startswith("--allowed-hosts=") and "*," not in arg for arg in args)
    assert "--workers=1" in args
    assert {"name": "ARTIFACTS_DESTINATION", "value": "s3://mlflow/artifacts"} in container["env"]


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
    sys.path.insert(0, str(REPO_ROOT))
    from pipelines import renal_pipeline

    by_name = {doc["metadata"]["name"]: doc for (kind, _), doc in resources.items() if kind == "Secret"}
    assert set(renal_pipeline.MLFLOW_SECRET_KEYS) <= set(by_name[renal_pipeline.MLFLOW_SECRET]["stringData"])
    assert set(renal_pipeline.S3_SECRET_KEYS) <= set(by_name[renal_pipeline.S3_SECRET]["stringData"])
