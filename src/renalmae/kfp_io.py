"""The KFP side of a step's declaration: a component's interface, and the body every component runs.

`component_interface(step)` derives a component's inputs and outputs from the step's `STEP`: one input
artifact per declared input (a list per producer for run lists), `task` / `fold` for the steps that run
per task and fold, the output artifact, plus `metrics` (the numbers of the artifact's metrics file),
`report` (its HTML page) and, for a trained model, `holdout_confusion`. `components/` turns that into
the component's Python signature; `run_component` is its body: validate the params text, call
`run()` with the artifacts' paths (under torchrun, or as a Kubeflow Trainer job, when the params ask for
several processes or nodes: `renalmae.launch`), then fill those extra outputs.

Kept in the package (not in `components/`) because a component's body runs inside the container,
where only the installed package can be imported. Nothing here imports `kfp`: output artifacts are
used through the two methods KFP gives them (`log_metric`, `log_confusion_matrix`) and their `.path`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from renalmae import launch
from renalmae.artifacts import TrainedRun
from renalmae.errors import ParamsError
from renalmae.params import Params, params_from_dict
from renalmae.steps import Step

ENGINE_ENV = "RENALMAE_ENGINE"
RUN_ID_ENV = "RENALMAE_PIPELINE_RUN_ID"
TRAINJOB_IMAGE_ENV = "RENALMAE_TRAINJOB_IMAGE"
"""Set by the DAG on a step that may run as a Kubeflow Trainer job: the image its nodes run,"""
SHARED_PVC_ENV = "RENALMAE_SHARED_PVC"
"""the ReadWriteMany claim mounted on that task and on every node (unset: none),"""
SHARED_MOUNT_ENV = "RENALMAE_SHARED_MOUNT"
"""where it is mounted,"""
TRAINJOB_SECRETS_ENV = "RENALMAE_TRAINJOB_SECRETS"
"""and `{secret name: [keys]}` (JSON) exported as environment variables on the nodes, by reference."""
METRICS_OUTPUT = "metrics"
REPORT_OUTPUT = "report"
CONFUSION_OUTPUT = "holdout_confusion"


@dataclass(frozen=True)
class Port:
    """One input or output of a component: its name, `input` | `output` | `parameter`, and its type
    (a `kfp.dsl` artifact class name, `list[<artifact>]`, or a Python type name)."""

    name: str
    kind: str
    type: str


def runs_input(producer: str) -> str:
    """Name of the input holding the collected runs of `producer` (`finetune_runs`, ...)."""
    return f"{producer}_runs"


def component_interface(step: Step) -> list[Port]:
    """The inputs and outputs of the KFP component of `step`, in signature order (see the module doc)."""
    ports = [Port("params_yaml", "parameter", "str")]
    for declared in step.inputs:
        artifact = declared.artifact
        if declared.many:
            ports += [Port(runs_input(p), "input", f"list[{artifact.kfp_type}]") for p in declared.producers]
        else:
            ports.append(Port(artifact.kfp_name, "input", artifact.kfp_type))
    if step.per_target:
        ports += [Port("task", "parameter", "str"), Port("fold", "parameter", "int")]
    output = step.output.artifact
    ports.append(Port(output.kfp_name, "output", output.kfp_type))
    if output.metrics_file:
        ports.append(Port(METRICS_OUTPUT, "output", "Metrics"))
    if output.report_file:
        ports.append(Port(REPORT_OUTPUT, "output", "HTML"))
    if output is TrainedRun:
        ports.append(Port(CONFUSION_OUTPUT, "output", "ClassificationMetrics"))
    return ports


def run_component(step_name: str, arguments: dict[str, Any]) -> None:
    """The body of every step component: `arguments` are the component function's `locals()`."""
    from renalmae import steps

    module = steps.load(step_name)
    step: Step = module.STEP
    params = component_params(arguments["params_yaml"], arguments.get("pipeline_run_id", ""))
    inputs: dict[str, Any] = {}
    for declared in step.inputs:
        if declared.many:
            collected = [arguments[runs_input(producer)] for producer in declared.producers]
            inputs[declared.argument] = [run.path for runs in collected for run in runs]
        else:
            inputs[declared.argument] = arguments[declared.artifact.kfp_name].path
    target = {"task": arguments["task"], "fold": arguments["fold"]} if step.per_target else {}
    output = step.output.artifact(arguments[step.output.artifact.kfp_name].path)
    if step.nodes_for(params) > 1:
        run_id = arguments.get("pipeline_run_id", "")
        settings = trainjob_settings(run_id)
        launch.run_as_trainjob(module, params, inputs, target, output.path, settings=settings, run_id=run_id)
    else:
        launch.run_step(module, params, inputs, target, output.path)
    if output.metrics_file:
        log_json_metrics(arguments[METRICS_OUTPUT], output / output.metrics_file)
    if output.report_file:
        copy_html(output / output.report_file, arguments[REPORT_OUTPUT])
    if isinstance(output, TrainedRun):
        log_confusion_matrix(arguments[CONFUSION_OUTPUT], output.path, params)


