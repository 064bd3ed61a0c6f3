"""The Kubeflow Pipelines DAG: every step as a containerised component, wired exactly like `dvc.yaml`.

    ingest → validate → split → pretrain → ParallelFor (task × fold × repeat) { finetune, baseline }
           → Collected → compare → explain → register

The pretrain pod asks for `pretrain.gpus` GPUs and runs the step under torchrun when there are several;
with `pretrain.nodes > 1` it asks for none and runs the step as a Kubeflow Trainer job on the data PVC.

The pipeline takes ONE input, `params_yaml` (the text of a params file, same schema as params.yaml);
the training runs it fans out over are read from it by the `targets` component, so the params stay the
single source of truth. Every task gets the KFP run id from its pod's `pipeline/runid` label (downward
API) as `KFP_RUN_ID`, so no component takes a per-run input and an unchanged step is a cache hit.
Wiring only: no step logic lives here.
"""

import json

from kfp import dsl, kubernetes

from components import CUDA_IMAGE
from components.baseline.component import baseline
from components.compare.component import compare
from components.explain.component import explain
from components.finetune.component import finetune
from components.ingest.component import ingest
from components.ingest_parts.component import ingest_merge, ingest_part, ingest_plan
from components.pod_resources.component import pod_resources
from components.pretrain.component import pretrain
from components.register.component import register
from components.split.component import split
from components.targets.component import targets
from components.validate.component import validate
from renalmae import kfp_io
from renalmae.kfp_io import runs_input

