"""Experiment tracking: one MLflow run per step invocation, nested under one parent run per pipeline run.

Steps call `track_step(params, "finetune", task=..., fold=...)` and log through the `StepTracker` it
yields. With `tracking.enabled: false` the tracker does nothing (no run, no file, no connection), so
steps never branch on tracking.

Steps run as separate processes (DVC stages, KFP pods), so the parent run is found or created by the
pipeline-run id (`renalmae.registry.lineage.pipeline_run_id`): the first process creates it; when
several create it at once, each waits `PARENT_SETTLE_S`, then all keep the earliest-created one and
delete their own (creations further apart than that see each other's parent and never race). Every run
carries the lineage tags (git commit, data version of what it read, DVC inputs version, params hash,
engine, pipeline-run id) and MLflow's own `mlflow.source.git.commit` and `mlflow.user` (the MLflow
account in use, else the OS user); the parent also holds every parameter, flattened (`finetune.epochs`,
...). A step run is opened with `mlflow.start_run(parent_run_id=...)` (MLflow's nesting, shown as a tree in
its UI) and records the ingested data it read as an input dataset (`mlflow.log_input`: name `ingested`,
digest its content hash).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from renalmae.params import Params
from renalmae.registry.connection import (
    DEFAULT_TRACKING_URI,
    actor,
    artifact_location,
    mlflow_client,
    service_errors,
    tracking_uri,
)
from renalmae.registry.lineage import lineage_tags, pipeline_run_id
from renalmae.run_context import RunContext

__all__ = ["DEFAULT_TRACKING_URI", "StepTracker", "track_step", "tracking_uri", "pipeline_parent_run"]

PARENT_ROLE = "pipeline"
MAX_PARAM_LENGTH = 6000
PARENT_SETTLE_S = 1.0


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}`; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


class StepTracker:
    """Logs to one MLflow run; every method is a no-op when tracking is off (`run_id` is None)."""

    def __init__(self, client: Any = None, run_id: str | None = None, uri: str | None = None):
        self.client = client
        self.run_id = run_id
        self.uri = uri

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_params(self, values: dict[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import Param

            params = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in values.items()]
            with service_errors(self.uri):
                for start in range(0, len(params), 100):
                    self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(key, float(value), now, step or 0) for key, value in values.items()]
            with service_errors(self.uri):
                self.client.log_batch(self.run_id, metrics=metrics)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            with service_errors(self.uri):
                self.client.log_batch(
                    self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()]
                )

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            with service_errors(self.uri, "MLflow artifact store"):
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled and Path(directory).is_dir():
            with service_errors(self.uri, "MLflow artifact store"):
                self.client.log_artifacts(self.run_id, str(directory), artifact_path)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException:  # created by a concurrent step in between
        return client.get_experiment_by_name(name).experiment_id


def _parent_runs(client: Any, experiment_id: str, pipeline_id: str) -> list:
    query = f"tags.`renalmae.role` = '{PARENT_ROLE}' and tags.`renalmae.pipeline_run_id` = '{pipeline_id}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=50)
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def pipeline_parent_run(client: Any, experiment_id: str, params: Params, tags: dict[str, str]) -> str:
    """Find or create the parent run of this pipeline run; concurrent creators agree on the earliest."""
    pipeline_id = tags.get("renalmae.pipeline_run_id") or pipeline_run_id(params)
    existing = _parent_runs(client, experiment_id, pipeline_id)
    if existing:
        return existing[0].info.run_id
    created = client.create_run(
        experiment_id,
        run_name=f"pipeline-{pipeline_id}",
        tags={**tags, "renalmae.role": PARENT_ROLE, "renalmae.pipeline_run_id": pipeline_id},
    )
    # Steps started together may each have created a parent: wait until their creations have landed,
    # then all keep the same one (earliest start, then smallest id) and the others delete their own.
    time.sleep(PARENT_SETTLE_S)
    winner = _parent_runs(client, experiment_id, pipeline_id)[0].info.run_id
    if winner != created.info.run_id:
        client.delete_run(created.info.run_id)
        return winner
    StepTracker(client, winner, tracking_uri(params)).log_params(flatten(params.to_dict()))
    return winner


@contextlib.contextmanager
def track_step(
    params: Params, step: str, data_version: str | None = None, context: RunContext | None = None, **tags: Any
) -> Iterator[StepTracker]:
    """Open an MLflow run for one step invocation, nested under the pipeline's parent run.

    `data_version` is the content hash of the ingested table the step read (a lineage tag), `context` what
    the runner knows of the run (engine, pipeline-run id: `renalmae.run_context`); `tags`
    (task, fold, ...) become `renalmae.<key>` tags and name the run.

    Nothing is logged (and no store is touched) when `tracking.enabled` is false. The run is marked
    FAILED if the block raises, FINISHED otherwise; the parent's status follows its last step.
    """
    if not params.tracking.enabled:
        yield StepTracker()
        return
    import mlflow

    uri = tracking_uri(params)
    client = mlflow_client(uri)
    with service_errors(uri):
        experiment_id = _experiment_id(client, params.tracking.experiment, uri)
        lineage = mlflow_tags(lineage_tags(params, data_version=data_version, context=context))
        parent_id = pipeline_parent_run(client, experiment_id, params, lineage)
        run_name = "-".join([step, *[str(value) for value in tags.values()]])
        mlflow.set_tracking_uri(uri)
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            parent_run_id=parent_id,
            tags={
                **lineage,
                "renalmae.role": "step",
                "renalmae.step": step,
                **{f"renalmae.{key}": str(value) for key, value in tags.items()},
            },
        )
    tracker = StepTracker(client, run.info.run_id, uri)
    try:
        if data_version:
            with service_errors(uri):
                mlflow.log_input(ingested_dataset(lineage), context=step)
        yield tracker
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow.end_run(status="FAILED")
            client.set_terminated(parent_id, status="FAILED")
        raise
    with service_errors(uri):
        mlflow.end_run(status="FINISHED")
        client.set_terminated(parent_id, status="FINISHED")


def mlflow_tags(lineage: dict[str, str]) -> dict[str, str]:
    """`lineage` plus MLflow's own tags for the same facts: `mlflow.source.git.commit`, `mlflow.user`."""
    return {**lineage, "mlflow.source.git.commit": lineage["renalmae.git_commit"], "mlflow.user": actor()}


def ingested_dataset(lineage: dict[str, str]):
    """The ingested table a step read, as an MLflow dataset (metadata only: its content hash is the digest,
    the data and DVC versions its source's tags)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    versions = {key: lineage[key] for key in ("renalmae.data_version", "renalmae.dvc_data_version")}
    return MetaDataset(
        CodeDatasetSource(versions), name="ingested", digest=versions["renalmae.data_version"][:36]
    )
