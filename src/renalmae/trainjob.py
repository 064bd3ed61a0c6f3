"""Multi-node pretraining as a Kubeflow Trainer `TrainJob`: the manifest, and submitting it and waiting.

Kubernetes code of the Kubeflow runner (`renalmae.kfp_io` calls `run_as_trainjob` for a step whose
params ask for several nodes); the library never imports it. It lives in the package because the KFP
component runs in the container, where only the package is installed.

Why Trainer v2's `TrainJob` (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2.3) and not the Training
Operator's `PyTorchJob` (kubeflow.org/v1): the Training Operator v1 is in maintenance (its last line is
release-1.9) and v2 replaces its per-framework CRDs with this one; and the job we need fits the v2 API
in a few fields — an image, a command, `numNodes`, `numProcPerNode`, `resourcesPerNode` — while the
`torch-distributed` ClusterTrainingRuntime sets up torchrun (it injects PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT, which torchrun reads). A PyTorchJob spells out a
Master and a Worker pod template, restart policies and the rendezvous by hand.

Every node runs our image and the same step (`torchrun -m renalmae.cli pretrain ...`) on a shared
ReadWriteMany volume that holds the inputs, the output encoder and the checkpoints (`train.checkpoint_dir`).
The runtime's JobSet does not restart a failed job, so `run_trainjob` does: when the job fails (a node
lost, a pod evicted) it deletes it and creates it again, up to `pretrain.trainjob_restarts` times, and
the new pods resume from the last checkpoint on the volume. The only Kubernetes API calls made are
create, get and delete of one `trainjobs` object.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from renalmae.errors import ParamsError, ServiceError
from renalmae.io import atomic_dir, atomic_file
from renalmae.params import Params

log = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
RUNTIME_KIND = "ClusterTrainingRuntime"
TRAINER_CONTAINER = "node"
"""The trainer's replicated job and container in the torch runtimes Kubeflow Trainer ships."""
PATCH_MANAGER = "renalmae"
VOLUME_NAME = "renalmae-shared"
COMPLETE, FAILED = "Complete", "Failed"
FINAL_REASONS = ("TrainingRuntimeNotSupported", "DeadlineExceeded")
"""Failures that another attempt cannot fix: the job is not created again."""
RUNS_DIR = "renalmae-runs"
"""On the shared volume, `<mount>/renalmae-runs/<job name>/` holds a job's inputs, output, checkpoints."""
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_NAME_LENGTH = 63
"""TrainJob names are RFC 1035 labels (the CRD's validation rule)."""


@dataclass(frozen=True)
class TrainJobSpec:
    """What one TrainJob runs: `nodes` pods of `image`, each running `command` with `procs_per_node`
    processes, `gpus_per_node` GPUs (0 on a CPU cluster) and the shared volume at `mount_path`."""

    name: str
    namespace: str
    image: str
    command: list[str]
    nodes: int
    procs_per_node: int
    gpus_per_node: int
    volume_claim: str
    mount_path: str
    runtime: str = "torch-distributed"
    cpu: str = "8"
    memory: str = "48Gi"
    env: list[dict[str, Any]] = field(default_factory=list)
    """Container environment entries (`{"name", "value"}` or `{"name", "valueFrom"}`), e.g. secrets."""


def job_name(step: str, run_id: str) -> str:
    """A TrainJob name for `step` of one pipeline run: the same on every retry, an RFC 1035 label."""
    digest = hashlib.sha256(f"{step}:{run_id}".encode()).hexdigest()[:12]
    return f"renalmae-{step}-{digest}"[:MAX_NAME_LENGTH]


