"""Model versions: log a fold ensemble as an MLflow model, verify its upload, register it, tag it.

The model is logged with MLflow 3's `log_model(name=...)` as a model-from-code (a LoggedModel of the
step's run): its code is `served_model.py` plus a copy of the `renalmae` package (`code_paths`), its
weights the bundle's safetensors, its `model_config` a random `model_key` that is also tagged on the
version (`renalmae.model_key`), so a loaded model can find its versions and refuse to serve an ungated
champion (`renalmae.registry.audit`). No pickle is written.

Order matters: upload the model and its evaluation set, read the upload back and compare it file by
file with what was sent, only then create the model version with its tags (linked to the LoggedModel),
and only then move the `challenger` alias, recorded as a move (`renalmae.registry.audit.record_move`).
A failure at any point (artifact store down, server gone) raises `ServiceError` and leaves every alias
where it was, so no alias ever points at a version whose files are missing.

The evaluation set stored with every version (`evaluation/holdout.parquet` in the model's run: id,
y_true, prob_<class>) is the holdout ensemble prediction; `promote` compares a challenger and the
champion on it, image by image (a non-inferiority test), and counts the decisions taken on it by its
content hash (`renalmae.evaluation_set_sha256`: the image ids and labels, not the predictions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from renalmae.data.predictions import probability_columns
from renalmae.errors import DataError, ServiceError
from renalmae.evaluate.decision import DecisionRule
from renalmae.registry.audit import (
    CHALLENGER,
    MODEL_KEY_TAG,
    Move,
    record_move,
    recorded_move,
    utc_now,
)
from renalmae.registry.connection import actor, service_errors
from renalmae.registry.pyfunc import ENSEMBLE_ARTIFACT, MODEL_KEY, FoldEnsemble, pinned_requirements

EVALUATION_ARTIFACT = "evaluation/holdout.parquet"
EVALUATION_SET_TAG = "renalmae.evaluation_set_sha256"
MODEL_ARTIFACT = "model"
SERVED_MODEL_FILE = Path(__file__).with_name("served_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RegisteredVersion:
    """What `register` reports per model family and task (models/registered.json)."""

    name: str
    version: str
    run_id: str
    model_uri: str
    alias_uri: str
    source: str


def evaluation_frame(
    ids: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    rule: DecisionRule | None = None,
    groups: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The evaluation set stored with a version: id, group (patient / series: the unit the gate's test
    counts; the id itself when `groups` does not name one), y_true, prob_<class>, y_pred at `rule`."""
    frame = pd.DataFrame(probabilities, columns=probability_columns(classes))
    frame.insert(0, "y_true", np.asarray(y_true, dtype=np.int64))
    ids = np.asarray(ids).astype(str)
    frame.insert(0, "group", [str((groups or {}).get(image_id, image_id)) for image_id in ids])
    frame.insert(0, "id", ids)
    if rule is not None:
        frame.insert(3, "y_pred", rule.predict(np.asarray(probabilities)))
    return frame


def operating_point(report: dict[str, Any], task: str, model: str) -> dict[str, Any]:
    """compare's decision rule for `model` on `task` and the fold ensemble's metrics at it on each set.

    {"rule": DecisionRule, "sets": {"test": metrics, "external": metrics}}. Raises DataError when the
    compare report lacks them: a version is tagged at the one operating point compare chose, never
    re-measured at another threshold.
    """
    section = report.get(task) or {}
    rules = section.get("decision_rules") or {}
    if model not in rules:
        raise DataError(
            f"the compare report has no operating point for {model} on task {task}; register tags each "
            "version with the metrics at the threshold compare chose: run `renalmae compare` on the same "
            "runs first"
        )
    return {
        "rule": DecisionRule.from_dict(rules[model]),
        "sets": {name: section["sets"][name]["ensemble"][model] for name in section["evaluation_sets"]},
    }


def evaluation_set_sha256(evaluation: pd.DataFrame) -> str:
    """sha256 of an evaluation set's content: its (id, y_true) pairs in id order, predictions excluded."""
    pairs = evaluation[["id", "y_true"]].astype({"id": str, "y_true": np.int64}).sort_values("id")
    lines = "\n".join(f"{image_id},{label}" for image_id, label in pairs.itertuples(index=False))
    return hashlib.sha256(lines.encode()).hexdigest()


