"""The promotion gate's decisions on the tags and evaluation sets of versions (no service needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from scipy.stats import norm

from renalmae.errors import GateError
from renalmae.params import RegistryParams
from renalmae.registry import gate
from renalmae.registry.connection import mlflow_client
from renalmae.registry.gate import check_gate, compare_with_champion, take_decision
from renalmae.registry.versions import evaluation_set_sha256
from renalmae.stats.delong import delong_test

SETTINGS = RegistryParams(min_auc=0.7, min_f1=0.5, alpha=0.05)
NI_SETTINGS = RegistryParams(noninferiority_margin=0.05, alpha=0.05)
PASSING_TAGS = {"renalmae.validation_status": "passed", "holdout.auc": "0.9", "holdout.f1": "0.8"}


def _version(number: int, drop: tuple[str, ...] = (), **tags: str) -> ModelVersion:
    merged = {**PASSING_TAGS, "renalmae.negative_class": "normal", **tags}
    merged = {key: value for key, value in merged.items() if key not in drop}
    return ModelVersion(
        name="renal-usfmae-binary", version=str(number), creation_timestamp=0, run_id=f"run{number}",
        tags=[ModelVersionTag(key, value) for key, value in merged.items()],
    )  # fmt: skip


def check_gate_against(monkeypatch, candidate_eval, champion_eval, settings=NI_SETTINGS):
    """`check_gate` of v2 against champion v1 with these evaluation sets in place of the registry's."""
    evaluations = {"run2": candidate_eval, "run1": champion_eval}
    monkeypatch.setattr(gate, "load_evaluation", lambda client, uri, version: evaluations[version.run_id])
    return check_gate(None, "unused", _version(2), _version(1), settings)


def test_a_version_meeting_every_rule_passes_without_a_champion():
    result = check_gate(None, "unused", _version(1), None, SETTINGS)
    assert result.passed and result.failures == []


def test_failed_data_validation_is_refused():
    result = check_gate(
        None, "unused", _version(1, **{"renalmae.validation_status": "failed"}), None, SETTINGS
    )
    assert not result.passed and "validation status is 'failed'" in result.failures[0]


def test_unknown_data_validation_is_refused():
    version = _version(1, drop=("renalmae.validation_status",))
    assert not check_gate(None, "unused", version, None, SETTINGS).passed


def test_auc_below_minimum_is_refused():
    result = check_gate(None, "unused", _version(1, **{"holdout.auc": "0.65"}), None, SETTINGS)
    assert not result.passed and "AUC 0.65 is below registry.min_auc 0.7" in result.failures[0]


def test_f1_below_minimum_is_refused():
    result = check_gate(None, "unused", _version(1, **{"holdout.f1": "0.2"}), None, SETTINGS)
    assert not result.passed and "F1" in result.failures[0]


def test_missing_holdout_metrics_are_refused():
    version = _version(1, drop=("holdout.auc",))
    assert not check_gate(None, "unused", version, None, SETTINGS).passed


def _paired(auc_candidate: float, auc_champion: float, seed: int = 0, n_positive=65, n_negative=129):
    """Evaluation sets of a candidate and a champion on the same images: binormal scores with the given
    AUCs, correlated 0.8 within a class (two models of one task)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_positive, dtype=int), np.zeros(n_negative, dtype=int)]
    noise = rng.standard_normal((len(labels), 2)) @ np.linalg.cholesky([[1.0, 0.8], [0.8, 1.0]]).T
    frames = []
    for column, auc in enumerate((auc_candidate, auc_champion)):
        scores = 1 / (1 + np.exp(-(np.sqrt(2) * norm.ppf(auc) * labels + noise[:, column] - 1)))
        frames.append(
            pd.DataFrame(
                {"id": [f"img-{i}" for i in range(len(labels))], "y_true": labels,
                 "prob_normal": 1 - scores, "prob_anomaly": scores}
            )
        )  # fmt: skip
    return frames


def _gate(auc_candidate, auc_champion, settings=NI_SETTINGS, seed=0):
    candidate_eval, champion_eval = _paired(auc_candidate, auc_champion, seed)
    return compare_with_champion(_version(2), candidate_eval, _version(1), champion_eval, settings)


def test_a_candidate_worse_than_the_champion_by_more_than_the_margin_is_refused(monkeypatch):
    passed, evidence = _gate(0.80, 0.90)
    assert not passed and not evidence["non_inferior"]
    assert evidence["lower_bound"] <= -NI_SETTINGS.noninferiority_margin
    result = check_gate_against(monkeypatch, *_paired(0.80, 0.90))
    assert "not shown non-inferior to champion v1 on 194 holdout images" in result.failures[0]
    assert "-registry.noninferiority_margin" in result.failures[0]


def test_an_equally_good_candidate_passes_as_non_inferior():
    passed, evidence = _gate(0.90, 0.90)
    assert passed and evidence["non_inferior"] and evidence["n_images"] == 194
    assert evidence["lower_bound"] > -NI_SETTINGS.noninferiority_margin


def test_the_gate_counts_patients_or_series_not_frames():
    """Frames of one series move together: the gate's bound is as wide as its clusters make it."""
    candidate_eval, champion_eval = _paired(0.90, 0.90)
    series = [f"series-{i // 6}" for i in range(len(candidate_eval))]  # six frames a series, one label
    candidate_eval, champion_eval = (frame.assign(group=series) for frame in (candidate_eval, champion_eval))
    _, clustered = compare_with_champion(_version(2), candidate_eval, _version(1), champion_eval, NI_SETTINGS)
    _, frames = _gate(0.90, 0.90)
    assert clustered["n_clusters"] == 33 and frames["n_clusters"] == 194
    assert clustered["std_error"] != frames["std_error"]
    assert "clustered variance over 33" in clustered["test"]
    labels = candidate_eval["y_true"].to_numpy()
    expected = delong_test(
        labels, candidate_eval["prob_anomaly"], champion_eval["prob_anomaly"], groups=np.array(series)
    )
    assert clustered["std_error"] == pytest.approx(expected.std_error)