def trainjob_manifest(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob object for `spec` (validated in the tests against the published CRD schema)."""
    limits: dict[str, Any] = {"cpu": spec.cpu, "memory": spec.memory}
    if spec.gpus_per_node:
        limits["nvidia.com/gpu"] = spec.gpus_per_node
    pod_patch = {
        "volumes": [{"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": spec.volume_claim}}],
        "containers": [
            {"name": TRAINER_CONTAINER, "volumeMounts": [{"name": VOLUME_NAME, "mountPath": spec.mount_path}]}
        ],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {"app.kubernetes.io/part-of": "renalmae"},
        },
        "spec": {
            "runtimeRef": {"name": spec.runtime, "kind": RUNTIME_KIND, "apiGroup": GROUP},
            "trainer": {
                "image": spec.image,
                "command": list(spec.command),
                "numNodes": spec.nodes,
                "numProcPerNode": spec.procs_per_node,
                "resourcesPerNode": {"requests": dict(limits), "limits": limits},
                "env": list(spec.env),
            },
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": TRAINER_CONTAINER,
                                        "template": {"spec": {"template": {"spec": pod_patch}}},
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


class TrainJobs:
    """The three calls made on `trainjobs` in one namespace: create, get, delete (kubernetes client)."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def _call(self, method: str, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return getattr(self.api, method)(GROUP, VERSION, self.namespace, PLURAL, *args, **kwargs)
        except ApiException as error:
            raise _api_error(error, self.namespace) from None
        except (HTTPError, OSError) as error:
            raise ServiceError(
                f"the Kubernetes API is unreachable ({type(error).__name__}: {error}); check the cluster "
                "connection of the pipeline's pod"
            ) from None

    def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The created job, or None when a job of that name exists already."""
        try:
            # Strict: a field the CRD does not know is refused, not silently dropped
            return self._call("create_namespaced_custom_object", manifest, field_validation="Strict")
        except _AlreadyExists:
            return None
        except _NotFound:
            raise ServiceError(
                f"the cluster has no {PLURAL}.{GROUP}/{VERSION} API in namespace {self.namespace}: install "
                "Kubeflow Trainer v2 (its CRDs and the torch-distributed runtime), or set pretrain.nodes: 1"
            ) from None

    def get(self, name: str) -> dict[str, Any] | None:
        """The job, or None when there is none of that name."""
        try:
            return self._call("get_namespaced_custom_object", name)
        except _NotFound:
            return None

    def delete(self, name: str) -> None:
        """Delete the job and its pods (foreground: the call returns once the deletion is under way)."""
        with contextlib.suppress(_NotFound):
            self._call("delete_namespaced_custom_object", name, propagation_policy="Foreground")


class _AlreadyExists(ServiceError):
    pass


class _NotFound(ServiceError):
    pass


def _api_error(error, namespace: str) -> ServiceError:
    what = f"{PLURAL}.{GROUP} in namespace {namespace}"
    detail = f"HTTP {error.status} {error.reason}"
    if error.status == 409:
        return _AlreadyExists(detail)
    if error.status == 404:
        return _NotFound(detail)
    if error.status in (401, 403):
        return ServiceError(
            f"the Kubernetes API refused {what} ({detail}): give the pipeline's service account "
            f"create, get and delete on {PLURAL}.{GROUP} (a Role and RoleBinding)"
        )
    if error.status in (400, 422):
        return ServiceError(f"the Kubernetes API rejected the TrainJob ({detail}): {error.body}")
    return ServiceError(f"the Kubernetes API failed on {what} ({detail}): {error.body}")


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The job's status condition of type `kind` when it is True, else None."""
    for entry in job.get("status", {}).get("conditions", []) or []:
        if entry.get("type") == kind and entry.get("status") == "True":
            return entry
    return None


def run_trainjob(
    jobs: TrainJobs,
    manifest: dict[str, Any],
    *,
    restarts: int,
    poll_seconds: float = 30.0,
    timeout_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Create the TrainJob (or adopt the one of that name left by an earlier attempt) and wait for it.

    A failed job is deleted and created again up to `restarts` times (its pods resume from the last
    checkpoint on the shared volume); a finished one found on adoption is returned as is. Returns the
    job once `Complete`. Raises `ServiceError` when it fails for good, when it disappears, or after
    `timeout_seconds` (the job is then left running, and the message says how to delete it).
    """
    name = manifest["metadata"]["name"]
    where = f"TrainJob {jobs.namespace}/{name}"
    if jobs.create(manifest) is None:
        log.info("%s exists already (an earlier attempt of this step): waiting for it", where)
    else:
        log.info("%s created: %s", where, " ".join(manifest["spec"]["trainer"]["command"]))
    started, attempts_left = clock(), restarts
    while True:
        job = jobs.get(name)
        if job is None:
            raise ServiceError(f"{where} disappeared while the pipeline waited for it (deleted by hand?)")
        if condition(job, COMPLETE) is not None:
            log.info("%s complete", where)
            return job
        failed = condition(job, FAILED)
        if failed is not None:
            reason, message = failed.get("reason", "?"), failed.get("message", "")
            if reason in FINAL_REASONS or attempts_left == 0:
                raise ServiceError(
                    f"{where} failed ({reason}: {message}) after {restarts - attempts_left} restart(s); "
                    f"its logs: kubectl logs -n {jobs.namespace} -l jobset.sigs.k8s.io/jobset-name={name}"
                )
            attempts_left -= 1
            log.warning("%s failed (%s: %s); creating it again, %d restart(s) left: it resumes from the "
                        "last checkpoint", where, reason, message, attempts_left)  # fmt: skip
            _recreate(jobs, manifest, sleep, poll_seconds)
            continue
        if timeout_seconds is not None and clock() - started > timeout_seconds:
            raise ServiceError(
                f"{where} did not finish within {timeout_seconds:.0f} s; it is left running "
                f"(kubectl delete trainjob -n {jobs.namespace} {name} stops it)"
            )
        sleep(poll_seconds)


def _recreate(jobs: TrainJobs, manifest: dict[str, Any], sleep, poll_seconds: float) -> None:
    """Delete the job, wait until it is gone (its pods too: foreground deletion), create it again."""
    name = manifest["metadata"]["name"]
    jobs.delete(name)
    while jobs.get(name) is not None:
        sleep(min(poll_seconds, 5.0))
    if jobs.create(manifest) is None:
        raise ServiceError(f"TrainJob {jobs.namespace}/{name} was created again by someone else meanwhile")


def connect(host: str | None = None, token: str | None = None):
    """A Kubernetes API client: for `host` (with a bearer `token`) when given, else the pod's service
    account inside a cluster, else the local kubeconfig."""
    from kubernetes import client, config

    if host is not None:
        configuration = client.Configuration()
        configuration.host = host
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as error:
            raise ServiceError(
                f"no Kubernetes cluster to submit the TrainJob to ({error}): pretrain.nodes > 1 runs from a "
                "Kubeflow pipeline pod (or with a kubeconfig); set pretrain.nodes: 1 to train in one pod"
            ) from None
    return client.ApiClient()


def current_namespace(service_account_dir: str = SERVICE_ACCOUNT_DIR) -> str:
    """The namespace of this pod (its service account's), else the kubeconfig context's, else `default`."""
    namespace_file = Path(service_account_dir) / "namespace"
    if namespace_file.is_file():
        return namespace_file.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts()
        return context["context"].get("namespace", "default")
    except Exception:  # no kubeconfig: the default namespace, as kubectl does
        return "default"


@dataclass(frozen=True)
class SharedVolume:
    """A ReadWriteMany PersistentVolumeClaim mounted at `mount_path` on this pod and on every node."""

    claim: str
    mount_path: str

    def run_dir(self, name: str) -> Path:
        """Where the job `name` keeps its inputs, output and checkpoints on the volume."""
        return Path(self.mount_path) / RUNS_DIR / name

    def check_checkpoints(self, params: Params) -> None:
        """Refuse a `train.checkpoint_dir` off the volume: a job created again could not resume."""
        checkpoints = params.train.checkpoint_dir
        if checkpoints and not Path(checkpoints).is_relative_to(self.mount_path):
            raise ParamsError(
                f"train.checkpoint_dir {checkpoints} is not on the shared volume mounted at "
                f"{self.mount_path}: the nodes of a TrainJob created again after a failure could not resume; "
                "set it under that path, or null (checkpoints then go beside the output, on the volume)"
            )


def stage_inputs(run_dir: Path, params: Params, inputs: dict[str, Path]) -> tuple[Path, dict[str, Path]]:
    """Copy each input (file or folder) into `run_dir/<name>` once, and write the params there.

    Returns (the params file, `{name: path on the volume}`). A retried task finds its inputs staged
    already: each was copied atomically, so one that exists is complete.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    staged = {}
    for name, source in inputs.items():
        target = run_dir / name
        if not target.exists():
            if source.is_dir():
                with atomic_dir(target) as staging:
                    shutil.copytree(source, staging, dirs_exist_ok=True)
            else:
                with atomic_file(target) as staging:
                    shutil.copyfile(source, staging)
        staged[name] = target
    with atomic_file(run_dir / "params.yaml") as staging:
        staging.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    return run_dir / "params.yaml", staged


def collect_output(volume_dir: Path, out_dir: str | Path) -> Path:
    """Copy the job's output folder from the volume to `out_dir` (atomically)."""
    with atomic_dir(out_dir) as staging:
        shutil.copytree(volume_dir, staging, dirs_exist_ok=True)
    return Path(out_dir)


@dataclass(frozen=True)
class TrainJobSettings:
    """What a TrainJob needs beyond the params: the image every node runs, the shared ReadWriteMany volume
    (claim name and mount path; None when the pipeline was compiled without one), container environment
    entries (secrets by reference, never values), and the namespace (None: this pod's)."""

    image: str
    volume_claim: str | None
    mount_path: str
    env: list[dict[str, Any]] = field(default_factory=list)
    namespace: str | None = None


def run_as_trainjob(module: ModuleType, params: Params, arguments: dict[str, Any], target: dict[str, Any],
                    out: str | Path, *, settings: TrainJobSettings, run_id: str, jobs=None,
                    poll_seconds: float = 30.0) -> Path:  # fmt: skip
    """Run the step `module` as a TrainJob of `step.nodes_for(params)` nodes; copy its output to `out`.

    The job is named after the step and `run_id`, so a retried task adopts the job of its earlier attempt
    (or finds its output on the volume). The step's params section holds `trainjob_runtime` and
    `trainjob_restarts`. Raises `ParamsError` without a shared volume or with checkpoints off it, and
    `ServiceError` as `renalmae.train.run_trainjob` does.
    """
    from renalmae.launch import cli_argv
    from renalmae.train.distributed import torchrun_command

    step = module.STEP
    if not settings.volume_claim:
        raise ParamsError(
            f"{step.nodes} > 1 runs a Kubeflow Trainer job whose nodes share inputs, checkpoints and output "
            "on a ReadWriteMany volume: compile the pipeline with "
            f"`python -m pipelines compile --data-pvc NAME`, or set {step.nodes}: 1"
        )
    if not settings.image:
        raise ParamsError(
            f"the pipeline did not name the image the TrainJob of {step.name} runs; recompile it"
        )
    volume = SharedVolume(settings.volume_claim, settings.mount_path)
    volume.check_checkpoints(params)
    if jobs is None:
        jobs = TrainJobs(connect(), settings.namespace or current_namespace())
    name = job_name(step.name, run_id or params.hash()[:16])
    run_dir = volume.run_dir(name)
    inputs = {declared.argument: Path(arguments[declared.argument]) for declared in step.inputs}
    params_file, staged = stage_inputs(run_dir, params, inputs)
    volume_out = run_dir / step.output.argument
    processes = step.processes_for(params)
    section = getattr(params, step.nodes.split(".")[0])
    spec = TrainJobSpec(
        name=name, namespace=jobs.namespace, image=settings.image,
        command=torchrun_command(cli_argv(step, params_file, staged, target, volume_out)),
        nodes=step.nodes_for(params), procs_per_node=processes,
        gpus_per_node=processes if params.train.device != "cpu" else 0,
        volume_claim=volume.claim, mount_path=volume.mount_path, runtime=section.trainjob_runtime,
        env=list(settings.env),
    )  # fmt: skip
    if not volume_out.exists():  # the step writes its output atomically: there means complete
        run_trainjob(jobs, trainjob_manifest(spec), restarts=section.trainjob_restarts,
                              poll_seconds=poll_seconds)  # fmt: skip
    if not volume_out.exists():
        raise ServiceError(f"TrainJob {jobs.namespace}/{name} completed without writing {volume_out}")
    return collect_output(volume_out, out)
