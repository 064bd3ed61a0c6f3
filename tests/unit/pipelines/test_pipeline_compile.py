"""The compiled Kubeflow pipeline: up to date with its source, and holding the DAG a cluster needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPILED = REPO_ROOT / "pipelines" / "renal_pipeline.yaml"
STEPS = ["ingest", "validate", "split", "pretrain", "finetune", "baseline", "compare", "explain", "register"]
GPU_STEPS = ["pretrain", "finetune", "baseline", "explain"]


def compile_to(output: Path, data_pvc: str | None = None, ingest_parts: int = 1) -> list[dict]:
    """`python -m pipelines compile` in a fresh process, as a user runs it; return the YAML documents.

    (Not in this process: kfp walks the call stack's modules in every resource setter, which takes ~30 s
    in a test worker that has loaded torch, against ~4 s for the whole command.)
    """
    command = [sys.executable, "-m", "pipelines", "compile", "--output", str(output)]
    command += ["--ingest-parts", str(ingest_parts), *(["--data-pvc", data_pvc] if data_pvc else [])]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    return list(yaml.safe_load_all(output.read_text()))


def dag_tasks(spec: dict) -> dict:
    """Every task of the pipeline, wherever it sits (the root, the validation gate's branch, a loop)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def loop_of(spec: dict, task: str) -> str:
    """The name of the ParallelFor component holding `task`."""
    (name,) = [name for name, c in spec["components"].items() if task in c.get("dag", {}).get("tasks", {})]
    return name.removeprefix("comp-")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    return compile_to(tmp_path_factory.mktemp("compiled") / "renal_pipeline.yaml")


def test_committed_pipeline_yaml_is_up_to_date(compiled):
    if any(key.startswith("RENALMAE_IMAGE") for key in os.environ):
        pytest.skip("RENALMAE_IMAGE* is set, so image names differ from the committed defaults")
    assert COMPILED.is_file(), "pipelines/renal_pipeline.yaml is missing: run `python -m pipelines compile`"
    assert list(yaml.safe_load_all(COMPILED.read_text())) == compiled, (
        "pipelines/renal_pipeline.yaml is out of date with pipelines/ and components/: "
        "run `python -m pipelines compile` and commit the result"
    )


def test_compiled_pipeline_loads_with_kfp():
    from kfp import components

    pipeline = components.load_component_from_file(str(COMPILED))

    assert pipeline.name == "renalmae"
    assert list(pipeline.component_spec.inputs) == ["params_yaml"]


def test_every_step_is_a_task_of_the_pipeline(compiled):
    spec = compiled[0]
    executors = spec["deploymentSpec"]["executors"]
    for step in STEPS:
        assert f"exec-{step}" in executors, step
        command = " ".join(executors[f"exec-{step}"]["container"]["command"])
        body = (
            "run_validation(params_yaml"
            if step == "validate"
            else f'run_component(\n        "{step}", params_yaml'
        )
        assert body in command or f'run_component("{step}", params_yaml' in command, step


def test_no_task_takes_a_per_run_input_and_each_reads_the_run_id_from_its_pod_label(compiled):
    """A per-run input (the run id) would make every KFP cache key differ from run to run."""
    text = COMPILED.read_text()
    assert "PIPELINE_JOB_ID" not in text and "pipeline_run_id" not in text
    platform = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in STEPS:
        field = platform[f"exec-{step}"]["fieldPathAsEnv"]
        assert {"name": "KFP_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"} in field, step


def test_finetune_and_baseline_fan_out_over_task_fold_and_repeat(compiled):
    spec = compiled[0]
    loop_name = loop_of(spec, "finetune")
    loop = dag_tasks(spec)[loop_name]
    loop_tasks = spec["components"][f"comp-{loop_name}"]["dag"]["tasks"]

    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--targets-Output"
    assert set(loop_tasks) == {"finetune", "baseline"}
    target = loop_tasks["finetune"]["inputs"]["parameters"]
    assert {"task", "fold", "repeat"} <= set(target)
    collected = dag_tasks(spec)["compare"]["inputs"]["artifacts"]
    assert collected["finetune_runs"]["taskOutputArtifact"]["producerTask"] == loop_name
    assert collected["baseline_runs"]["taskOutputArtifact"]["producerTask"] == loop_name


def test_model_steps_request_gpus_and_others_none(compiled):
    executors = compiled[0]["deploymentSpec"]["executors"]
    for step in STEPS:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        assert resources["resourceMemoryLimit"] and resources["resourceCpuLimit"], step
        if step in GPU_STEPS:
            accelerator = resources["accelerator"]
            # pretrain asks for what pod_resources reads from the params (pretrain.gpus, 0 with a TrainJob)
            count = (
                "{{$.inputs.parameters['pipelinechannel--pod-resources-gpus']}}"
                if step == "pretrain"
                else "1"
            )
            assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", count), (
                step
            )
            assert executors[f"exec-{step}"]["container"]["image"].endswith("-cuda"), step
        else:
            assert "accelerator" not in resources, step
            assert executors[f"exec-{step}"]["container"]["image"].endswith("-cpu"), step


