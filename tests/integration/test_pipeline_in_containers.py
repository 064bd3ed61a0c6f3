"""The whole pipeline in its image: podman builds docker/Dockerfile, kfp.local's DockerRunner runs the DAG.

`make test-containers` (slow; not in the default run). The image is built by docker/build-images.sh (the
`cuda` target: the one whose torch installs offline here; it runs on the CPU too) and tagged with the
names the components run (components.CPU_IMAGE and CUDA_IMAGE). Each task runs in a container started
through podman's Docker-compatible socket, on the host network, against the session's MLflow server
(PostgreSQL backend, moto S3 artifacts) on 127.0.0.1. podman 4.3 answers `wait` on an auto-removed
container with status 0, so kfp.local may call a failed task a success: the test asserts on what the
tasks produced (files, the registered version, the champion alias), never on task status.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from servicekit import REPO_ROOT, require

from renalmae.artifacts import Comparison, Encoder, Explanations, IngestedData, TrainedRun, ValidationReport
from renalmae.registry.connection import mlflow_client

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.slow]

CONTAINERS_CONF = REPO_ROOT / "docker" / "podman" / "containers.conf"
PARAMS = REPO_ROOT / "tests" / "e2e" / "params-e2e.yaml"
MODEL_PREFIX = "containers"


def podman(*argv: str, timeout: int = 600, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *argv], env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def image() -> dict[str, str]:
    """Build (or take from podman's layer cache) the image; tag it as both names the components run."""
    if str(REPO_ROOT) not in sys.path:  # components/ and pipelines/ live beside tests/, not in the package
        sys.path.insert(0, str(REPO_ROOT))
    from components import CPU_IMAGE, CUDA_IMAGE, IMAGE_REPOSITORY, IMAGE_TAG

    for program, package in (("podman", "podman"), ("runc", "runc"), ("debootstrap", "debootstrap")):
        require(shutil.which(program) is not None, program, package)
    started = time.monotonic()
    build = subprocess.run(
        [str(REPO_ROOT / "docker" / "build-images.sh"), "cuda"],
        env={**os.environ, "RENALMAE_IMAGE": IMAGE_REPOSITORY, "RENALMAE_IMAGE_TAG": IMAGE_TAG},
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    print(f"\nimage build: {time.monotonic() - started:.0f} s")
    # the cpu target needs the PyTorch CPU index (unreachable here); the cuda image runs on the CPU as well
    assert podman("tag", CUDA_IMAGE, CPU_IMAGE).returncode == 0
    return {"cpu": CPU_IMAGE, "cuda": CUDA_IMAGE}


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    """podman's Docker-compatible API on a Unix socket of this test, stopped by PID."""
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert service.poll() is None and time.monotonic() < deadline, (
                "podman system service did not start"
            )
            time.sleep(0.2)
        yield f"unix://{socket}"
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)


@pytest.fixture(scope="module")
def pipeline_root():
    """Outside pytest's private temporary folder: the containers' user (10001) must reach it."""
    root = Path(tempfile.mkdtemp(prefix="renalmae-kfp-"))
    root.chmod(0o777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pipeline_run(image, docker_host, pipeline_root, services) -> dict:
    """Run the DAG with DockerRunner; returns the params, the comparison path and the elapsed seconds."""
    from kfp import local

    from pipelines.renal_pipeline import renal_pipeline

    params = yaml.safe_load(PARAMS.read_text())
    params["tracking"] = {"enabled": True, "tracking_uri": services.mlflow_url, "experiment": "containers"}
    # the tiny models are near chance: the gate's AUC floor would refuse them, which is not what this checks
    params["registry"] = {**params.get("registry", {}), "model_prefix": MODEL_PREFIX, "min_auc": 0.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", docker_host)
        local.init(
            local.DockerRunner(network_mode="host"), pipeline_root=str(pipeline_root), raise_on_error=False
        )
        started = time.monotonic()
        run = renal_pipeline(params_yaml=yaml.safe_dump(params, sort_keys=False))
        elapsed = time.monotonic() - started
    print(f"\nDAG in containers: {elapsed:.0f} s")
    comparison = run.outputs.get("Output") if run is not None else None
    return {"params": params, "comparison": Path(comparison.path) if comparison else None, "seconds": elapsed}


def _outputs(root: Path, name: str) -> list[Path]:
    return sorted(root.rglob(name))


def test_every_step_produced_its_outputs_in_the_containers(pipeline_run, pipeline_root):
    comparison = pipeline_run["comparison"]
    folds = pipeline_run["params"]["split"]["folds"]

    assert comparison is not None and (comparison / Comparison.METRICS).is_file(), sorted(
        pipeline_root.rglob("*")
    )[:50]
    assert (comparison / Comparison.REPORT).is_file()
    assert _outputs(pipeline_root, IngestedData.TABLE), "ingest"
    assert _outputs(pipeline_root, ValidationReport.SUMMARY), "validate"
    assert _outputs(pipeline_root, Encoder.WEIGHTS), "pretrain"
    run_files = _outputs(pipeline_root, TrainedRun.RUN)
    models = [json.loads(path.read_text())["model"] for path in run_files]
    assert sorted(models) == sorted(["usfmae", "densenet169"] * len(folds)), run_files
    assert [path for path in _outputs(pipeline_root, TrainedRun.PREDICTIONS)], "finetune, baseline"
    explanations = _outputs(pipeline_root, Explanations.SELECTION)
    assert explanations and (explanations[0].parent / Explanations.REPORT).is_file(), "explain"


def test_the_registered_version_becomes_champion_through_the_image(
    pipeline_run, pipeline_root, image, services
):
    (registered_file,) = [path for path in pipeline_root.rglob("registered") if path.is_file()] or [None]
    assert registered_file is not None, "register wrote no registered.json"
    registered = {entry["name"]: entry for entry in json.loads(registered_file.read_text())["models"]}
    name = f"{MODEL_PREFIX}-usfmae-binary"
    client = mlflow_client(services.mlflow_url)

    assert client.get_model_version_by_alias(name, "challenger").version == str(registered[name]["version"])
    promote_params = pipeline_root / "promote-params.yaml"
    promote_params.write_text(
        yaml.safe_dump({key: pipeline_run["params"][key] for key in ("tracking", "registry")})
    )
    promoted = podman(
        "run", "--rm", "--network=host", "--volume", f"{promote_params}:/work/params.yaml:ro",
        image["cpu"], "renalmae", "promote", "--model", name,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert client.get_model_version_by_alias(name, "champion").version == str(registered[name]["version"])
    print(
        f"\n{name} v{registered[name]['version']} champion; DAG {pipeline_run['seconds']:.0f} s",
        file=sys.stderr,
    )