PIPELINE_NAME = "renalmae"
MLFLOW_SECRET = "renalmae-mlflow"
"""Kubernetes Secret with MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD (infra/base/secrets.yaml)."""
S3_SECRET = "renalmae-s3"
"""Kubernetes Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / MLFLOW_S3_ENDPOINT_URL."""
MLFLOW_SECRET_KEYS = {
    key: key for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
}
S3_SECRET_KEYS = {
    key: key for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL")
}
DATA_MOUNT_PATH = "/mnt/renalmae"
"""Where the optional data PVC is mounted on ingest and the training steps: point `data.source`, `data.pool`,
`*.init_checkpoint` and `train.checkpoint_dir` there (the last so a retried pod resumes its checkpoint)."""
MAX_PARALLEL_TRAINING = 4
"""At most this many finetune (and baseline) pods at once: one GPU each."""
RETRY = {"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "1800s"}


RUN_ID_LABEL = "metadata.labels['pipeline/runid']"


def _on_cpu(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    return (
        task.set_display_name(name)
        .set_cpu_request(kfp_io.CPU_POD["cpu"])
        .set_cpu_limit(kfp_io.CPU_POD["cpu"])
        .set_memory_request(kfp_io.CPU_POD["memory"])
        .set_memory_limit(kfp_io.CPU_POD["memory"])
    )


def _on_gpu(task: dsl.PipelineTask, name: str, resumable: bool = True, resources=None) -> dsl.PipelineTask:
    """One GPU and a training pod's CPU and memory; or what `resources` (a `pod_resources` task) read from
    the params at run time (the pretrain pod's)."""
    gpus, cpu, memory = (
        (1, kfp_io.GPU_POD["cpu"], kfp_io.GPU_POD["memory"])
        if resources is None
        else (resources.outputs["gpus"], resources.outputs["cpu"], resources.outputs["memory"])
    )
    task = (
        task.set_display_name(name)
        .set_cpu_request(cpu)
        .set_cpu_limit(cpu)
        .set_memory_request(memory)
        .set_memory_limit(memory)
        .set_accelerator_type("nvidia.com/gpu")
        .set_accelerator_limit(gpus)
    )
    # Training steps resume from their last checkpoint, so a retry after a lost node or an OOM is cheap.
    return task.set_retry(**RETRY) if resumable else task


def _may_submit_trainjob(task: dsl.PipelineTask, data_pvc: str | None) -> dsl.PipelineTask:
    """What the task needs to run its step as a Kubeflow Trainer job (`pretrain.nodes > 1`): the image of
    the nodes, the shared volume (the data PVC) and the secrets its nodes get, by name."""
    task.set_env_variable(kfp_io.TRAINJOB_IMAGE_ENV, CUDA_IMAGE)
    secrets = {MLFLOW_SECRET: list(MLFLOW_SECRET_KEYS), S3_SECRET: list(S3_SECRET_KEYS)}
    task.set_env_variable(kfp_io.TRAINJOB_SECRETS_ENV, json.dumps(secrets))
    if data_pvc:
        task.set_env_variable(kfp_io.SHARED_PVC_ENV, data_pvc)
        task.set_env_variable(kfp_io.SHARED_MOUNT_ENV, DATA_MOUNT_PATH)
    return task


def _with_secrets(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MLflow and S3 credentials as environment variables, for the steps that track runs or log artifacts,
    and the run id from the pod's label (`KFP_RUN_ID`) for their run context."""
    kubernetes.use_field_path_as_env(task, env_name="KFP_RUN_ID", field_path=RUN_ID_LABEL)
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=MLFLOW_SECRET_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS)
    return task


def _ingested(common: dict, parts: int, with_data):
    """The `ingested` artifact: one `ingest` task, or a plan, `parts` pods decoding shards, and a merge."""
    if parts <= 1:
        return with_data(_with_secrets(_on_cpu(ingest(**common), "ingest"))).outputs["ingested"]
    plan_task = with_data(_on_cpu(ingest_plan(parts=parts, **common), "ingest: plan"))
    with dsl.ParallelFor(plan_task.outputs["Output"], parallelism=parts) as part:
        part_task = with_data(
            _on_cpu(
                ingest_part(plan=plan_task.outputs["plan"], part=part, parts=parts, **common), "ingest: part"
            )
        )
    shards = dsl.Collected(part_task.outputs["shards"])
    merge_task = with_data(
        _on_cpu(ingest_merge(plan=plan_task.outputs["plan"], shards=shards, **common), "ingest")
    )
    return merge_task.outputs["ingested"]


def _train_and_compare(common: dict, ingested, validate_task, data_pvc: str | None, with_data):
    """split → pretrain → ParallelFor (task × fold × repeat) { finetune, baseline } → compare, explain,
    register; returns the comparison."""
    params_yaml = common["params_yaml"]
    split_task = _with_secrets(
        _on_cpu(
            split(
                ingested=ingested,
                validation=validate_task.outputs["validation"],
                **common,
            ),
            "split",
        )
    )
    data = {"ingested": ingested, "splits": split_task.outputs["splits"]}
    # pretrain.gpus GPUs in this pod (torchrun), or a light pod without GPU when it submits a TrainJob
    # (pretrain.nodes > 1)
    resources = _on_cpu(pod_resources(params_yaml=params_yaml, step="pretrain"), "pretrain resources")
    pretrain_task = _on_gpu(pretrain(**data, **common), "pretrain (MAE)", resources=resources)
    pretrain_task = _may_submit_trainjob(with_data(_with_secrets(pretrain_task)), data_pvc)
    # Resources read from a task output are no data input: kfp.local orders tasks by their data inputs
    # only and would start pretrain before pod-resources ("task 'pod-resources' not found"). Say it.
    pretrain_task.after(resources)
    targets_task = _on_cpu(targets(params_yaml=params_yaml), "targets (task × fold × repeat)")

    with dsl.ParallelFor(targets_task.output, parallelism=MAX_PARALLEL_TRAINING) as target:
        # Not `target.task_name`: on a loop item that is the name of the task producing the items.
        fold_target = {"task": target.task_type, "fold": target.fold, "repeat": target.repeat}
        finetune_task = with_data(
            _with_secrets(
                _on_gpu(
                    finetune(encoder=pretrain_task.outputs["encoder"], **fold_target, **data, **common),
                    "finetune (ViT)",
                )
            )
        )
        baseline_task = with_data(
            _with_secrets(_on_gpu(baseline(**fold_target, **data, **common), "baseline (DenseNet)"))
        )

    def models() -> dict:  # one Collected per consumer: the compiler refuses a shared one
        return {
            runs_input("finetune"): dsl.Collected(finetune_task.outputs["model"]),
            runs_input("baseline"): dsl.Collected(baseline_task.outputs["model"]),
        }

    compare_task = _with_secrets(
        _on_cpu(compare(**models(), splits=split_task.outputs["splits"], **common), "compare")
    )
    explain_task = _with_secrets(_on_gpu(explain(**data, **models(), **common), "explain (Score-CAM)", False))
    register_task = _with_secrets(
        _on_cpu(
            register(
                comparison=compare_task.outputs["comparison"],
                validation=validate_task.outputs["validation"],
                **models(),
                **common,
            ),
            "register",
        )
    )
    # Models are registered only once their explanations exist (a reviewer looks at both).
    register_task.after(explain_task)
    return compare_task.outputs["comparison"]


def build_pipeline(data_pvc: str | None = None, ingest_parts: int = 1):
    """The pipeline function; `data_pvc` (a PVC name) is mounted at DATA_MOUNT_PATH on the data readers;
    `ingest_parts` > 1 spreads the decoding of the inputs over that many pods (a ParallelFor)."""

    def _with_data(task: dsl.PipelineTask) -> dsl.PipelineTask:
        if data_pvc:
            kubernetes.mount_pvc(task, pvc_name=data_pvc, mount_path=DATA_MOUNT_PATH)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="USF-MAE renal anomaly pipeline: MAE pretraining, per-fold fine-tuning vs DenseNet-169, "
        "statistical comparison, Score-CAM, MLflow registration.",
    )
    def renal_pipeline(params_yaml: str) -> dsl.Dataset:
        common = {"params_yaml": params_yaml}

        ingested = _ingested(common, ingest_parts, _with_data)
        validate_task = _with_secrets(_on_cpu(validate(ingested=ingested, **common), "validate"))
        # validate succeeds with a status and keeps its report (KFP uploads nothing of a failed task); split
        # refuses a failed validation, which stops everything after it.
        return _train_and_compare(common, ingested, validate_task, data_pvc, _with_data)

    return renal_pipeline


renal_pipeline = build_pipeline()