def test_training_steps_retry_with_backoff(compiled):
    spec = compiled[0]
    tasks = dag_tasks(spec)
    for step in ("pretrain", "finetune", "baseline"):
        policy = tasks[step]["retryPolicy"]
        assert policy["maxRetryCount"] >= 1 and policy["backoffDuration"], step
    assert "retryPolicy" not in tasks["register"]


def test_tracking_steps_get_mlflow_and_s3_secrets_as_env(compiled):
    platform = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    register_env = {
        item["envVar"] for secret in platform["exec-register"]["secretAsEnv"] for item in secret["keyToEnv"]
    }
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= register_env
    assert "exec-targets" not in platform


def test_the_pretrain_pod_gets_its_resources_from_the_params_and_the_trainjob_settings(tmp_path, compiled):
    tasks = dag_tasks(compiled[0])
    for output in ("gpus", "cpu", "memory"):
        read = tasks["pretrain"]["inputs"]["parameters"][f"pipelinechannel--pod-resources-{output}"]
        assert read["taskOutputParameter"] == {"producerTask": "pod-resources", "outputParameterKey": output}
    assert tasks["pod-resources"]["inputs"]["parameters"]["step"]["runtimeValue"]["constant"] == "pretrain"
    resources = compiled[0]["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    read = "{{$.inputs.parameters['pipelinechannel--pod-resources-%s']}}"
    assert (resources["resourceCpuRequest"], resources["resourceMemoryLimit"]) == (
        read % "cpu",
        read % "memory",
    )

    def settings(documents: list[dict]) -> dict[str, str]:
        container = documents[0]["deploymentSpec"]["executors"]["exec-pretrain"]["container"]
        return {item["name"]: item["value"] for item in container.get("env", [])}

    without_volume = settings(compiled)
    assert without_volume["RENALMAE_TRAINJOB_IMAGE"].endswith("-cuda")
    assert "renalmae-mlflow" in without_volume["RENALMAE_TRAINJOB_SECRETS"]
    assert "RENALMAE_SHARED_PVC" not in without_volume, "no volume: a TrainJob is refused with the fix"
    with_volume = settings(compile_to(tmp_path / "with_pvc.yaml", data_pvc="renal-data"))
    assert (with_volume["RENALMAE_SHARED_PVC"], with_volume["RENALMAE_SHARED_MOUNT"]) == (
        "renal-data", "/mnt/renalmae"
    )  # fmt: skip


def test_ingest_parts_spread_the_decoding_over_a_parallel_for_and_merge(tmp_path):
    spec = compile_to(tmp_path / "parts.yaml", data_pvc="renal-data", ingest_parts=3)
    tasks = spec[0]["root"]["dag"]["tasks"]
    assert "ingest" not in tasks and {"ingest-plan", "ingest-merge"} <= set(tasks)
    components = spec[0]["components"]
    (loop,) = [
        name for name, task in tasks.items()
        if "parameterIterator" in task and "ingest-part" in components[f"comp-{name}"]["dag"]["tasks"]
    ]  # fmt: skip
    assert tasks[loop]["iteratorPolicy"]["parallelismLimit"] == 3
    validate_input = tasks["validate"]["inputs"]["artifacts"]["ingested"]["taskOutputArtifact"]
    assert validate_input["producerTask"] == "ingest-merge"
    mounts = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(mounts[f"exec-ingest-{name}"]["pvcMount"] for name in ("plan", "part", "merge"))


def test_data_pvc_is_mounted_only_when_named(tmp_path, compiled):
    with_pvc = compile_to(tmp_path / "with_pvc.yaml", data_pvc="renal-data")
    platform = with_pvc[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    assert platform["exec-ingest"]["pvcMount"][0]["mountPath"] == "/mnt/renalmae"
    assert "pvcMount" not in platform["exec-compare"]
    assert all(
        "pvcMount" not in executor
        for executor in compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    )


def test_image_tag_comes_from_the_environment(tmp_path):
    """CI sets the tag to the git sha; image names are read when components are imported (fresh process)."""
    env = {**os.environ, "RENALMAE_IMAGE": "registry.example.org/renalmae", "RENALMAE_IMAGE_TAG": "abc123"}
    output = tmp_path / "tagged.yaml"
    command = [sys.executable, "-m", "pipelines", "compile", "--output", str(output)]
    # Compiling reads the steps' declarations, never their modules (torch, MLflow): seconds.
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)

    executors = next(yaml.safe_load_all(output.read_text()))["deploymentSpec"]["executors"]
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {"registry.example.org/renalmae:abc123-cpu", "registry.example.org/renalmae:abc123-cuda"}


def test_ingest_parts_below_one_is_refused_with_the_option_named(tmp_path, capsys):
    from pipelines.__main__ import main

    code = main(["compile", "--output", str(tmp_path / "p.yaml"), "--ingest-parts", "0"])

    assert code != 0
    assert "--ingest-parts must be at least 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()
