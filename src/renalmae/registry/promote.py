"""The promotion gate: move a version to `champion` only if it passes, and never leave a half move.

The gate (all must hold, else `GateError`; aliases and versions stay as they were):
1. the version's data validation passed (`renalmae.validation_status` tag = `passed`);
2. its holdout AUC and F1 (`holdout.auc`, `holdout.f1` tags, at the operating point compare chose)
   reach `registry.min_auc` / `registry.min_f1`;
3. it is non-inferior to the current champion on the same evaluation set: the lower bound of the
   one-sided (1 - `registry.alpha`) DeLong confidence interval of AUC(candidate) - AUC(champion) lies
   above -`registry.noninferiority_margin` (above 0 when `registry.require_superiority`); see
   `renalmae.stats.noninferiority`. Both versions' stored evaluation sets must hold the same images with
   the same labels (else refused); an undefined comparison (too few images of a class, perfect
   separation) concludes nothing and refuses. The score is P(not the negative class), so binary and
   multiclass versions are compared on anomaly detection.
4. the evaluation set has not been spent: every gate decision taken on a set (passed or failed) is
   counted on the registered model (tag `renalmae.evaluation_set_decisions.<sha256[:16]>`), and beyond
   `registry.max_decisions_per_evaluation_set` the gate refuses until candidates are registered on a
   fresh set, because each further look at the same images makes a chance pass likelier.

Two promotions at once: each first takes the model's promotion lock, a registered model named
`<name>--promotion-lock` created with a unique token. Creating a registered model is atomic in the
registry's database (the name is unique), so exactly one promoter holds the lock; the others wait and
then gate against the champion the winner left. A lock older than its lease (`LOCK_LEASE_S`, a crashed
promoter) is broken. After moving the alias the promoter reads it back and only then records the
decision (tags `promotion.*`, with the previous champion and the evidence) on the version.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from renalmae.errors import GateError, ModelError, ServiceError
from renalmae.params import RegistryParams
from renalmae.registry.connection import artifact_location, mlflow_client, redacted, service_errors
from renalmae.registry.versions import (
    CHALLENGER,
    CHAMPION,
    EVALUATION_ARTIFACT,
    EVALUATION_SET_TAG,
    MODEL_ARTIFACT,
    evaluation_set_sha256,
)
from renalmae.stats.noninferiority import noninferiority_test

LOCK_SUFFIX = "--promotion-lock"
LISTED_NAMES = 20
LOCK_LEASE_S = 120.0
LOCK_WAIT_S = 60.0
DECISIONS_TAG = "renalmae.evaluation_set_decisions."


@dataclass
class GateResult:
    """Outcome of the gate for one version: pass / fail, the reasons it failed, the numbers it used."""

    passed: bool
    failures: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


def _float_tag(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


def resolve_version(client: Any, uri: str, name: str, version: str | None) -> Any:
    """The model version `version` of `name`, or the one aliased `challenger` when not given. Raises
    `ModelError` listing the registered names (closest first) when no model is called `name`."""
    registered_model(client, uri, name)
    with service_errors(uri):
        if version is None:
            return client.get_model_version_by_alias(name, CHALLENGER)
        return client.get_model_version(name, str(version))


def registered_model(client: Any, uri: str, name: str) -> Any:
    """The registered model `name`; a `ModelError` that lists the registered names when there is none."""
    from mlflow.exceptions import MlflowException

    with service_errors(uri):
        try:
            return client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        names = sorted(name for name in _registered_names(client) if not name.endswith(LOCK_SUFFIX))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    shown = ", ".join(names[:LISTED_NAMES])
    shown += f", … ({len(names)} in all)" if len(names) > LISTED_NAMES else ""
    raise ModelError(
        f"no registered model is called {name!r} in {redacted(uri)}; "
        + (f"did you mean {' or '.join(close)}? " if close else "")
        + (f"registered: {shown}" if names else "none is registered yet: run `make run` (its "
           "`register` stage) or `renalmae register` first")
    )  # fmt: skip


def _registered_names(client: Any) -> list[str]:
    """Every registered model's name, page by page."""
    names, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        names += [model.name for model in page]
        token = page.token
        if not token:
            return names


