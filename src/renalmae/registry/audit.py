"""The registry's record of itself: every gate decision and alias move, and the check that `champion` has one.

Where the record lives (where the registry's users look, in the MLflow UI or with `renalmae audit`):

- on a version, tags `promotion.*`: the passing gate decision that made it champion (evaluation set and
  the data version it came from, the decisions already taken on it, margin, alpha, the one-sided
  interval of the AUC difference, the champion it was compared with, code version, who, when);
  `refusal.*`: the latest refused decision (who, when, against which champion, the reasons);
- on the registered model, tag `renalmae.alias_move.<alias>`: where the last recorded move put the alias
  (`register` for `challenger`, `promote` / `rollback` for `champion`), by whom and when;
- in the experiment `renalmae-registry-audit`: one run per alias move or refused promotion, its tags
  `audit.*` (action, model, alias, from version, to version, decision) and `mlflow.user` (who), its
  start time (when), the gate's numbers in `gate.json`.

A `champion` is *gated* when its version carries a passing decision (`promotion.decision = promoted`)
and the last recorded move put the alias there. An alias set any other way (two clicks in the MLflow
UI, one `MlflowClient.set_registered_model_alias` call) is refused by every loader of the model
(`require_gated`: `renalmae predict`, `load_registered_model`, and the served pyfunc's own
`load_context`, which `mlflow models serve -m models:/NAME@champion` runs) and flagged by `audit`.
Who may write tags or move aliases at all is the server's business (MLflow's basic-auth, `infra/`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from renalmae.errors import GateError, ModelError
from renalmae.registry.connection import artifact_location, mlflow_client, redacted, service_errors

CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_KEY_TAG = "renalmae.model_key"
"""Version tag equal to the served model's `model_config["model_key"]`: how a loaded model finds itself."""
AUDIT_EXPERIMENT = "renalmae-registry-audit"
MOVE_TAG = "renalmae.alias_move."
PROMOTED = "promoted"
LOCK_SUFFIX = "--promotion-lock"
"""Registered models named `<name>--promotion-lock` are `promote`'s locks, not models."""


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Move:
    """One alias move or refused promotion, as recorded."""

    action: str
    """`register`, `promote`, `rollback`, `copy` (`promote --to-registry`, in the target) or `refused`."""
    name: str
    alias: str
    from_version: str | None
    to_version: str | None
    decision: str
    """`passed`, `failed` or `none` (register takes no gate decision)."""
    by: str
    at: str


def record_move(client: Any, uri: str, move: Move, evidence: dict[str, Any] | None = None) -> str:
    """Record `move` as a run of the `renalmae-registry-audit` experiment (and, unless refused, as the
    model's `renalmae.alias_move.<alias>` tag); return the audit run's id."""
    from mlflow.exceptions import MlflowException

    with service_errors(uri):
        experiment = client.get_experiment_by_name(AUDIT_EXPERIMENT)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(AUDIT_EXPERIMENT, artifact_location(uri))
            except MlflowException:  # created by a concurrent promoter of another model
                experiment_id = client.get_experiment_by_name(AUDIT_EXPERIMENT).experiment_id
        run = client.create_run(
            experiment_id,
            run_name=f"{move.action} {move.name}@{move.alias}: v{move.from_version} -> v{move.to_version}",
            tags={
                "mlflow.user": move.by,
                **{f"audit.{key}": str(value) for key, value in move.__dict__.items()},
            },
        )
        if evidence:
            client.log_dict(run.info.run_id, evidence, "gate.json")
        client.set_terminated(run.info.run_id)
        if move.action != "refused":
            recorded = {"version": move.to_version, "action": move.action, "by": move.by, "at": move.at,
                        "audit_run": run.info.run_id}  # fmt: skip
            client.set_registered_model_tag(move.name, MOVE_TAG + move.alias, json.dumps(recorded))
    return run.info.run_id


def recorded_move(model_tags: dict[str, str], alias: str) -> dict[str, Any]:
    """Where the last recorded move put `alias` ({} when none was recorded)."""
    try:
        return json.loads(model_tags.get(MOVE_TAG + alias, "{}"))
    except json.JSONDecodeError:
        return {}


def alias_problem(alias: str, version: Any, model_tags: dict[str, str]) -> str | None:
    """Why `alias` on `version` lacks its evidence, or None when it has it."""
    recorded = recorded_move(model_tags, alias).get("version")
    if alias == CHAMPION and version.tags.get("promotion.decision") != PROMOTED:
        return f"v{version.version} carries no passing gate decision"
    if recorded is None:
        return f"no recorded move put `{alias}` on v{version.version}: it was set outside renalmae"
    if str(recorded) != str(version.version):
        return (
            f"the last recorded move put `{alias}` on v{recorded}, not on v{version.version}: it was moved "
            "outside renalmae"
        )
    return None


