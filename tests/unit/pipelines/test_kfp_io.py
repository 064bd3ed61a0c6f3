"""The glue between KFP components and steps: params text, the engine marker, metrics and reports."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from renalmae import kfp_io
from renalmae.errors import ParamsError


class RecordingMetrics:
    """What a KFP `Metrics` artifact offers a component: `log_metric` (and a path)."""

    def __init__(self, path=None):
        self.logged: dict[str, float] = {}
        self.path = str(path)

    def log_metric(self, key: str, value: float) -> None:
        self.logged[key] = value


def test_component_params_marks_the_engine_and_the_run(monkeypatch):
    monkeypatch.delenv(kfp_io.ENGINE_ENV, raising=False)
    monkeypatch.delenv(kfp_io.RUN_ID_ENV, raising=False)

    params = kfp_io.component_params(yaml.safe_dump({"split": {"folds": [0, 1]}}), pipeline_run_id="run-42")

    assert params.split.k_folds == 2
    assert os.environ[kfp_io.ENGINE_ENV] == "kfp" and os.environ[kfp_io.RUN_ID_ENV] == "run-42"


def test_component_params_refuses_text_that_is_not_yaml():
    with pytest.raises(ParamsError, match="params_yaml: not valid YAML"):
        kfp_io.component_params("split: [0, 1\n")


def test_component_params_names_an_unknown_key():
    with pytest.raises(ParamsError, match="unknown key `split.fols`"):
        kfp_io.component_params("split:\n  fols: [0, 1]\n")


def test_training_targets_cover_every_task_and_fold():
    params = kfp_io.component_params("split:\n  folds: [0, 1]\nfinetune:\n  tasks: [multiclass]\n")

    assert kfp_io.training_targets(params) == [
        {"task_type": "multiclass", "fold": 0},
        {"task_type": "multiclass", "fold": 1},
    ]


def test_json_metrics_keep_finite_numbers_under_dotted_names(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(
        json.dumps({"n": 3, "ok": True, "auc": {"vit": 0.9, "cnn": float("nan")}, "name": "x"})
    )
    metrics = RecordingMetrics()

    kfp_io.log_json_metrics(metrics, summary)

    assert metrics.logged == {"n": 3.0, "auc.vit": 0.9}


def test_json_metrics_of_a_missing_file_log_nothing(tmp_path):
    metrics = RecordingMetrics()

    assert kfp_io.log_json_metrics(metrics, tmp_path / "absent.json") == {}
    assert metrics.logged == {}


def test_copy_html_prefers_index_html(tmp_path):
    (tmp_path / "report" / "figures").mkdir(parents=True)
    (tmp_path / "report" / "figures" / "a.html").write_text("figure")
    (tmp_path / "report" / "index.html").write_text("index")
    page = RecordingMetrics(tmp_path / "out" / "report.html")

    kfp_io.copy_html(tmp_path / "report", page)

    assert (tmp_path / "out" / "report.html").read_text() == "index"
