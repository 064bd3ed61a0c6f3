"""The Kubeflow Trainer job: its manifest fits the published CRD, and the create / wait / restart logic
against a fake of the three Kubernetes API calls used (fake_kubernetes.py: not a cluster)."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from fake_kubernetes import (
    FakeKubernetes,
    FakeKubernetesServer,
    admission_errors,
    finished,
    name_rules,
    running,
    trainjob_schema,
)

from renalmae.errors import ServiceError
from renalmae.trainjob import (
    TrainJobs,
    TrainJobSpec,
    connect,
    job_name,
    run_trainjob,
    trainjob_manifest,
)

NAMESPACE = "kubeflow-user"
TOKEN = "k8s-t0ken-value"
COMMAND = ["torchrun", "-m", "renalmae.cli", "pretrain", "--params", "/mnt/renalmae/runs/x/params.yaml"]
SECRET_ENV = [
    {
        "name": "MLFLOW_TRACKING_URI",
        "valueFrom": {"secretKeyRef": {"name": "renalmae-mlflow", "key": "MLFLOW_TRACKING_URI"}},
    }
]


def spec(**changes) -> TrainJobSpec:
    fields = {
        "name": job_name("pretrain", "run-8f2c"), "namespace": NAMESPACE, "env": SECRET_ENV,
        "image": "ghcr.io/renalmae/renalmae:1.0-cuda", "command": COMMAND, "nodes": 4, "procs_per_node": 8,
        "gpus_per_node": 8, "volume_claim": "renalmae-data", "mount_path": "/mnt/renalmae",
    }  # fmt: skip
    return TrainJobSpec(**{**fields, **changes})


@pytest.fixture(scope="module")
def schema() -> dict:
    return trainjob_schema()


def kubernetes(state: FakeKubernetes):
    """(server, TrainJobs client) for `state`, as a context manager."""
    return FakeKubernetesServer(state)


def jobs_for(server: FakeKubernetesServer, token: str = TOKEN) -> TrainJobs:
    return TrainJobs(connect(server.url, token), NAMESPACE)


def wait(jobs: TrainJobs, manifest: dict, restarts: int = 2, **options) -> dict:
    return run_trainjob(
        jobs, manifest, restarts=restarts, poll_seconds=0, sleep=lambda seconds: None, **options
    )


# --- the manifest -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gpus", [8, 0], ids=["gpu-cluster", "cpu-cluster"])
def test_the_trainjob_manifest_fits_the_published_crd_schema(schema, gpus):
    manifest = trainjob_manifest(spec(gpus_per_node=gpus, procs_per_node=gpus or 2))
    assert admission_errors(manifest, schema, strict_fields=True) == []


def test_the_schema_check_refuses_what_the_api_server_would(schema):
    """The check has teeth: a misspelt field, a wrong type and a bad name are each refused."""
    manifest = trainjob_manifest(spec())
    misspelt, wrong_type, bad_name = (copy.deepcopy(manifest) for _ in range(3))
    misspelt["spec"]["trainer"]["numNode"] = misspelt["spec"]["trainer"].pop("numNodes")
    wrong_type["spec"]["trainer"]["numProcPerNode"] = "eight"
    bad_name["metadata"]["name"] = "Pretrain_Run"
    assert "'numNode' was unexpected" in " ".join(admission_errors(misspelt, schema, strict_fields=True))
    assert "'eight' is not of type 'integer'" in " ".join(
        admission_errors(wrong_type, schema, strict_fields=True)
    )
    assert "RFC 1035" in " ".join(admission_errors(bad_name, schema, strict_fields=True))


def test_the_manifest_runs_our_image_and_command_on_every_node_with_the_shared_volume():
    manifest = trainjob_manifest(spec())
    assert manifest["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and manifest["kind"] == "TrainJob"
    trainer = manifest["spec"]["trainer"]
    assert trainer["command"] == COMMAND and trainer["image"].endswith(":1.0-cuda")
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 8)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 8
    assert trainer["env"] == SECRET_ENV
    assert manifest["spec"]["runtimeRef"] == {
        "name": "torch-distributed", "kind": "ClusterTrainingRuntime", "apiGroup": "trainer.kubeflow.org"
    }  # fmt: skip
    (patch,) = manifest["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "renalmae-data"}
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/renalmae"
    cpu_only = trainjob_manifest(spec(gpus_per_node=0))["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert "nvidia.com/gpu" not in cpu_only


def test_job_names_are_rfc1035_labels_and_the_same_on_every_retry_of_a_run(schema):
    pattern, length = name_rules(schema)
    long_run_id = "a" * 200
    names = [job_name("pretrain", "run-1"), job_name("pretrain", "run-2"), job_name("pretrain", long_run_id)]
    assert all(pattern.fullmatch(name) and len(name) <= length for name in names)
    assert job_name("pretrain", "run-1") == names[0] != names[1]


# --- create, wait, restart --------------------------------------------------------------------------


def test_a_job_that_completes_is_created_once_and_returned():
    state = FakeKubernetes(
        token=TOKEN, script=[[running(), running(), finished("Complete", "JobSetCompleted")]]
    )
    with kubernetes(state) as server:
        job = wait(jobs_for(server), trainjob_manifest(spec()))
    assert job["status"]["conditions"][0]["type"] == "Complete"
    assert len(state.created) == 1 and state.created[0] == trainjob_manifest(spec())
    assert [r.method for r in state.requests] == ["POST", "GET", "GET", "GET"]
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in state.requests)
    assert "fieldValidation=Strict" in state.requests[0].path


def test_a_job_that_lost_a_node_is_deleted_and_created_again():
    lost_node = finished("Failed", "FailedJobs", "jobset failed: pod renalmae-node-0-1 evicted (node lost)")
    state = FakeKubernetes(
        token=TOKEN, script=[[running(4), lost_node], [running(4), finished("Complete", "Done")]]
    )
    with kubernetes(state) as server:
        job = wait(jobs_for(server), trainjob_manifest(spec()))
    assert condition_type(job) == "Complete"
    assert len(state.created) == 2, "the same job, created a second time"
    methods = [r.method for r in state.requests]
    assert methods[:5] == ["POST", "GET", "GET", "DELETE", "GET"], "delete, wait until gone, then create"
    assert methods[5] == "POST"
    assert state.requests[3].path.endswith("?propagationPolicy=Foreground"), "its pods go with it"


def condition_type(job: dict) -> str:
    return job["status"]["conditions"][0]["type"]


def test_a_job_failing_more_often_than_restarts_allow_stops_with_its_reason():
    state = FakeKubernetes(token=TOKEN, script=[[finished("Failed", "FailedJobs", "CUDA out of memory")]])
    with kubernetes(state) as server, pytest.raises(ServiceError) as error:
        wait(jobs_for(server), trainjob_manifest(spec()), restarts=2)
    assert len(state.created) == 3, "the first attempt and two restarts"
    message = str(error.value)
    assert (
        f"TrainJob {NAMESPACE}/{spec().name} failed (FailedJobs: CUDA out of memory) after 2 restart(s)"
        in message
    )
    assert f"kubectl logs -n {NAMESPACE} -l jobset.sigs.k8s.io/jobset-name={spec().name}" in message


@pytest.mark.parametrize("reason", ["DeadlineExceeded", "TrainingRuntimeNotSupported"])
def test_a_failure_another_attempt_cannot_fix_is_not_retried(reason):
    state = FakeKubernetes(token=TOKEN, script=[[finished("Failed", reason, "no")]])
    with kubernetes(state) as server, pytest.raises(ServiceError, match=reason):
        wait(jobs_for(server), trainjob_manifest(spec()), restarts=3)
    assert len(state.created) == 1


def test_the_job_of_an_earlier_attempt_is_adopted_not_duplicated():
    """A retried pipeline task finds its job still running: it waits for that one."""
    state = FakeKubernetes(token=TOKEN, script=[[running(), running(), finished("Complete", "Done")]])
    with kubernetes(state) as server:
        jobs = jobs_for(server)
        jobs.create(trainjob_manifest(spec()))  # the earlier attempt's
        job = wait(jobs, trainjob_manifest(spec()))
    assert condition_type(job) == "Complete"
    assert len(state.created) == 1
    assert [r.method for r in state.requests].count("DELETE") == 0


def test_a_job_deleted_while_waiting_is_reported():
    state = FakeKubernetes(token=TOKEN, script=[[running()]])
    with kubernetes(state) as server:
        jobs = jobs_for(server)

        def delete_behind_our_back(seconds):
            jobs.delete(spec().name)

        with pytest.raises(ServiceError, match="disappeared while the pipeline waited"):
            run_trainjob(
                jobs, trainjob_manifest(spec()), restarts=2, poll_seconds=1, sleep=delete_behind_our_back
            )


def test_a_job_running_past_the_timeout_is_left_running_and_the_message_says_how_to_stop_it():
    state = FakeKubernetes(token=TOKEN, script=[[running()]])
    ticks = iter(range(0, 10_000, 600))
    with kubernetes(state) as server, pytest.raises(ServiceError) as error:
        wait(jobs_for(server), trainjob_manifest(spec()), timeout_seconds=3600, clock=lambda: next(ticks))
    assert "did not finish within 3600 s" in str(error.value)
    assert f"kubectl delete trainjob -n {NAMESPACE} {spec().name}" in str(error.value)
    assert (NAMESPACE, spec().name) in state.jobs


def test_a_service_account_without_permission_is_told_which_rbac_it_needs():
    state = FakeKubernetes(token=TOKEN)
    with kubernetes(state) as server, pytest.raises(ServiceError) as error:
        wait(jobs_for(server, token="another-token"), trainjob_manifest(spec()))
    assert "HTTP 401" in str(error.value)
    assert "create, get and delete on trainjobs.trainer.kubeflow.org" in str(error.value)
    assert "another-token" not in str(error.value)


def test_a_cluster_without_kubeflow_trainer_is_named_with_the_fix():
    state = FakeKubernetes(token=TOKEN, installed=False)
    with kubernetes(state) as server, pytest.raises(ServiceError) as error:
        wait(jobs_for(server), trainjob_manifest(spec()))
    assert "install Kubeflow Trainer v2" in str(error.value) and "pretrain.nodes: 1" in str(error.value)


def test_a_manifest_the_api_server_refuses_is_reported_with_its_reason():
    state = FakeKubernetes(token=TOKEN)
    with kubernetes(state) as server, pytest.raises(ServiceError) as error:
        wait(jobs_for(server), trainjob_manifest(spec(name="Not_A_Label")))
    assert "rejected the TrainJob (HTTP 422" in str(error.value) and "RFC 1035" in str(error.value)


def test_an_unreachable_api_server_is_reported():
    with kubernetes(FakeKubernetes()) as server:
        url = server.url
    with pytest.raises(ServiceError, match=re.escape("the Kubernetes API is unreachable")):
        TrainJobs(connect(url, TOKEN), NAMESPACE).get("anything")


# --- a whole job, its nodes played on this machine --------------------------------------------------


class Kubelet:
    """Plays a TrainJob's nodes here: each node runs the trainer's command with the PET_* environment the
    torch runtime injects (a static rendezvous on 127.0.0.1). On the first attempt every node is killed
    (SIGKILL, as when a node is lost) once the run has written a checkpoint."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        self.step_found_by_attempt: list[int | None] = []
        self.stderr_by_attempt: list[str] = []

    def __call__(self, job: dict, attempt: int) -> dict:
        import torch

        trainer = job["spec"]["trainer"]
        assert trainer["command"][0] == "torchrun"
        launcher = [sys.executable, "-m", "torch.distributed.run", *trainer["command"][1:]]
        found = torch.load(self.checkpoint, weights_only=False)["step"] if self.checkpoint.is_file() else None
        self.step_found_by_attempt.append(found)
        port = free_port()
        nodes = []
        for rank in range(trainer["numNodes"]):
            environment = {**os.environ, "PET_NNODES": str(trainer["numNodes"]),
                           "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]), "PET_NODE_RANK": str(rank),
                           "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}  # fmt: skip
            nodes.append(subprocess.Popen(launcher, env=environment, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))  # fmt: skip
        if attempt == 0:
            while not self.checkpoint.is_file() and all(node.poll() is None for node in nodes):
                time.sleep(0.01)
            for node in nodes:  # the node's launcher and every rank it started
                with contextlib.suppress(psutil.NoSuchProcess):
                    launcher_process = psutil.Process(node.pid)
                    for process in [*launcher_process.children(recursive=True), launcher_process]:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            process.send_signal(signal.SIGKILL)
        errors = [node.communicate(timeout=600)[1] for node in nodes]
        self.stderr_by_attempt.append("\n".join(errors))
        if attempt == 0:
            return finished("Failed", "FailedJobs", "node renalmae-node-0-1 lost")
        if any(node.returncode != 0 for node in nodes):
            return finished("Failed", "FailedJobs", self.stderr_by_attempt[-1][-2000:])
        return finished("Complete", "JobSetCompleted")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_two_node_trainjob_that_loses_a_node_resumes_to_the_single_process_encoder(tmp_path, dataset):
    from safetensors.numpy import load_file
    from trainkit import tiny_params

    from renalmae.steps import pretrain
    from renalmae.trainjob import TrainJobSettings, run_as_trainjob

    ingest_dir, splits_path = dataset
    schedule = {"epochs": 4, "batch_size": 16}  # 16 steps, a checkpoint every 2
    reference = pretrain.run(tiny_params(pretrain=schedule), ingest_dir, splits_path, tmp_path / "one")
    mount = tmp_path / "shared-volume"
    params = tiny_params(pretrain={**schedule, "nodes": 2, "gpus": 1})
    name = job_name("pretrain", "run-42")
    kubelet = Kubelet(mount / "renalmae-runs" / name / ".checkpoints" / "pretrain" / "latest.pt")
    state = FakeKubernetes(token=TOKEN, runner=kubelet)
    settings = TrainJobSettings(image="renalmae:test", volume_claim="data", mount_path=str(mount))

    inputs = {"ingest_dir": ingest_dir, "splits_path": splits_path}
    with kubernetes(state) as server:
        encoder = run_as_trainjob(pretrain, params, inputs, {}, tmp_path / "encoder", settings=settings,
                                  run_id="run-42", jobs=jobs_for(server), poll_seconds=0.05)  # fmt: skip

    assert len(state.created) == 2, "the job was created again after the lost node"
    assert state.created[0]["spec"]["trainer"]["command"][:4] == [
        "torchrun",
        "-m",
        "renalmae.cli",
        "pretrain",
    ]
    assert kubelet.step_found_by_attempt[0] is None
    found = kubelet.step_found_by_attempt[1]
    assert found is not None and found >= 2, (
        f"no checkpoint to resume from: {kubelet.stderr_by_attempt[0][-3000:]}"
    )
    assert "other parameters" not in kubelet.stderr_by_attempt[1], "the second attempt took the checkpoint"
    expected, actual = (
        load_file(reference / "encoder.safetensors"),
        load_file(encoder / "encoder.safetensors"),
    )
    for tensor, values in expected.items():
        np.testing.assert_allclose(actual[tensor], values, atol=1e-5, err_msg=tensor)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"volume_claim": None}, "compile the pipeline with `python -m pipelines compile --data-pvc NAME`"),
        ({"image": ""}, "did not name the image"),
        ({}, "train.checkpoint_dir /scratch/local is not on the shared volume mounted at /mnt/renalmae"),
    ],
    ids=["no-shared-volume", "no-image", "checkpoints-off-the-volume"],
)
def test_a_trainjob_that_could_not_resume_or_run_is_refused_before_submitting(tmp_path, settings, message):
    from trainkit import tiny_params

    from renalmae.errors import ParamsError
    from renalmae.steps import pretrain
    from renalmae.trainjob import TrainJobSettings, run_as_trainjob

    params = tiny_params(train={"checkpoint_dir": "/scratch/local"}, pretrain={"nodes": 2})
    given = {"image": "renalmae:test", "volume_claim": "data", "mount_path": "/mnt/renalmae", **settings}
    with pytest.raises(ParamsError, match=re.escape(message)):
        run_as_trainjob(pretrain, params, {"ingest_dir": tmp_path, "splits_path": tmp_path}, {},
                        tmp_path / "out", settings=TrainJobSettings(**given), run_id="r")  # fmt: skip