def test_a_clearly_better_candidate_is_superior():
    passed, evidence = _gate(0.95, 0.80)
    assert passed and evidence["superior"] and evidence["lower_bound"] > 0


def test_require_superiority_refuses_a_candidate_that_is_only_non_inferior(monkeypatch):
    settings = NI_SETTINGS.model_copy(update={"require_superiority": True})
    passed, evidence = _gate(0.90, 0.90, settings)
    assert not passed and evidence["non_inferior"] and not evidence["superior"]
    result = check_gate_against(monkeypatch, *_paired(0.90, 0.90), settings=settings)
    assert "registry.require_superiority is true" in result.failures[0]


def test_an_undefined_comparison_is_refused_with_the_reason(monkeypatch):
    candidate_eval, champion_eval = _paired(0.90, 0.90, n_positive=1)
    passed, evidence = compare_with_champion(
        _version(2), candidate_eval, _version(1), champion_eval, NI_SETTINGS
    )
    assert not passed and "at least 2 positive" in evidence["undefined"]
    result = check_gate_against(monkeypatch, candidate_eval, champion_eval)
    assert "is undefined (DeLong's test needs at least 2 positive" in result.failures[0]


def test_evaluation_sets_of_different_images_are_refused():
    candidate_eval, champion_eval = _paired(0.9, 0.9)
    candidate_eval["id"] = [f"other-{i}" for i in range(len(candidate_eval))]
    with pytest.raises(GateError, match="different images"):
        compare_with_champion(_version(2), candidate_eval, _version(1), champion_eval, NI_SETTINGS)


def test_evaluation_sets_with_conflicting_labels_are_refused():
    candidate_eval, champion_eval = _paired(0.9, 0.9)
    champion_eval["y_true"] = 1 - champion_eval["y_true"]
    with pytest.raises(GateError, match="different labels"):
        compare_with_champion(_version(2), candidate_eval, _version(1), champion_eval, NI_SETTINGS)


def test_the_evaluation_set_hash_is_its_images_and_labels_not_the_predictions():
    candidate_eval, champion_eval = _paired(0.9, 0.7)
    assert evaluation_set_sha256(candidate_eval) == evaluation_set_sha256(champion_eval)
    assert evaluation_set_sha256(candidate_eval.iloc[::-1]) == evaluation_set_sha256(candidate_eval)
    relabelled = candidate_eval.assign(y_true=np.roll(candidate_eval["y_true"], 1))
    assert evaluation_set_sha256(relabelled) != evaluation_set_sha256(candidate_eval)


def test_decisions_on_one_evaluation_set_are_counted_and_capped(store_uri):
    client = mlflow_client(store_uri)
    client.create_registered_model("capped-model")
    settings = RegistryParams(max_decisions_per_evaluation_set=2)
    evaluation_set = "ab" * 32
    assert take_decision(client, store_uri, "capped-model", evaluation_set, settings) == 1
    assert take_decision(client, store_uri, "capped-model", evaluation_set, settings) == 2
    with pytest.raises(GateError, match=r"already served 2 promotion decisions.*must be refreshed"):
        take_decision(client, store_uri, "capped-model", evaluation_set, settings)
    tags = client.get_registered_model("capped-model").tags
    assert tags[f"renalmae.evaluation_set_decisions.{evaluation_set[:16]}"] == "2"
    assert take_decision(client, store_uri, "capped-model", "cd" * 32, settings) == 1  # a fresh set