def current_champion(client: Any, uri: str, name: str) -> Any | None:
    with service_errors(uri):
        aliases = client.get_registered_model(name).aliases
        if CHAMPION not in aliases:
            return None
        return client.get_model_version(name, aliases[CHAMPION])


def load_evaluation(client: Any, uri: str, model_version: Any) -> pd.DataFrame:
    """The evaluation set stored with a version (its run's `evaluation/holdout.parquet`)."""
    with tempfile.TemporaryDirectory(prefix="renalmae-evaluation-") as staging, service_errors(uri):
        path = client.download_artifacts(model_version.run_id, EVALUATION_ARTIFACT, staging)
        return pd.read_parquet(path)


def negative_scores_column(frame: pd.DataFrame, tags: dict[str, str]) -> str:
    negative = tags.get("renalmae.negative_class")
    column = f"prob_{negative}"
    return column if column in frame.columns else next(c for c in frame.columns if c.startswith("prob_"))


def compare_with_champion(
    candidate: Any,
    candidate_eval: pd.DataFrame,
    champion: Any,
    champion_eval: pd.DataFrame,
    settings: RegistryParams,
) -> tuple[bool, dict[str, Any]]:
    """Non-inferiority of the candidate to the champion on the shared images; (passed, evidence).

    Raises GateError when the evaluation sets hold different images or labels.
    """
    name = f"{candidate.name} v{candidate.version} vs champion v{champion.version}"
    if set(candidate_eval["id"]) != set(champion_eval["id"]) or len(candidate_eval) != len(champion_eval):
        raise GateError(
            f"{name}: the evaluation sets hold different images ({len(candidate_eval)} vs "
            f"{len(champion_eval)} ids, not the same set), so the versions cannot be compared; register both "
            "on the same holdout split, or re-register the champion on this split first"
        )
    merged = candidate_eval.merge(champion_eval, on="id", suffixes=("_candidate", "_champion"))
    if (merged["y_true_candidate"] != merged["y_true_champion"]).any():
        raise GateError(f"{name}: the same image ids carry different labels; the evaluation sets disagree")
    negative = negative_scores_column(candidate_eval, candidate.tags)
    negative_index = [column for column in candidate_eval.columns if column.startswith("prob_")].index(
        negative
    )
    labels = (merged["y_true_candidate"].to_numpy() != negative_index).astype(int)
    result = noninferiority_test(
        labels,
        1.0 - merged[f"{negative}_candidate"].to_numpy(dtype=float),
        1.0 - merged[f"{negative}_champion"].to_numpy(dtype=float),
        margin=settings.noninferiority_margin,
        alpha=settings.alpha,
    )
    evidence = {
        "champion_version": str(champion.version),
        "n_images": int(len(merged)),
        "test": "non-inferiority of AUC, one-sided DeLong confidence bound",
        **{key: value for key, value in result.to_dict().items() if key not in ("margin", "alpha")},
        "noninferiority_margin": settings.noninferiority_margin,
        "require_superiority": settings.require_superiority,
        "alpha": settings.alpha,
    }
    return (result.superior if settings.require_superiority else result.non_inferior), evidence


def _champion_failure(evidence: dict[str, Any], settings: RegistryParams) -> str:
    versus = f"champion v{evidence['champion_version']} on {evidence['n_images']} holdout images"
    if evidence["undefined"]:
        return f"the comparison with {versus} is undefined ({evidence['undefined']}), so nothing is shown"
    numbers = (
        f"AUC {evidence['auc_candidate']:.4f} vs {evidence['auc_reference']:.4f}, difference "
        f"{evidence['difference']:+.4f}, one-sided {1 - settings.alpha:.0%} lower bound "
        f"{evidence['lower_bound']:+.4f}"
    )
    if not evidence["non_inferior"]:
        return (
            f"not shown non-inferior to {versus} ({numbers} <= -{settings.noninferiority_margin} = "
            "-registry.noninferiority_margin)"
        )
    return f"not shown superior to {versus} ({numbers} <= 0) and registry.require_superiority is true"


