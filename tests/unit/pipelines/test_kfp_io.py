"""The glue between KFP components and steps: params text, the engine marker, metrics and reports."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from renalmae import kfp_io, pipeline
from renalmae.errors import ParamsError


class RecordingMetrics:
    """What a KFP `Metrics` artifact offers a component: `log_metric` (and a path)."""

    def __init__(self, path=None):
        self.logged: dict[str, float] = {}
        self.path = str(path)

    def log_metric(self, key: str, value: float) -> None:
        self.logged[key] = value


def test_component_params_validate_the_text_and_touch_no_environment(monkeypatch):
    before = dict(os.environ)

    params = kfp_io.component_params(yaml.safe_dump({"split": {"folds": [0, 1]}}))

    assert params.split.k_folds == 2
    assert dict(os.environ) == before  # the run context is built by the runner, not read from variables


def test_component_params_refuses_text_that_is_not_yaml():
    with pytest.raises(ParamsError, match="params_yaml: not valid YAML"):
        kfp_io.component_params("split: [0, 1\n")


def test_component_params_names_an_unknown_key():
    with pytest.raises(ParamsError, match="unknown key `split.fols`"):
        kfp_io.component_params("split:\n  fols: [0, 1]\n")


def test_training_targets_cover_every_task_fold_and_repeat():
    params = kfp_io.component_params(
        "split:\n  folds: [0, 1]\nfinetune:\n  tasks: [multiclass]\nevaluate:\n  repeats: 2\n"
    )

    assert kfp_io.training_targets(params) == [
        {"task_type": "multiclass", "fold": 0, "repeat": 0},
        {"task_type": "multiclass", "fold": 0, "repeat": 1},
        {"task_type": "multiclass", "fold": 1, "repeat": 0},
        {"task_type": "multiclass", "fold": 1, "repeat": 1},
    ]


def test_json_metrics_keep_finite_numbers_under_dotted_names(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(
        json.dumps({"n": 3, "ok": True, "auc": {"vit": 0.9, "cnn": float("nan")}, "name": "x"})
    )
    metrics = RecordingMetrics()

    kfp_io.log_json_metrics(metrics, summary)

    assert metrics.logged == {"n": 3.0, "auc.vit": 0.9}


def test_explain_logs_its_headline_not_its_hundreds_of_numbers(tmp_path):
    """KFP shows the first 100 numbers of a Metrics artifact: explain's file holds hundreds."""
    from renalmae.artifacts import Explanations

    by_metric = {
        "energy_in_mask": {"mean": 0.4, "low": 0.3},
        "pointing_game": {"mean": 0.5},
        "empty_map": {"mean": 0},
    }
    per_weighting = {"score": {"all": by_metric, "utd": by_metric}, "softmax": {"all": by_metric}}
    summary = tmp_path / Explanations.LOCALISATION
    summary.write_text(
        json.dumps({"test": {model: {"binary": per_weighting} for model in ("usfmae", "cnn")}})
    )
    metrics = RecordingMetrics()

    kfp_io.log_json_metrics(metrics, summary, Explanations.headline)

    assert metrics.logged == {
        f"test.{model}.binary.score.all.{metric}.mean": value
        for model in ("usfmae", "cnn")
        for metric, value in (("energy_in_mask", 0.4), ("pointing_game", 0.5))
    }


def test_json_metrics_of_a_missing_file_log_nothing(tmp_path):
    metrics = RecordingMetrics()

    assert kfp_io.log_json_metrics(metrics, tmp_path / "absent.json") == {}
    assert metrics.logged == {}


def test_copy_html_copies_the_declared_page(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("index")
    page = RecordingMetrics(tmp_path / "out" / "report.html")

    kfp_io.copy_html(tmp_path / "report" / "index.html", page)

    assert (tmp_path / "out" / "report.html").read_text() == "index"


def test_copy_html_of_a_page_the_step_did_not_write_copies_nothing(tmp_path):
    page = RecordingMetrics(tmp_path / "out" / "report.html")

    assert kfp_io.copy_html(tmp_path / "absent.html", page) is None
    assert not (tmp_path / "out").exists()


def test_component_interface_is_derived_from_the_step_declaration():
    def ports(name):
        return [(port.name, port.kind, port.type) for port in kfp_io.component_interface(pipeline.step(name))]

    assert ports("finetune") == [
        ("params_yaml", "parameter", "str"),
        ("ingested", "input", "Dataset"),
        ("splits", "input", "Dataset"),
        ("encoder", "input", "Model"),
        ("task", "parameter", "str"),
        ("fold", "parameter", "int"),
        ("repeat", "parameter", "int"),
        ("model", "output", "Model"),
        ("metrics", "output", "Metrics"),
        ("holdout_confusion", "output", "ClassificationMetrics"),
    ]
    assert ("finetune_runs", "input", "list[Model]") in ports("compare")
    assert ("baseline_runs", "input", "list[Model]") in ports("compare")
    assert ("report", "output", "HTML") in ports("validate")


KFP_TYPES = {"str": "String", "int": "Integer"}


@pytest.mark.parametrize("name", pipeline.PIPELINE)
def test_each_component_takes_and_gives_what_its_step_declares(name):
    """The components are written out by hand (ordinary typed functions); this holds each to the
    declaration, as KFP compiles it."""
    import importlib

    component = getattr(importlib.import_module(f"components.{name}.component"), name)
    spec = component.component_spec
    compiled = {
        key: ("parameter" if "." not in value.type else "input", value.type)
        for key, value in spec.inputs.items()
    }
    compiled |= {key: ("output", value.type) for key, value in spec.outputs.items()}
    declared = {}
    for port in kfp_io.component_interface(pipeline.step(name)):
        kind = port.type.removeprefix("list[").rstrip("]")
        declared[port.name] = (port.kind, KFP_TYPES.get(kind) or f"system.{kind}@0.0.1")
        if port.type.startswith("list["):
            assert spec.inputs[port.name].is_artifact_list, port.name

    assert compiled == declared


class RecordingConfusion:
    """What a KFP `ClassificationMetrics` artifact offers a component: `log_confusion_matrix`."""

    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None:
        self.categories, self.matrix = categories, matrix


def test_confusion_matrix_is_at_the_threshold_compare_uses_for_that_fold(tmp_path):
    """The Kubeflow UI and the comparison report must show the same operating point (binary task)."""
    import numpy as np
    from comparekit import write_prediction_runs
    from sklearn.metrics import confusion_matrix

    from renalmae.evaluate.comparison import fold_rule
    from renalmae.evaluate.runs import load_run
    from renalmae.params import params_from_dict

    run_dir = write_prediction_runs(tmp_path, tasks=("binary",))[0]
    params = params_from_dict({"evaluate": {"threshold": "sensitivity", "target_sensitivity": 0.95}})
    recorded = RecordingConfusion()

    kfp_io.log_confusion_matrix(recorded, run_dir, params)

    run = load_run(run_dir)
    threshold = fold_rule(run, params.evaluate).threshold
    labels, p_anomaly = run.split("test")["y_true"].to_numpy(), run.probabilities("test")[:, 1]
    at_threshold = confusion_matrix(labels, (p_anomaly >= threshold).astype(int), labels=[0, 1]).tolist()
    at_argmax = confusion_matrix(labels, np.round(p_anomaly).astype(int), labels=[0, 1]).tolist()
    assert recorded.categories == ["normal", "anomaly"]
    assert recorded.matrix == at_threshold and at_threshold != at_argmax
