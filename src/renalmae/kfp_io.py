"""The KFP side of the pipeline declaration: a component's interface, and the body every component runs.

`component_interface(step)` says what the component of a step takes and gives, from its declaration in
`renalmae.pipeline`: one input artifact per declared input (a list per producer for run lists), `task` /
`fold` / `repeat` for a training step, the output artifact, plus `metrics` (the headline numbers of the
artifact's metrics file), `report` (its HTML page), for a trained model `holdout_confusion`, and for the
validation report its status `passed` | `failed` (`run_validation`). The
components in `components/` are written out by hand and a test holds each to this. `run_component` is
their body: validate the params text, call the step on the artifacts' paths (under torchrun, or as a
Kubeflow Trainer job, when the params ask for several processes or nodes: `renalmae.launch`), then fill
those extra outputs.

Kept in the package (not in `components/`) because a component's body runs inside the container,
where only the installed package can be imported. Nothing here imports `kfp`: output artifacts are
used through the two methods KFP gives them (`log_metric`, `log_confusion_matrix`) and their `.path`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

from renalmae import launch, pipeline, trainjob
from renalmae.artifacts import ROLES, Comparison, TrainedRun, ValidationReport
from renalmae.errors import DataValidationError, ParamsError
from renalmae.params import Params, params_from_dict
from renalmae.pipeline import Step
from renalmae.run_context import RunContext

RUN_ID_ENV = "KFP_RUN_ID"
"""The KFP run id, from the pod's `pipeline/runid` label (the DAG maps it with the downward API)."""
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
TARGET_PARAMETERS = (("task", "str"), ("fold", "int"), ("repeat", "int"))


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
    if step.fans_out:
        ports += [Port(name, "parameter", kind) for name, kind in TARGET_PARAMETERS]
    output = step.output.artifact
    ports.append(Port(output.kfp_name, "output", output.kfp_type))
    if output.metrics_file:
        ports.append(Port(METRICS_OUTPUT, "output", "Metrics"))
    if output.report_file:
        ports.append(Port(REPORT_OUTPUT, "output", "HTML"))
    if output is TrainedRun:
        ports.append(Port(CONFUSION_OUTPUT, "output", "ClassificationMetrics"))
    if output is Comparison:
        ports += [Port(f"{role}_roc", "output", "ClassificationMetrics") for role in ROLES]
    if output is ValidationReport:  # the status that gates the DAG (`run_validation`)
        ports.append(Port("Output", "output", "str"))
    return ports


def run_component(
    step_name: str,
    params_yaml: str,
    inputs: dict[str, Any],
    output: Any,
    target: dict[str, Any] | None = None,
    metrics: Any = None,
    report: Any = None,
    holdout_confusion: Any = None,
    roc_curves: dict[str, Any] | None = None,
) -> Path:
    """The body of every step component: run step `step_name` on the paths of the `inputs` artifacts (by
    the step's argument names; a list for collected runs) into the `output` artifact's path, then log its
    headline metrics, copy its HTML page and log a trained model's holdout confusion matrix."""
    step = pipeline.step(step_name)
    params = component_params(params_yaml)
    arguments = {
        name: [item.path for item in value] if isinstance(value, list) else value.path
        for name, value in inputs.items()
    }
    out = step.output.artifact(output.path)
    context = run_context(step_name)
    if step.nodes_for(params) > 1:
        trainjob.run_as_trainjob(
            pipeline.load(step_name), params, arguments, target or {}, out.path,
            settings=trainjob_settings(context), run_id=context.pipeline_run_id,
        )  # fmt: skip
    else:
        launch.run_step(pipeline.load(step_name), params, arguments, target or {}, out.path, context)
    if step.fans_out:  # one run: its folder below the output
        out = step.output.artifact(pipeline.Target(**target).path(out.path))
    if metrics is not None:
        log_json_metrics(metrics, out / out.metrics_file, out.headline)
    if report is not None:
        copy_html(out / out.report_file, report)
    if holdout_confusion is not None:
        log_confusion_matrix(holdout_confusion, out.path, params)
    if roc_curves:
        log_roc_curves(roc_curves, out.path, params)
    return out.path


PASSED, FAILED = "passed", "failed"


def run_validation(params_yaml: str, ingested: Any, validation: Any, metrics: Any, report: Any) -> str:
    """The body of the `validate` component: `passed`, or `failed` with the report still in its outputs.

    KFP keeps nothing of a failed task, so data that fails validation is an outcome here, not an error:
    the report (HTML page, numbers, the failed rules on stderr) is uploaded and the status shown; the
    `split` task then refuses the failed validation, which stops the run before any training."""
    try:
        run_component(
            "validate", params_yaml, {"ingest_dir": ingested}, validation, metrics=metrics, report=report
        )
    except DataValidationError as error:
        print(f"validate: {error}", file=sys.stderr)
        out = ValidationReport(validation.path)
        log_json_metrics(metrics, out / out.metrics_file)
        copy_html(out / out.report_file, report)
        return FAILED
    return PASSED