def check_gate(
    client: Any, uri: str, candidate: Any, champion: Any | None, settings: RegistryParams
) -> GateResult:
    """Evaluate the gate for `candidate` against `champion` (None: no champion yet)."""
    tags = candidate.tags
    result = GateResult(passed=True)
    status = tags.get("renalmae.validation_status", "unknown")
    result.evidence["validation_status"] = status
    if status != "passed":
        result.failures.append(f"data validation status is '{status}', not 'passed'")
    for metric, threshold in (("auc", settings.min_auc), ("f1", settings.min_f1)):
        value = _float_tag(tags, f"holdout.{metric}")
        result.evidence[f"holdout_{metric}"] = value
        result.evidence[f"min_{metric}"] = threshold
        if value is None or value < threshold:
            result.failures.append(
                f"holdout {metric.upper()} {value} is below registry.min_{metric} {threshold}"
            )
    if champion is not None and str(champion.version) != str(candidate.version):
        passed, evidence = compare_with_champion(
            candidate,
            load_evaluation(client, uri, candidate),
            champion,
            load_evaluation(client, uri, champion),
            settings,
        )
        result.evidence.update(evidence)
        if not passed:
            result.failures.append(_champion_failure(evidence, settings))
    result.passed = not result.failures
    return result


def candidate_evaluation_set(client: Any, uri: str, candidate: Any) -> str:
    """sha256 of the candidate's evaluation set content (register-time tag, else hashed from the artifact)."""
    tagged = candidate.tags.get(EVALUATION_SET_TAG)
    return tagged if tagged else evaluation_set_sha256(load_evaluation(client, uri, candidate))


def take_decision(client: Any, uri: str, name: str, evaluation_set: str, settings: RegistryParams) -> int:
    """Count one more gate decision on `evaluation_set` (held under the promotion lock); return the count.

    Refuses (GateError, nothing counted) once the set has served `max_decisions_per_evaluation_set`.
    """
    key = f"{DECISIONS_TAG}{evaluation_set[:16]}"
    with service_errors(uri):
        taken = int(client.get_registered_model(name).tags.get(key, "0"))
        if taken >= settings.max_decisions_per_evaluation_set:
            raise GateError(
                f"{name}: the evaluation set {evaluation_set[:16]}… has already served {taken} promotion "
                f"decisions (registry.max_decisions_per_evaluation_set = "
                f"{settings.max_decisions_per_evaluation_set}); every look at the same images makes a chance "
                "pass likelier, so it must be refreshed: register the candidates on a new holdout split "
                "(new images) before deciding again; champion unchanged"
            )
        client.set_registered_model_tag(name, key, str(taken + 1))
    return taken + 1


@contextlib.contextmanager
def promotion_lock(
    client: Any, uri: str, name: str, lease_s: float = LOCK_LEASE_S, wait_s: float = LOCK_WAIT_S
) -> Iterator[str]:
    """Hold `<name>--promotion-lock` (an atomically created registered model); yield its token."""
    from mlflow.exceptions import MlflowException

    lock_name, token = f"{name}{LOCK_SUFFIX}", uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while True:
        lock_tags = {"renalmae.lock_token": token, "renalmae.lock_expires": str(time.time() + lease_s)}
        with service_errors(uri):
            try:
                client.create_registered_model(
                    lock_name,
                    tags=lock_tags,
                    description=f"lock held while promoting {name}; delete if stale",
                )
                break
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                _break_if_stale(client, lock_name)
        if time.monotonic() > deadline:
            raise GateError(
                f"another promotion of {name} holds {lock_name} for more than {wait_s:.0f}s; retry later, or "
                f"delete the registered model {lock_name} if no promotion is running"
            )
        time.sleep(0.1 + random.random() * 0.3)
    try:
        yield token
    finally:
        with contextlib.suppress(Exception):
            if client.get_registered_model(lock_name).tags.get("renalmae.lock_token") == token:
                client.delete_registered_model(lock_name)


def _break_if_stale(client: Any, lock_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lock_name).tags
    except MlflowException:
        return  # released in between
    if float(tags.get("renalmae.lock_expires", "inf")) < time.time():
        with contextlib.suppress(MlflowException):
            if client.get_registered_model(lock_name).tags.get("renalmae.lock_token") == tags.get(
                "renalmae.lock_token"
            ):
                client.delete_registered_model(lock_name)