CPU_POD = {"cpu": "2", "memory": "8Gi"}
"""Requests (= limits) of a pod that runs a light step, or only waits on a TrainJob."""
GPU_POD = {"cpu": "8", "memory": "48Gi"}
"""Requests (= limits) of a pod that trains or runs models, besides its GPUs."""


def pod_resources(params: Params, step_name: str) -> tuple[int, str, str]:
    """(GPUs, CPU, memory) the pod of `step_name` asks for: its processes per node with a training pod's
    CPU and memory, or no GPU and a light pod's when it submits a TrainJob (its nodes do the work)."""
    from renalmae import steps

    step = steps.declaration(step_name)  # the step module's imports (torch) are not needed to read it
    if step.nodes_for(params) > 1:
        return 0, CPU_POD["cpu"], CPU_POD["memory"]
    return step.processes_for(params), GPU_POD["cpu"], GPU_POD["memory"]


def trainjob_settings(pipeline_run_id: str = "") -> launch.TrainJobSettings:
    """The TrainJob settings the DAG gave this task (the `RENALMAE_TRAINJOB_*` / `RENALMAE_SHARED_*`
    variables): image, shared volume, and the environment of its nodes (secrets by reference, the engine
    and run id so their tracking joins this pipeline run)."""
    env = [{"name": ENGINE_ENV, "value": "kfp"}]
    if pipeline_run_id:
        env.append({"name": RUN_ID_ENV, "value": pipeline_run_id})
    for secret, keys in json.loads(os.environ.get(TRAINJOB_SECRETS_ENV, "{}")).items():
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in keys]
    return launch.TrainJobSettings(
        image=os.environ.get(TRAINJOB_IMAGE_ENV, ""),
        volume_claim=os.environ.get(SHARED_PVC_ENV) or None,
        mount_path=os.environ.get(SHARED_MOUNT_ENV, ""),
        env=env,
    )


def component_params(params_yaml: str, pipeline_run_id: str = "") -> Params:
    """Validate the params text a component receives and tell the tracking code it runs under KFP.

    `pipeline_run_id` is the KFP run id (`dsl.PIPELINE_JOB_ID_PLACEHOLDER`); it is exported as
    `RENALMAE_PIPELINE_RUN_ID` with `RENALMAE_ENGINE=kfp`, which the MLflow tracking module reads to
    group the steps of one pipeline run.
    """
    try:
        raw = yaml.safe_load(params_yaml) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"params_yaml: not valid YAML ({error}); pass the text of a params file") from None
    params = params_from_dict(raw, source="params_yaml")
    os.environ[ENGINE_ENV] = "kfp"
    if pipeline_run_id:
        os.environ[RUN_ID_ENV] = pipeline_run_id
    return params


def training_targets(params: Params) -> list[dict[str, Any]]:
    """One `{"task_type", "fold"}` item per (task, fold) pair: what the pipeline fans out over."""
    return [
        {"task_type": task, "fold": fold} for task in params.finetune.tasks for fold in params.split.folds
    ]


def numeric_leaves(payload: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested JSON value, keyed by its dotted path (booleans excluded)."""
    if isinstance(payload, bool):
        return {}
    if isinstance(payload, int | float):
        return {prefix: float(payload)} if math.isfinite(payload) else {}
    if isinstance(payload, dict):
        items = payload.items()
    elif isinstance(payload, list):
        items = enumerate(payload)
    else:
        return {}
    leaves: dict[str, float] = {}
    for key, value in items:
        leaves.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def log_json_metrics(metrics: Any, json_path: str | os.PathLike, limit: int = 100) -> dict[str, float]:
    """Log the numbers of a step's summary JSON into a KFP `Metrics` artifact (the first `limit`).

    Returns what was logged; logs nothing when the file does not exist (a step may not write one).
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        return {}
    leaves = dict(list(numeric_leaves(json.loads(json_path.read_text())).items())[:limit])
    for key, value in leaves.items():
        metrics.log_metric(key, value)
    return leaves


def log_confusion_matrix(
    classification_metrics: Any, run_dir: str | os.PathLike, params: Params, split: str = "test"
) -> None:
    """Log the holdout confusion matrix of one trained fold model at the operating point `compare` uses
    for it (`renalmae.evaluate.comparison.fold_rule`): binary at the threshold chosen on its own
    validation fold (`evaluate.threshold`), multiclass at the prior-corrected argmax."""
    from sklearn.metrics import confusion_matrix

    from renalmae.evaluate.comparison import fold_rule
    from renalmae.evaluate.runs import load_run

    run = load_run(Path(run_dir))
    predicted = fold_rule(run, params.evaluate).predict(run.probabilities(split))
    labels = run.split(split)["y_true"].to_numpy()
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(run.classes))))
    classification_metrics.log_confusion_matrix(run.classes, matrix.tolist())


def copy_html(page: str | os.PathLike, html_artifact: Any) -> Path | None:
    """Copy a step's HTML page to a KFP `HTML` artifact (nothing when the step wrote none)."""
    page = Path(page)
    if not page.is_file():
        return None
    target = Path(html_artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(page, target)
    return target
