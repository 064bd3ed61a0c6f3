"""The Kubeflow Pipelines DAG: every step as a containerised component, wired exactly like `dvc.yaml`.

    ingest → validate → split → pretrain → ParallelFor (task × fold) { finetune, baseline }
           → Collected → compare → explain → register

The pipeline takes ONE input, `params_yaml` (the text of a params file, same schema as params.yaml);
the (task, fold) pairs it fans out over are read from it by the `targets` component, so the params
stay the single source of truth. Wiring only: no step logic lives here.
"""

from kfp import dsl, kubernetes

from components.baseline.component import baseline
from components.compare.component import compare
from components.explain.component import explain
from components.finetune.component import finetune
from components.ingest.component import ingest
from components.pretrain.component import pretrain
from components.register.component import register
from components.split.component import split
from components.targets.component import targets
from components.validate.component import validate
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
CPU_RESOURCES = {"cpu": "2", "memory": "8Gi"}
GPU_RESOURCES = {"cpu": "8", "memory": "48Gi"}
RETRY = {"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "1800s"}


def _on_cpu(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    return (
        task.set_display_name(name)
        .set_cpu_request(CPU_RESOURCES["cpu"])
        .set_cpu_limit(CPU_RESOURCES["cpu"])
        .set_memory_request(CPU_RESOURCES["memory"])
        .set_memory_limit(CPU_RESOURCES["memory"])
    )


def _on_gpu(task: dsl.PipelineTask, name: str, resumable: bool = True) -> dsl.PipelineTask:
    task = (
        task.set_display_name(name)
        .set_cpu_request(GPU_RESOURCES["cpu"])
        .set_cpu_limit(GPU_RESOURCES["cpu"])
        .set_memory_request(GPU_RESOURCES["memory"])
        .set_memory_limit(GPU_RESOURCES["memory"])
        .set_accelerator_type("nvidia.com/gpu")
        .set_accelerator_limit(1)
    )
    # Training steps resume from their last checkpoint, so a retry after a lost node or an OOM is cheap.
    return task.set_retry(**RETRY) if resumable else task


def _with_secrets(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MLflow and S3 credentials as environment variables, for the steps that track runs or log artifacts."""
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=MLFLOW_SECRET_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env=S3_SECRET_KEYS)
    return task


def build_pipeline(data_pvc: str | None = None):
    """The pipeline function; `data_pvc` (a PVC name) is mounted at DATA_MOUNT_PATH on the data readers."""

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
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        common = {"params_yaml": params_yaml, "pipeline_run_id": run_id}

        ingest_task = _with_data(_with_secrets(_on_cpu(ingest(**common), "ingest")))
        validate_task = _with_secrets(
            _on_cpu(validate(ingested=ingest_task.outputs["ingested"], **common), "validate")
        )
        split_task = _with_secrets(
            _on_cpu(
                split(
                    ingested=ingest_task.outputs["ingested"],
                    validation=validate_task.outputs["validation"],
                    **common,
                ),
                "split",
            )
        )
        data = {"ingested": ingest_task.outputs["ingested"], "splits": split_task.outputs["splits"]}
        pretrain_task = _with_data(_with_secrets(_on_gpu(pretrain(**data, **common), "pretrain (MAE)")))
        targets_task = _on_cpu(targets(params_yaml=params_yaml), "targets (task × fold)")

        with dsl.ParallelFor(targets_task.output, parallelism=MAX_PARALLEL_TRAINING) as target:
            # Not `target.task_name`: on a loop item that is the name of the task producing the items.
            fold_target = {"task": target.task_type, "fold": target.fold}
            finetune_task = _with_data(
                _with_secrets(
                    _on_gpu(
                        finetune(encoder=pretrain_task.outputs["encoder"], **fold_target, **data, **common),
                        "finetune (ViT)",
                    )
                )
            )
            baseline_task = _with_data(
                _with_secrets(_on_gpu(baseline(**fold_target, **data, **common), "baseline (DenseNet)"))
            )

        def models() -> dict:  # one Collected per consumer: the compiler refuses a shared one
            return {
                runs_input("finetune"): dsl.Collected(finetune_task.outputs["model"]),
                runs_input("baseline"): dsl.Collected(baseline_task.outputs["model"]),
            }

        compare_task = _with_secrets(_on_cpu(compare(**models(), **common), "compare"))
        explain_task = _with_secrets(
            _on_gpu(explain(**data, **models(), **common), "explain (Score-CAM)", False)
        )
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

    return renal_pipeline


renal_pipeline = build_pipeline()
