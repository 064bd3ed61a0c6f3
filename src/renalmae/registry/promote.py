"""Alias moves: `promote` (gate, then move `champion`), `rollback`, and the copy to another registry.

`promote` takes the model's promotion lock, decides with the gate (`renalmae.registry.gate`) against the
gated champion (where the last recorded move put `champion`, see `renalmae.registry.audit`), and then:
- passed: tags the decision on the version (`promotion.*`), moves `champion`, reads it back, and records
  the move (the model's `renalmae.alias_move.champion` tag and a run of `renalmae-registry-audit`);
- refused: tags the refusal on the version (`refusal.*`), records it, and raises `GateError`; aliases
  stay where they were.
`rollback` moves `champion` back to a version that passed the gate before (default: the champion the
current one replaced), recorded the same way. A version that holds `champion` without a recorded move
(set by hand) is gated by `promote` like any candidate, which is how such an alias is repaired.

Two promotions at once: each first takes the model's promotion lock, a registered model named
`<name>--promotion-lock` created with a unique token. Creating a registered model is atomic in the
registry's database (the name is unique), so exactly one promoter holds the lock; the others wait and
then gate against the champion the winner left. A lock older than its lease (`LOCK_LEASE_S`, a crashed
promoter) is broken.
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
from pathlib import Path
from typing import Any

from renalmae.errors import GateError, ModelError, ServiceError
from renalmae.params import RegistryParams
from renalmae.registry.audit import (
    CHALLENGER,
    CHAMPION,
    LOCK_SUFFIX,
    PROMOTED,
    Move,
    record_move,
    recorded_move,
    registered_models,
    utc_now,
)
from renalmae.registry.connection import actor, artifact_location, mlflow_client, redacted, service_errors
from renalmae.registry.gate import GateResult, candidate_evaluation_set, check_gate, take_decision
from renalmae.registry.versions import EVALUATION_ARTIFACT, MODEL_ARTIFACT

LISTED_NAMES = 20
LOCK_LEASE_S = 120.0
LOCK_WAIT_S = 60.0


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
        names = [model.name for model in registered_models(client)]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    shown = ", ".join(names[:LISTED_NAMES])
    shown += f", … ({len(names)} in all)" if len(names) > LISTED_NAMES else ""
    raise ModelError(
        f"no registered model is called {name!r} in {redacted(uri)}; "
        + (f"did you mean {' or '.join(close)}? " if close else "")
        + (f"registered: {shown}" if names else "none is registered yet: run `make run` (its "
           "`register` stage) or `renalmae register` first")
    )  # fmt: skip


def current_champion(client: Any, uri: str, name: str) -> Any | None:
    with service_errors(uri):
        aliases = client.get_registered_model(name).aliases
        if CHAMPION not in aliases:
            return None
        return client.get_model_version(name, aliases[CHAMPION])


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
                # "does not exist": MLflow's store answers a taken name by looking the holder up (is it a
                # prompt?), and the holder released the lock in between: free again, so try once more.
                if error.error_code == "RESOURCE_ALREADY_EXISTS":
                    _break_if_stale(client, lock_name)
                elif error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
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


def code_version() -> str:
    """The package version and the git commit of the code taking the decision."""
    from renalmae import __version__
    from renalmae.registry.lineage import git_commit

    return f"renalmae {__version__} ({git_commit()})"


def gated_champion(client: Any, uri: str, name: str) -> Any | None:
    """The version the last recorded move put at `champion` (None when there is none), whatever the
    alias says now: the champion a candidate is gated against."""
    with service_errors(uri):
        recorded = recorded_move(client.get_registered_model(name).tags, CHAMPION).get("version")
        return None if recorded is None else client.get_model_version(name, str(recorded))


def promote(
    uri: str, name: str, version: str | None, settings: RegistryParams, to_registry: str | None = None
) -> dict[str, Any]:
    """Gate `name` version `version` (default: the challenger) and make it `champion`; return the decision.

    Raises `GateError` (recorded, nothing moved) when the gate refuses, `ModelError` for an unknown model
    or version, `ServiceError` when the registry fails.
    """
    client = mlflow_client(uri, read_only=True)
    candidate = resolve_version(client, uri, name, version)
    with promotion_lock(client, uri, name) as token:
        holder = current_champion(client, uri, name)
        champion = gated_champion(client, uri, name)
        if champion is not None and str(champion.version) == str(candidate.version):
            if holder is not None and str(holder.version) == str(candidate.version):
                return {"name": name, "version": str(candidate.version), "decision": "already champion"}
            champion = None  # a recorded champion the alias was moved away from by hand: nothing to compare
        evaluation_set = candidate_evaluation_set(client, uri, candidate)
        decisions = take_decision(client, uri, name, evaluation_set, settings)
        gate = check_gate(client, uri, candidate, champion, settings)
        gate.evidence |= {"evaluation_set_sha256": evaluation_set, "decisions_on_evaluation_set": decisions}
        decision = {
            "name": name,
            "version": str(candidate.version),
            "decision": PROMOTED if gate.passed else "refused",
            "previous_champion": None if holder is None else str(holder.version),
            "compared_with": None if champion is None else str(champion.version),
            "evidence": gate.evidence,
            "token": token,
            "by": actor(),
            "at": utc_now(),
        }
        if not gate.passed:
            _record_refusal(client, uri, candidate, decision, gate)
            raise GateError(
                f"{name} v{candidate.version} not promoted, champion unchanged: " + "; ".join(gate.failures)
            )
        with service_errors(uri):
            for key, value in promotion_tags(decision, settings, candidate.tags).items():
                client.set_model_version_tag(name, candidate.version, key, value)
            client.set_registered_model_alias(name, CHAMPION, candidate.version)
            if str(client.get_model_version_by_alias(name, CHAMPION).version) != str(candidate.version):
                raise ServiceError(f"{name}: the champion alias did not stick at v{candidate.version}; retry")
        move = Move("promote", name, CHAMPION, decision["previous_champion"], decision["version"], "passed",
                    decision["by"], decision["at"])  # fmt: skip
        decision["audit_run"] = record_move(client, uri, move, gate.evidence)
    if to_registry:
        decision["copied_to"] = copy_to_registry(client, uri, candidate, to_registry)
    return decision


def promotion_tags(
    decision: dict[str, Any], settings: RegistryParams, tags: dict[str, str]
) -> dict[str, str]:
    """The passing decision as version tags: what was decided, on what data, against whom, by whom, when."""
    evidence = decision["evidence"]
    lower_bound = evidence.get("lower_bound")
    interval = "n/a (no champion to compare with)" if decision["compared_with"] is None else (
        f"AUC difference >= {lower_bound:+.4f} (one-sided {1 - settings.alpha:.0%})"
        if lower_bound is not None else "undefined"
    )  # fmt: skip
    return {
        "promotion.decision": decision["decision"],
        "promotion.at": decision["at"],
        "promotion.by": decision["by"],
        "promotion.code_version": code_version(),
        "promotion.previous_champion": str(decision["previous_champion"]),
        "promotion.compared_with": str(decision["compared_with"]),
        "promotion.token": decision["token"],
        "promotion.evaluation_set_sha256": str(evidence.get("evaluation_set_sha256")),
        "promotion.evaluation_set_data_version": tags.get("renalmae.data_version", "unknown"),
        "promotion.decisions_on_evaluation_set": str(evidence.get("decisions_on_evaluation_set")),
        "promotion.margin": str(settings.noninferiority_margin),
        "promotion.alpha": str(settings.alpha),
        "promotion.require_superiority": str(settings.require_superiority).lower(),
        "promotion.interval": interval,
        "promotion.evidence": json.dumps(evidence, sort_keys=True, default=str)[:5000],
    }


def _record_refusal(
    client: Any, uri: str, candidate: Any, decision: dict[str, Any], gate: GateResult
) -> None:
    reasons = "; ".join(gate.failures)
    with service_errors(uri):
        for key, value in {
            "refusal.at": decision["at"], "refusal.by": decision["by"],
            "refusal.compared_with": str(decision["compared_with"]), "refusal.reasons": reasons[:5000],
        }.items():  # fmt: skip
            client.set_model_version_tag(candidate.name, candidate.version, key, value)
    move = Move("refused", candidate.name, CHAMPION, decision["previous_champion"],
                decision["previous_champion"], "failed", decision["by"], decision["at"])  # fmt: skip
    record_move(
        client, uri, move, {**gate.evidence, "candidate": str(candidate.version), "failures": gate.failures}
    )


def rollback(uri: str, name: str, version: str | None = None) -> dict[str, Any]:
    """Move `champion` back to `version` (default: the champion the current one replaced), which must
    carry a passing gate decision of its own; recorded like a promotion. Raises `GateError` otherwise."""
    client = mlflow_client(uri, read_only=True)
    registered_model(client, uri, name)
    with promotion_lock(client, uri, name):
        holder = current_champion(client, uri, name)
        if version is None:
            champion = gated_champion(client, uri, name)
            version = None if champion is None else champion.tags.get("promotion.previous_champion")
            if version in (None, "None"):
                raise GateError(
                    f"{name}: the recorded champion replaced no earlier one, so there is nothing to roll "
                    "back to; name a version that passed the gate: "
                    f"`renalmae rollback --model {name} --version N`"
                )
        target = resolve_version(client, uri, name, str(version))
        if target.tags.get("promotion.decision") != PROMOTED:
            raise GateError(
                f"{name} v{target.version} never passed the gate, so champion cannot go back to it; gate it "
                f"with `renalmae promote --model {name} --version {target.version}`"
            )
        move = Move("rollback", name, CHAMPION, None if holder is None else str(holder.version),
                    str(target.version), "passed", actor(), utc_now())  # fmt: skip
        with service_errors(uri):
            client.set_registered_model_alias(name, CHAMPION, target.version)
        audit_run = record_move(client, uri, move, {"passed_gate_at": target.tags.get("promotion.at")})
    return {"name": name, "version": str(target.version), "decision": "rolled back",
            "previous_champion": move.from_version, "audit_run": audit_run}  # fmt: skip


def copy_to_registry(client: Any, uri: str, model_version: Any, target_uri: str) -> dict[str, str]:
    """Copy a promoted version (model, evaluation set, tags with its gate decision) into the registry at
    `target_uri` as its champion, the move recorded there too (action `copy`).

    `MlflowClient.copy_model_version` copies between registered models of one registry (it looks the source
    up in the destination registry), so between two servers the files are downloaded and logged again
    under a run of the target's `renalmae-promotions` experiment; within one registry it is used as is.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    name, source = model_version.name, f"models:/{model_version.name}/{model_version.version}"
    target = mlflow_client(target_uri)
    with service_errors(uri):
        model_version = client.get_model_version(name, model_version.version)  # with its decision tags
    tags = {**model_version.tags, "renalmae.copied_from": f"{redacted(uri)} {source}"}
    with tempfile.TemporaryDirectory(prefix="renalmae-copy-") as staging, service_errors(target_uri):
        if target_uri == uri:
            copied = target.copy_model_version(source, f"{name}-production")
        else:
            with service_errors(uri):
                model_dir = mlflow.artifacts.download_artifacts(
                    artifact_uri=model_version.source, dst_path=f"{staging}/model", tracking_uri=uri,
                    registry_uri=uri,
                )  # fmt: skip
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
        previous = target.get_registered_model(copied.name).aliases.get(CHAMPION)
        target.set_registered_model_alias(copied.name, CHAMPION, copied.version)
    move = Move("copy", copied.name, CHAMPION, None if previous is None else str(previous),
                str(copied.version), "passed", actor(), utc_now())  # fmt: skip
    record_move(target, target_uri, move, {"copied_from": tags["renalmae.copied_from"]})
    return {"registry": target_uri, "name": copied.name, "version": str(copied.version)}