CPU_POD = {"cpu": "2", "memory": "8Gi"}
"""Requests (= limits) of a pod that runs a light step, or only waits on a TrainJob."""
GPU_POD = {"cpu": "8", "memory": "48Gi"}
"""Requests (= limits) of a pod that trains or runs models, besides its GPUs."""


def pod_resources(params: Params, step_name: str) -> tuple[int, str, str]:
    """(GPUs, CPU, memory) the pod of `step_name` asks for: its processes per node with a training pod's
    CPU and memory, or no GPU and a light pod's when it submits a TrainJob (its nodes do the work)."""
    step = pipeline.step(step_name)
    if step.nodes_for(params) > 1:
        return 0, CPU_POD["cpu"], CPU_POD["memory"]
    return step.processes_for(params), GPU_POD["cpu"], GPU_POD["memory"]


def run_context(step_name: str, environ: Mapping[str, str] = os.environ) -> RunContext:
    """The run context of a step in a KFP pod: engine `kfp`, the run id of its pod's label (none under
    kfp.local: lineage derives one), and the commit its image was built from where the image says."""
    return RunContext(
        engine="kfp",
        pipeline_run_id=environ.get(RUN_ID_ENV, ""),
        stage=step_name,
        git_commit=environ.get(launch.COMMIT_ENV, ""),
    )


def trainjob_settings(context: RunContext) -> trainjob.TrainJobSettings:
    """The TrainJob settings the DAG gave this task (the `RENALMAE_TRAINJOB_*` / `RENALMAE_SHARED_*`
    variables): image, shared volume, and the environment of its nodes (secrets by reference, and the run
    context so that their tracking joins this pipeline run)."""
    env = [{"name": name, "value": value} for name, value in launch.context_environment(context).items()]
    for secret, keys in json.loads(os.environ.get(TRAINJOB_SECRETS_ENV, "{}")).items():
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in keys]
    return trainjob.TrainJobSettings(
        image=os.environ.get(TRAINJOB_IMAGE_ENV, ""),
        volume_claim=os.environ.get(SHARED_PVC_ENV) or None,
        mount_path=os.environ.get(SHARED_MOUNT_ENV, ""),
        env=env,
    )


def component_params(params_yaml: str) -> Params:
    """Validate the params text a component receives (`ParamsError` naming the problem)."""
    try:
        raw = yaml.safe_load(params_yaml) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"params_yaml: not valid YAML ({error}); pass the text of a params file") from None
    return params_from_dict(raw, source="params_yaml")


def training_targets(params: Params) -> list[dict[str, Any]]:
    """One `{"task_type", "fold", "repeat"}` item per training run: what the pipeline fans out over."""
    return [
        {"task_type": target.task, "fold": target.fold, "repeat": target.repeat}
        for target in pipeline.targets(params)
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


def log_json_metrics(
    metrics: Any, json_path: str | os.PathLike, headline: tuple[str, ...] = (), limit: int = 100
) -> dict[str, float]:
    """Log the numbers of a step's summary JSON into a KFP `Metrics` artifact: those whose dotted names
    match a `headline` pattern (all when there is none), at most `limit` (the UI shows no more).

    Returns what was logged; logs nothing when the file does not exist (a step may not write one).
    """
    json_path = Path(json_path)
    if not json_path.is_file():
        return {}
    leaves = numeric_leaves(json.loads(json_path.read_text()))
    if headline:
        leaves = {key: value for key, value in leaves.items() if any(fnmatch(key, p) for p in headline)}
    leaves = dict(list(leaves.items())[:limit])
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


def log_roc_curves(curves: dict[str, Any], comparison_dir: str | os.PathLike, params: Params) -> None:
    """Log the holdout ROC curve of each model's fold ensemble on the binary task into a KFP
    `ClassificationMetrics` artifact per role (`curves`: role → artifact), from compare's
    ensemble_predictions.parquet; nothing for a role without such a curve (no binary task, one class).
    The first threshold, sklearn's +inf ("nothing positive"), is logged as 1.0: KFP takes finite numbers."""
    import pandas as pd
    from sklearn.metrics import roc_curve

    table = pd.read_parquet(Path(comparison_dir) / Comparison.ENSEMBLE_PREDICTIONS)
    names = pipeline.model_names(params)
    for role, artifact in curves.items():
        rows = table[
            (table["task"] == "binary") & (table["split"] == "test") & (table["model"] == names[role])
        ]
        if rows["y_true"].nunique() < 2:
            continue
        probabilities = rows.filter(like="prob_").dropna(axis=1, how="all")  # [negative, anomaly]
        fpr, tpr, thresholds = roc_curve(rows["y_true"], probabilities.iloc[:, 1])
        artifact.log_roc_curve(fpr.tolist(), tpr.tolist(), [min(float(t), 1.0) for t in thresholds])


def copy_html(page: str | os.PathLike, html_artifact: Any) -> Path | None:
    """Copy a step's HTML page to a KFP `HTML` artifact (nothing when the step wrote none)."""
    page = Path(page)
    if not page.is_file():
        return None
    target = Path(html_artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(page, target)
    return target
