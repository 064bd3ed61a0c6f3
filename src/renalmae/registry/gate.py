"""The promotion gate: decide whether a version may become `champion`; moves nothing.

The gate (all must hold, else the decision fails with its reasons):
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

Moving the alias, the lock around it and the record of the decision are `renalmae.registry.promote`'s
and `renalmae.registry.audit`'s.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from renalmae.errors import GateError
from renalmae.params import RegistryParams
from renalmae.registry.connection import service_errors
from renalmae.registry.versions import EVALUATION_ARTIFACT, EVALUATION_SET_TAG, evaluation_set_sha256
from renalmae.stats.noninferiority import noninferiority_test

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
    # Images of one patient / series are one unit (the candidate's record of them; versions registered
    # before the evaluation set carried groups count every image alone).
    group_column = next((c for c in ("group_candidate", "group") if c in merged), None)
    groups = merged[group_column].to_numpy() if group_column else None
    result = noninferiority_test(
        labels,
        1.0 - merged[f"{negative}_candidate"].to_numpy(dtype=float),
        1.0 - merged[f"{negative}_champion"].to_numpy(dtype=float),
        margin=settings.noninferiority_margin,
        alpha=settings.alpha,
        groups=groups,
    )
    clustered = groups is not None and result.clusters < result.images
    evidence = {
        "champion_version": str(champion.version),
        "n_images": int(len(merged)),
        "n_clusters": int(result.clusters),
        "test": "non-inferiority of AUC, one-sided DeLong confidence bound"
        + (
            f" (Obuchowski's clustered variance over {result.clusters} patients / series)"
            if clustered
            else ""
        ),
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