def _remote_files(client: Any, run_id: str, path: str) -> dict[str, int]:
    """Relative path → size of every artifact under `path` of a run, read back from the store."""
    files: dict[str, int] = {}
    pending = [path]
    while pending:
        for entry in client.list_artifacts(run_id, pending.pop()):
            if entry.is_dir:
                pending.append(entry.path)
            else:
                files[entry.path] = entry.file_size or 0
    return files


def _local_files(directory: Path, prefix: str) -> dict[str, int]:
    return {
        f"{prefix}/{path.relative_to(directory).as_posix()}": path.stat().st_size
        for path in directory.rglob("*")
        if path.is_file()
    }


def upload_and_verify(client: Any, uri: str, run_id: str, local_dir: Path, artifact_path: str) -> None:
    """Upload `local_dir` as `artifact_path` of the run and check every file arrived with its size."""
    with service_errors(uri, "MLflow artifact store"):
        client.log_artifacts(run_id, str(local_dir), artifact_path)
        remote = _remote_files(client, run_id, artifact_path)
    expected = _local_files(local_dir, artifact_path)
    missing = {path: size for path, size in expected.items() if remote.get(path) != size}
    if missing:
        raise ServiceError(
            f"the artifact store at {uri} did not keep {len(missing)} uploaded file(s) of run {run_id} "
            f"(e.g. {sorted(missing)[:3]}); no model version was created; check the S3 endpoint and retry"
        )


def ensemble_signature(classes: list[str]):
    """Input: uint8 images [N, H, W] of any size; output: one float column `prob_<class>` per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
        outputs=Schema([ColSpec("double", f"prob_{name}") for name in classes]),
    )


def ensemble_model_arguments(bundle_dir: Path, model_key: str) -> dict[str, Any]:
    """The arguments of `mlflow.pyfunc.save_model` / `log_model` for a fold-ensemble bundle: the model
    file and package copy (models-from-code), the weights, signature, input example and requirements."""
    ensemble = FoldEnsemble(bundle_dir)
    size = int(ensemble.info["image_size"])
    return {
        "python_model": str(SERVED_MODEL_FILE),
        "code_paths": [str(PACKAGE_DIR)],
        "artifacts": {ENSEMBLE_ARTIFACT: str(bundle_dir)},
        "model_config": {MODEL_KEY: model_key},
        "signature": ensemble_signature(ensemble.classes),
        "input_example": np.random.default_rng(0).integers(0, 256, size=(2, size, size), dtype=np.uint8),
        "pip_requirements": pinned_requirements(),
    }


def save_ensemble_model(bundle_dir: Path, out_dir: Path, model_key: str | None = None) -> None:
    """Write the pyfunc model directory of a bundle (no registry involved; for `mlflow models predict`)."""
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(path=str(out_dir), **ensemble_model_arguments(bundle_dir, model_key or ""))


def _verify_logged_model(client: Any, uri: str, model_id: str, bundle_dir: Path) -> None:
    """Check every bundled file reached the LoggedModel's `artifacts/<folder>/` with its size."""
    with service_errors(uri, "MLflow artifact store"):
        remote: dict[str, int] = {}
        pending = ["artifacts"]
        while pending:
            for entry in client.list_logged_model_artifacts(model_id, pending.pop()):
                if entry.is_dir:
                    pending.append(entry.path)
                else:
                    remote[entry.path.split("/", 2)[-1]] = entry.file_size or 0
    expected = {path.relative_to(bundle_dir).as_posix(): path.stat().st_size
                for path in bundle_dir.rglob("*") if path.is_file()}  # fmt: skip
    missing = {path: size for path, size in expected.items() if remote.get(path) != size}
    if missing:
        raise ServiceError(
            f"the artifact store at {uri} did not keep {len(missing)} file(s) of model {model_id} "
            f"(e.g. {sorted(missing)[:3]}); no model version was created; check the S3 endpoint and retry"
        )


