"""Experiment tracking: one MLflow run per step invocation, nested under one parent run per pipeline run.

Steps call `track_step(params, "finetune", task=..., fold=...)` and log through the `StepTracker` it
yields. With `tracking.enabled: false` the tracker does nothing, so steps never branch on tracking.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from renalmae.params import Params

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri(params: Params) -> str:
    """params `tracking.tracking_uri`, else `MLFLOW_TRACKING_URI`, else the embedded sqlite store."""
    return params.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class StepTracker:
    """Logs to one MLflow run; every method is a no-op when tracking is off (`run_id` is None)."""

    def __init__(self, client: Any = None, run_id: str | None = None):
        self.client = client
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_params(self, values: dict[str, Any]) -> None:
        if self.enabled:
            import mlflow

            with _active(self.run_id):
                mlflow.log_params({key: str(value)[:6000] for key, value in values.items()})

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            with _active(self.run_id):
                mlflow.log_metrics({key: float(value) for key, value in values.items()}, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled and Path(directory).is_dir():
            self.client.log_artifacts(self.run_id, str(directory), artifact_path)


@contextlib.contextmanager
def _active(run_id: str) -> Iterator[None]:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        yield


@contextlib.contextmanager
def track_step(params: Params, step: str, **tags: Any) -> Iterator[StepTracker]:
    """Open an MLflow run for one step invocation (nothing when tracking is disabled).

    The run is marked FAILED if the block raises, FINISHED otherwise.
    """
    if not params.tracking.enabled:
        yield StepTracker()
        return
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(params))
    experiment = mlflow.set_experiment(params.tracking.experiment)
    client = MlflowClient()
    run_name = "-".join([step, *[str(value) for value in tags.values()]])
    run = client.create_run(
        experiment.experiment_id,
        run_name=run_name,
        tags={
            "renalmae.step": step,
            "renalmae.params_hash": params.hash(),
            **{f"renalmae.{k}": str(v) for k, v in tags.items()},
        },
    )
    tracker = StepTracker(client, run.info.run_id)
    try:
        yield tracker
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
