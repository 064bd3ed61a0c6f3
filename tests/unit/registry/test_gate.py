"""The promotion gate's decisions on the tags and evaluation sets of versions (no service needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from renalmae.errors import GateError
from renalmae.params import RegistryParams
from renalmae.registry.promote import check_gate, compare_with_champion

SETTINGS = RegistryParams(min_auc=0.7, min_f1=0.5, alpha=0.05)
PASSING_TAGS = {"renalmae.validation_status": "passed", "holdout.auc": "0.9", "holdout.f1": "0.8"}


def _version(number: int, drop: tuple[str, ...] = (), **tags: str) -> ModelVersion:
    merged = {**PASSING_TAGS, "renalmae.negative_class": "normal", **tags}
    merged = {key: value for key, value in merged.items() if key not in drop}
    return ModelVersion(
        name="renal-usfmae-binary", version=str(number), creation_timestamp=0, run_id=f"run{number}",
        tags=[ModelVersionTag(key, value) for key, value in merged.items()],
    )  # fmt: skip


def _evaluation(separation: float, seed: int, n: int = 60, ids: list[str] | None = None) -> pd.DataFrame:
    labels = np.arange(n) % 2
    scores = 1 / (1 + np.exp(-(separation * (2 * labels - 1) + np.random.default_rng(seed).normal(size=n))))
    return pd.DataFrame(
        {
            "id": ids or [f"img-{i}" for i in range(n)],
            "y_true": labels,
            "prob_normal": 1 - scores,
            "prob_anomaly": scores,
        }
    )


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


def test_significantly_worse_than_champion_is_refused():
    worse, evidence = compare_with_champion(
        _version(2), _evaluation(0.1, 1), _version(1), _evaluation(1.2, 0), 0.05
    )
    assert worse
    assert evidence["auc_candidate"] < evidence["auc_champion"]
    assert evidence["delong_p_worse_one_sided"] < 0.05


def test_as_good_as_champion_passes():
    worse, evidence = compare_with_champion(
        _version(2), _evaluation(1.2, 4), _version(1), _evaluation(1.2, 0), 0.05
    )
    assert not worse and evidence["n_images"] == 60


def test_better_than_champion_passes_one_sided():
    worse, _ = compare_with_champion(_version(2), _evaluation(1.2, 0), _version(1), _evaluation(0.1, 1), 0.05)
    assert not worse


def test_evaluation_sets_of_different_images_are_refused():
    other_ids = [f"other-{i}" for i in range(60)]
    with pytest.raises(GateError, match="different images"):
        compare_with_champion(
            _version(2), _evaluation(1.2, 0, ids=other_ids), _version(1), _evaluation(1.2, 1), 0.05
        )


def test_evaluation_sets_with_conflicting_labels_are_refused():
    flipped = _evaluation(1.2, 1)
    flipped["y_true"] = 1 - flipped["y_true"]
    with pytest.raises(GateError, match="different labels"):
        compare_with_champion(_version(2), _evaluation(1.2, 0), _version(1), flipped, 0.05)


def test_a_comparison_the_evaluation_set_cannot_support_is_refused_with_the_reason():
    with pytest.raises(GateError, match="separate\\(s\\) the classes perfectly"):
        compare_with_champion(_version(2), _evaluation(9.0, 0), _version(1), _evaluation(1.2, 1), 0.05)