def promote(
    uri: str, name: str, version: str | None, settings: RegistryParams, to_registry: str | None = None
) -> dict[str, Any]:
    """Gate `name` version `version` (default: the challenger) and make it `champion`; return the decision."""
    client = mlflow_client(uri, read_only=True)
    candidate = resolve_version(client, uri, name, version)
    with promotion_lock(client, uri, name) as token:
        champion = current_champion(client, uri, name)
        if champion is not None and str(champion.version) == str(candidate.version):
            return {"name": name, "version": str(candidate.version), "decision": "already champion"}
        evaluation_set = candidate_evaluation_set(client, uri, candidate)
        decisions = take_decision(client, uri, name, evaluation_set, settings)
        gate = check_gate(client, uri, candidate, champion, settings)
        gate.evidence |= {"evaluation_set_sha256": evaluation_set, "decisions_on_evaluation_set": decisions}
        if not gate.passed:
            raise GateError(
                f"{name} v{candidate.version} not promoted, champion unchanged: " + "; ".join(gate.failures)
            )
        decision = {
            "name": name,
            "version": str(candidate.version),
            "decision": "promoted",
            "previous_champion": None if champion is None else str(champion.version),
            "evidence": gate.evidence,
            "token": token,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with service_errors(uri):
            client.set_registered_model_alias(name, CHAMPION, candidate.version)
            if str(client.get_model_version_by_alias(name, CHAMPION).version) != str(candidate.version):
                raise ServiceError(f"{name}: the champion alias did not stick at v{candidate.version}; retry")
            for key, value in promotion_tags(decision).items():
                client.set_model_version_tag(name, candidate.version, key, value)
    if to_registry:
        decision["copied_to"] = copy_to_registry(client, uri, candidate, to_registry)
    return decision


def promotion_tags(decision: dict[str, Any]) -> dict[str, str]:
    return {
        "promotion.decision": decision["decision"],
        "promotion.at": decision["at"],
        "promotion.previous_champion": str(decision["previous_champion"]),
        "promotion.token": decision["token"],
        "promotion.evidence": json.dumps(decision["evidence"], sort_keys=True, default=str),
        "promotion.evaluation_set_sha256": str(decision["evidence"].get("evaluation_set_sha256")),
        "promotion.decisions_on_evaluation_set": str(decision["evidence"].get("decisions_on_evaluation_set")),
    }


def copy_to_registry(client: Any, uri: str, model_version: Any, target_uri: str) -> dict[str, str]:
    """Copy a version (model, evaluation set, tags) into the registry at `target_uri` as its champion.

    `MlflowClient.copy_model_version` copies between registered models of one registry (it looks the source
    up in the destination registry), so between two servers the files are downloaded and logged again
    under a run of the target's `renalmae-promotions` experiment; within one registry it is used as is.
    """
    from mlflow.exceptions import MlflowException

    name, source = model_version.name, f"models:/{model_version.name}/{model_version.version}"
    target = mlflow_client(target_uri)
    tags = {**model_version.tags, "renalmae.copied_from": f"{uri} {source}"}
    with tempfile.TemporaryDirectory(prefix="renalmae-copy-") as staging, service_errors(target_uri):
        if target_uri == uri:
            copied = target.copy_model_version(source, f"{name}-production")
        else:
            with service_errors(uri):
                model_dir = client.download_artifacts(model_version.run_id, MODEL_ARTIFACT, staging)
                evaluation = client.download_artifacts(model_version.run_id, EVALUATION_ARTIFACT, staging)
            experiment = target.get_experiment_by_name("renalmae-promotions")
            experiment_id = (
                experiment.experiment_id
                if experiment
                else target.create_experiment("renalmae-promotions", artifact_location(target_uri))
            )
            run = target.create_run(
                experiment_id, run_name=f"copy-{name}-v{model_version.version}", tags=tags
            )
            target.log_artifacts(run.info.run_id, model_dir, MODEL_ARTIFACT)
            target.log_artifact(run.info.run_id, evaluation, str(Path(EVALUATION_ARTIFACT).parent))
            target.set_terminated(run.info.run_id)
            try:
                target.create_registered_model(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            copied = target.create_model_version(
                name, source=f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", run_id=run.info.run_id, tags=tags
            )
        target.set_registered_model_alias(copied.name, CHAMPION, copied.version)
    return {"registry": target_uri, "name": copied.name, "version": str(copied.version)}