def test_the_pretrain_component_with_two_nodes_submits_a_trainjob_and_returns_its_encoder(
    tmp_path, dataset, monkeypatch
):
    """The KFP component's path for `pretrain.nodes: 2` (`kfp_io.run_component` → `trainjob.run_as_trainjob`):
    the image, shared volume and secret names the DAG sets on the task reach the job, the client finds
    the cluster as a pod would (here a kubeconfig naming the fake API server), and the encoder the job
    writes on the volume becomes the task's `encoder` artifact. The fake kubelet runs the job's command in
    this process as one rank (ranks equal one process: tests/unit/train/test_distributed.py)."""
    import json

    from kfp.dsl import Dataset, Metrics, Model
    from kubernetes.config import kube_config
    from trainkit import TRAINING

    from renalmae import cli, kfp_io
    from renalmae.testing import tiny_params_yaml

    ingest_dir, splits_path = dataset
    mount = tmp_path / "volume"
    ran = []

    def kubelet(job: dict, attempt: int) -> dict:
        trainer = job["spec"]["trainer"]
        assert trainer["command"][:3] == ["torchrun", "-m", "renalmae.cli"]
        ran.append(trainer)
        code = cli.main(trainer["command"][3:])
        return finished("Complete", "JobSetCompleted") if code == 0 else finished("Failed", "FailedJobs")

    state = FakeKubernetes(token=TOKEN, runner=kubelet)
    with kubernetes(state) as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "pod",
            "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
            "users": [{"name": "pipeline-runner", "user": {"token": TOKEN}}],
            "contexts": [{"name": "pod", "context": {"cluster": "fake", "user": "pipeline-runner",
                                                     "namespace": NAMESPACE}}],
        }))  # fmt: skip
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod: the kubeconfig
        # (the client reads $KUBECONFIG when it is imported, so the path is set where it keeps it)
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        environment = {
            kfp_io.TRAINJOB_IMAGE_ENV: "renalmae:test-cuda",
            kfp_io.SHARED_PVC_ENV: "renal-data",
            kfp_io.SHARED_MOUNT_ENV: str(mount),
            kfp_io.TRAINJOB_SECRETS_ENV: json.dumps({"renalmae-mlflow": ["MLFLOW_TRACKING_URI"]}),
        }
        for name, value in {**environment, kfp_io.RUN_ID_ENV: "run-7"}.items():
            monkeypatch.setenv(name, value)  # the last: what the DAG maps from the pod's label
        kfp_io.run_component(
            "pretrain", tiny_params_yaml(TRAINING, pretrain={"nodes": 2, "epochs": 1}),
            {"ingest_dir": Dataset(uri=str(ingest_dir)), "splits_path": Dataset(uri=str(splits_path))},
            Model(uri=str(tmp_path / "encoder")), metrics=Metrics(uri=str(tmp_path / "m")),
        )  # fmt: skip

    (trainer,) = ran
    (job,) = state.created
    assert (job["metadata"]["namespace"], trainer["image"], trainer["numNodes"]) == (
        NAMESPACE, "renalmae:test-cuda", 2
    )  # fmt: skip
    secret = {"secretKeyRef": {"name": "renalmae-mlflow", "key": "MLFLOW_TRACKING_URI"}}
    assert {"name": "MLFLOW_TRACKING_URI", "valueFrom": secret} in trainer["env"], "by reference, no value"
    assert {"name": "RENALMAE_PIPELINE_RUN_ID", "value": "run-7"} in trainer["env"]  # nodes join the run
    assert {"name": "RENALMAE_ENGINE", "value": "kfp"} in trainer["env"]
    assert "renal-data" in json.dumps(job["spec"]), "the shared volume is mounted on the nodes"
    on_volume = mount / "renalmae-runs" / job["metadata"]["name"] / "out_dir"
    for name in ("encoder.safetensors", "metrics.json"):
        assert (tmp_path / "encoder" / name).read_bytes() == (on_volume / name).read_bytes(), name
