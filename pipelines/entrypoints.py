"""Compile, run locally and submit the Kubeflow pipeline: what `python -m pipelines compile|run|submit` call.

`compile_pipeline` writes the pipeline YAML (the committed `pipelines/renal_pipeline.yaml` is its
output with default settings). `run_local` runs the whole DAG on this machine with `kfp.local`
(SubprocessRunner in the current Python environment). `submit` uploads a pipeline version to a KFP
API server and starts a run with the params file as its one argument.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from renalmae.errors import RenalMAEError, ServiceError
from renalmae.params import load_params

COMPILED_PIPELINE = Path(__file__).resolve().parent / "renal_pipeline.yaml"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
"""Bearer token for the KFP API (e.g. a service-account token); read from the environment, never printed."""


def compile_pipeline(
    output: str | os.PathLike = COMPILED_PIPELINE, data_pvc: str | None = None, ingest_parts: int = 1
) -> Path:
    """Compile the DAG to `output` (KFP IR YAML); `data_pvc` mounts that PVC on the data-reading steps,
    `ingest_parts` > 1 spreads ingest over that many pods."""
    from kfp import compiler

    from pipelines.renal_pipeline import build_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline_func=build_pipeline(data_pvc, ingest_parts), package_path=str(output)
    )
    return output


def read_params_text(params_path: str | os.PathLike) -> str:
    """The params file's text, after checking it validates (so a bad file fails here, not in a pod)."""
    load_params(params_path)
    return Path(params_path).read_text()


def run_local(params_path: str | os.PathLike, pipeline_root: str | os.PathLike) -> Path:
    """Run the whole DAG with kfp.local in this Python environment; return the comparison directory."""
    from kfp import local

    from pipelines.renal_pipeline import renal_pipeline

    params_yaml = read_params_text(params_path)
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=False)
    run = renal_pipeline(params_yaml=params_yaml)
    comparison = run.outputs.get("Output") if run is not None else None
    if comparison is None or not Path(comparison.path).exists():
        raise RenalMAEError(
            "the local pipeline run failed; the failing task's log is above and its files are under "
            f"{pipeline_root}"
        )
    return Path(comparison.path)


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    state: str | None = None


def submit(
    host: str,
    experiment: str,
    version: str,
    params_path: str | os.PathLike,
    namespace: str | None = None,
    package: str | os.PathLike | None = None,
    wait: bool = False,
    timeout_s: int = 24 * 3600,
    token: str | None = None,
) -> SubmittedRun:
    """Upload `package` (default: a fresh compile) as pipeline version `version` and start one run of it.

    Creates the pipeline and the experiment when they do not exist yet. With `wait`, blocks until the
    run ends and raises `ServiceError` unless it succeeded.
    """
    import kfp
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    params_yaml = read_params_text(params_path)
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    hint = f"check --host, --namespace and the token in ${TOKEN_ENV}"
    try:
        with tempfile.TemporaryDirectory(prefix="renalmae-submit-") as scratch:
            package = Path(package) if package else compile_pipeline(Path(scratch) / "renal_pipeline.yaml")
            try:
                client = kfp.Client(
                    host=host, namespace=namespace or "kubeflow", existing_token=token or None
                )
            except TimeoutError:  # the client gives up after retrying its health check
                raise ServiceError(f"KFP API at {host} does not answer its health check; {hint}") from None
            submitted = _upload_and_start(client, package, experiment, version, namespace, params_yaml, host)
            if not wait:
                return submitted
            try:
                state = client.wait_for_run_completion(submitted.run_id, timeout=timeout_s).state
            except TimeoutError:
                raise ServiceError(
                    f"KFP run {submitted.run_id} did not finish within {timeout_s} s: {submitted.url}"
                ) from None
    except ApiException as error:
        raise ServiceError(
            f"KFP API at {host} refused the request: HTTP {error.status} {error.reason}; {hint}"
        ) from None
    except (HTTPError, OSError) as error:
        raise ServiceError(
            f"KFP API at {host} is unreachable ({type(error).__name__}); check --host"
        ) from None
    if str(state).upper() != "SUCCEEDED":
        raise ServiceError(f"KFP run {submitted.run_id} ended {state}: {submitted.url}")
    return SubmittedRun(**{**submitted.__dict__, "state": state})


def _upload_and_start(
    client, package: Path, experiment: str, version: str, namespace, params_yaml: str, host: str
):
    name = _pipeline_name()
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name).pipeline_id
    pipeline_version = client.upload_pipeline_version(
        str(package), pipeline_version_name=version, pipeline_id=pipeline_id
    )
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=f"{name}-{version}-{time.strftime('%Y%m%d-%H%M%S')}",
        params={"params_yaml": params_yaml},
        pipeline_id=pipeline_id,
        version_id=pipeline_version.pipeline_version_id,
    )
    return SubmittedRun(
        run_id=run.run_id,
        url=f"{host.rstrip('/')}/#/runs/details/{run.run_id}",
        pipeline_id=pipeline_id,
        version_id=pipeline_version.pipeline_version_id,
        experiment_id=experiment_id,
    )


def _pipeline_name() -> str:
    from pipelines.renal_pipeline import PIPELINE_NAME

    return PIPELINE_NAME
