"""Glue for the KFP component wrappers: read the params text, mark the engine, fill KFP output artifacts.

Kept in the package (not in `components/`) because a component's body runs inside the container,
where only the installed package can be imported. Nothing here imports `kfp`: output artifacts are
used through the two methods KFP gives them (`log_metric`, `log_confusion_matrix`) and their `.path`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from renalmae.errors import ParamsError
from renalmae.params import Params, params_from_dict

ENGINE_ENV = "RENALMAE_ENGINE"
RUN_ID_ENV = "RENALMAE_PIPELINE_RUN_ID"


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
    classification_metrics: Any, run_dir: str | os.PathLike, split: str = "test"
) -> None:
    """Log the holdout confusion matrix of one trained model (arg-max of its predicted probabilities)."""
    from sklearn.metrics import confusion_matrix

    from renalmae.data.predictions import PREDICTIONS_FILE, RUN_FILE, probability_columns, read_predictions

    run_dir = Path(run_dir)
    classes = list(json.loads((run_dir / RUN_FILE).read_text())["classes"])
    frame = read_predictions(run_dir / PREDICTIONS_FILE, classes)
    frame = frame[frame["split"] == split]
    predicted = frame[probability_columns(classes)].to_numpy().argmax(axis=1)
    matrix = confusion_matrix(frame["y_true"].to_numpy(), predicted, labels=list(range(len(classes))))
    classification_metrics.log_confusion_matrix(classes, matrix.tolist())


def copy_html(source_dir: str | os.PathLike, html_artifact: Any) -> Path | None:
    """Copy a step's HTML report (`index.html`, else the first `*.html`) to a KFP `HTML` artifact."""
    source_dir = Path(source_dir)
    pages = sorted(
        source_dir.rglob("*.html"), key=lambda page: (page.name != "index.html", len(page.parts), page)
    )
    if not pages:
        return None
    target = Path(html_artifact.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pages[0], target)
    return target