def fix_command(name: str, alias: str, version: str) -> str:
    if alias == CHAMPION:
        return (
            f"`renalmae promote --model {name} --version {version}` (or `renalmae rollback --model {name}`)"
        )
    if alias == CHALLENGER:
        return "`renalmae register` (or delete the alias: it is not renalmae's)"
    return f"delete the alias `{alias}` (renalmae sets only `challenger` and `champion`)"


def require_gated(client: Any, uri: str, name: str, version: str) -> None:
    """Refuse (`ModelError`) to load `version` of `name` if it holds `champion` without its evidence."""
    with service_errors(uri):
        model = client.get_registered_model(name)
        if str(model.aliases.get(CHAMPION)) != str(version):
            return
        model_version = client.get_model_version(name, str(version))
    problem = alias_problem(CHAMPION, model_version, model.tags)
    if problem:
        raise ModelError(
            f"models:/{name}@{CHAMPION} is not served: {problem}, so no gate decision backs it. Gate it "
            f"with {fix_command(name, CHAMPION, str(version))}"
        )


def require_gated_model(model_key: str | None, uri: str) -> None:
    """What the served pyfunc runs as it loads: refuse if any version registered from this very model
    (tag `renalmae.model_key`) holds `champion` without its evidence in the registry at `uri`.

    Nothing to check for a model never registered (no key) or an embedded store that does not exist
    (a model directory loaded away from any registry); an unreachable server is a `ServiceError`.
    """
    if not model_key or (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()):
        return
    client = mlflow_client(uri)
    with service_errors(uri):
        versions = client.search_model_versions(f"tags.`{MODEL_KEY_TAG}` = '{model_key}'")
    for version in versions:
        require_gated(client, uri, version.name, version.version)


@dataclass(frozen=True)
class AliasRecord:
    """One alias of one registered model, with its evidence, as `renalmae audit` lists it."""

    name: str
    alias: str
    version: str
    evidence: str
    problem: str | None


def _champion_evidence(tags: dict[str, str]) -> str:
    if tags.get("promotion.decision") != PROMOTED:
        return "no gate decision"
    compared = tags.get("promotion.compared_with", "None")
    versus = "no champion before it" if compared == "None" else f"vs v{compared}"
    return (
        f"promoted {tags.get('promotion.at')} by {tags.get('promotion.by', '?')}, {versus}, "
        f"interval {tags.get('promotion.interval', 'n/a')} (margin {tags.get('promotion.margin', '?')}), "
        f"evaluation set {tags.get('promotion.evaluation_set_sha256', '?')[:12]} "
        f"(decision {tags.get('promotion.decisions_on_evaluation_set', '?')} on it), "
        f"code {tags.get('promotion.code_version', '?')}"
    )


def _alias_evidence(alias: str, version: Any, model_tags: dict[str, str]) -> str:
    move = recorded_move(model_tags, alias)
    moved = f"{move['action']} {move['at']} by {move['by']}" if move else "no recorded move"
    if alias == CHAMPION:
        return f"{_champion_evidence(version.tags)}; moved: {moved}"
    return f"moved: {moved}"


def audit_registry(uri: str, name: str | None = None) -> list[AliasRecord]:
    """Every alias of every registered model (or of `name`) with its evidence and, if it lacks it, why."""
    client = mlflow_client(uri, read_only=True)
    records = []
    with service_errors(uri):
        models = [client.get_registered_model(name)] if name else registered_models(client)
        for model in models:
            for alias, number in sorted(model.aliases.items()):
                version = client.get_model_version(model.name, str(number))
                records.append(
                    AliasRecord(
                        model.name,
                        alias,
                        str(number),
                        _alias_evidence(alias, version, model.tags),
                        alias_problem(alias, version, model.tags),
                    )  # fmt: skip
                )
    return records


def registered_models(client: Any) -> list[Any]:
    """Every registered model but the promotion locks, page by page, sorted by name."""
    models, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        models += [model for model in page if not model.name.endswith(LOCK_SUFFIX)]
        token = page.token
        if not token:
            return sorted(models, key=lambda model: model.name)


def audit_table(records: list[AliasRecord]) -> str:
    """One line per alias: `name@alias vN  OK|FLAGGED  evidence[; problem]`."""
    if not records:
        return "no aliases in this registry"
    return "\n".join(
        f"{record.name}@{record.alias} v{record.version}  {'FLAGGED' if record.problem else 'OK'}  "
        f"{record.evidence}" + (f"  <- {record.problem}" if record.problem else "")
        for record in records
    )


def refuse_flagged(records: list[AliasRecord], uri: str) -> None:
    """Raise `GateError` naming each alias that lacks its evidence and the command that fixes it."""
    flagged = [record for record in records if record.problem]
    if flagged:
        raise GateError(
            f"{len(flagged)} alias(es) in {redacted(uri)} lack their evidence: "
            + "; ".join(
                f"{record.name}@{record.alias} ({record.problem}): fix with "
                f"{fix_command(record.name, record.alias, record.version)}"
                for record in flagged
            )
        )