def log_ensemble_model(client: Any, uri: str, run_id: str, bundle_dir: Path, model_key: str) -> Any:
    """Log the bundle as a LoggedModel of run `run_id` in the store at `uri` and verify the upload;
    return MLflow's `ModelInfo`."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    arguments = ensemble_model_arguments(bundle_dir, model_key)
    active = mlflow.active_run()  # the step's run, opened by `track_step`, or resumed here
    resumed = (
        contextlib.nullcontext()
        if active and active.info.run_id == run_id
        else mlflow.start_run(run_id=run_id)
    )
    with service_errors(uri, "MLflow artifact store"), resumed:
        info = mlflow.pyfunc.log_model(name=MODEL_ARTIFACT, **arguments)
    _verify_logged_model(client, uri, info.model_id, bundle_dir)
    return info


def register_version(
    client: Any,
    uri: str,
    name: str,
    run_id: str,
    bundle_dir: Path,
    evaluation: pd.DataFrame,
    tags: dict[str, Any],
) -> RegisteredVersion:
    """Upload the model and evaluation set to the run, verify, create version `name`, tag it, alias it."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="renalmae-register-") as staging:
        evaluation_dir = Path(staging) / "evaluation"
        evaluation_dir.mkdir()
        evaluation.to_parquet(evaluation_dir / Path(EVALUATION_ARTIFACT).name, index=False)
        upload_and_verify(client, uri, run_id, evaluation_dir, "evaluation")
    model_key = uuid.uuid4().hex
    info = log_ensemble_model(client, uri, run_id, bundle_dir, model_key)
    with service_errors(uri):
        try:
            client.create_registered_model(name, description="renalmae fold ensemble (mean probability)")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {**tags, EVALUATION_SET_TAG: evaluation_set_sha256(evaluation), MODEL_KEY_TAG: model_key}
        version = client.create_model_version(
            name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
            tags={key: str(value) for key, value in tags.items()},
        )  # fmt: skip
        previous = recorded_move(client.get_registered_model(name).tags, CHALLENGER).get("version")
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    move = Move("register", name, CHALLENGER, previous, str(version.version), "none", actor(), utc_now())
    record_move(client, uri, move)
    return RegisteredVersion(
        name=name,
        version=str(version.version),
        run_id=run_id,
        model_uri=f"models:/{name}/{version.version}",
        alias_uri=f"models:/{name}@{CHALLENGER}",
        source=info.model_uri,
    )


TAGGED_METRICS = ("auc", "f1", "sensitivity", "specificity", "n", "accuracy", "balanced_accuracy")
SET_TAG_PREFIX = {"test": "holdout", "external": "external"}


def version_tags(
    lineage: dict[str, str],
    validation_status: str,
    point: dict[str, Any],
    comparison: dict[str, Any],
    negative_class: str,
) -> dict[str, str]:
    """Tags of a new version: lineage, validation status, compare's decision rule, the metrics at it on
    the holdout (`holdout.*`) and the external set (`external.*`), and the comparison's p-values."""
    tags = {key: value for key, value in lineage.items()}
    tags["renalmae.validation_status"] = validation_status
    tags["renalmae.negative_class"] = negative_class
    rule: DecisionRule = point["rule"]
    tags["decision.rule"] = rule.name
    tags["decision.chosen_on"] = rule.chosen_on[:4000]
    if rule.threshold is not None:
        tags["decision.threshold"] = str(rule.threshold)
    if rule.class_weights is not None:
        tags["decision.class_weights"] = json.dumps(list(rule.class_weights))
    for name, metrics in point["sets"].items():
        for key in TAGGED_METRICS:
            if metrics.get(key) is not None:
                tags[f"{SET_TAG_PREFIX.get(name, name)}.{key}"] = str(metrics[key])
    for key, value in comparison.items():
        tags[f"comparison.{key}"] = str(value)
    tags["renalmae.evaluation_artifact"] = EVALUATION_ARTIFACT
    return tags


def as_dict(version: RegisteredVersion) -> dict[str, str]:
    return asdict(version)


def p_values(report: dict[str, Any], task: str) -> dict[str, float]:
    """The p-values of one task in the compare report, as tag keys: `<test>.<data>[.<class>].p` and, for
    the declared hypotheses, `.p_holm` (MLflow tag keys allow no colon)."""
    found: dict[str, float] = {}
    for test in (report.get(task) or {}).get("tests", []):
        key = test["key"].replace(":", ".")
        if test["p_value"] is not None:
            found[f"{key}.p"] = test["p_value"]
        if test["p_holm"] is not None:
            found[f"{key}.p_holm"] = test["p_holm"]
    return found
