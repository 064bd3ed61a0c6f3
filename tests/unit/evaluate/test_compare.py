"""The `compare` step end to end on synthetic runs, and each bad input it must refuse."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from comparekit import FOLDS, rewrite_predictions, splits_of, write_prediction_runs

from renalmae.data.predictions import check_predictions, probability_columns
from renalmae.errors import DataError
from renalmae.params import params_from_dict
from renalmae.steps.compare import run

PARAMS = params_from_dict({"evaluate": {"bootstrap_resamples": 200}})


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Both tasks, an internal holdout of 40 images and an external set of 60."""
    root = tmp_path_factory.mktemp("compare")
    run_dirs = write_prediction_runs(root / "models", n_external=60)
    return run(PARAMS, run_dirs, splits_of(root / "models"), root / "reports" / "comparison"), run_dirs


def _runs_of(run_dirs, model, task):
    root = "finetune" if model == "usfmae" else "baseline"
    return [d for d in run_dirs if d.parts[-3] == root and d.parts[-2] == task]


def test_writes_every_output(compared):
    out_dir, _ = compared
    for name in (
        "metrics.json",
        "comparison.json",
        "comparison.md",
        "index.html",
        "ensemble_predictions.parquet",
    ):
        assert (out_dir / name).is_file(), name
    for task in ("binary", "multiclass"):
        assert (out_dir / "figures" / f"folds_{task}.png").stat().st_size > 1000
        for suffix in ("", "_external"):
            for figure in ("roc", "pr", "confusion", "reliability"):
                assert (out_dir / "figures" / f"{figure}_{task}{suffix}.png").stat().st_size > 1000
            for model in ("usfmae", "densenet169"):
                roc = pd.read_csv(out_dir / "plots" / f"roc_{task}{suffix}_{model}.csv")
                assert {"fpr", "tpr"} <= set(roc.columns) and roc["tpr"].is_monotonic_increasing
                assert {"recall", "precision"} <= set(
                    pd.read_csv(out_dir / "plots" / f"pr_{task}{suffix}_{model}.csv").columns
                )
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_the_stronger_model_is_found_better(compared):
    out_dir, _ = compared
    comparison = json.loads((out_dir / "comparison.json").read_text())
    binary = comparison["binary"]
    for name in ("test", "external"):
        result = binary["sets"][name]
        assert result["differences"]["auc"]["absolute"] > 0
        assert result["bootstrap"]["auc_difference"]["low"] <= result["differences"]["auc"]["absolute"]
    assert binary["p_values_holm"]["delong:external"] >= binary["p_values"]["delong:external"]
    assert set(comparison["multiclass"]["sets"]["test"]["delong"]) == {"normal", "utd", "mcdk"}


def test_the_external_set_is_reported_beside_the_holdout_and_first(compared):
    out_dir, _ = compared
    comparison = json.loads((out_dir / "comparison.json").read_text())["binary"]
    assert comparison["evaluation_sets"] == ["external", "test"]
    assert comparison["sets"]["external"]["n"] == 60 and comparison["sets"]["test"]["n"] == 40
    for name in ("external", "test"):
        for metric in ("auc", "f1", "sensitivity", "specificity"):
            interval = comparison["sets"][name]["bootstrap"][f"{metric}_difference"]
            assert interval["low"] <= interval["estimate"] <= interval["high"]
    page = (out_dir / "index.html").read_text()
    assert page.index("On the external set") < page.index("On the internal holdout")
    markdown = (out_dir / "comparison.md").read_text()
    assert "comparison on the external set and the internal holdout" in markdown
    assert markdown.index("On the external set") < markdown.index("On the internal holdout")


def test_metrics_json_is_small_flat_and_gives_both_sets(compared):
    out_dir, _ = compared
    metrics = json.loads((out_dir / "metrics.json").read_text())
    for task in ("binary", "multiclass"):
        for model in ("usfmae", "densenet169"):
            assert set(metrics[task][model]) == {
                f"{name}_{metric}"
                for name in ("test", "external")
                for metric in ("auc", "f1", "sensitivity", "specificity")
            }
            assert 0.5 < metrics[task][model]["test_auc"] <= 1.0
            assert 0.0 <= metrics[task][model]["external_f1"] <= 1.0
    assert 0.0 <= metrics["binary"]["external_delong_p_holm"] <= 1.0
    assert {"test_delong_p_holm_normal", "test_delong_p_holm_utd", "test_delong_p_holm_mcdk"} <= set(
        metrics["multiclass"]
    )
    for task in ("binary", "multiclass"):
        leaves = [
            v
            for entry in metrics[task].values()
            for v in (entry.values() if isinstance(entry, dict) else [entry])
        ]
        assert all(v is None or isinstance(v, int | float) for v in leaves)


def test_html_report_is_self_contained_with_a_plain_summary(compared):
    out_dir, _ = compared
    page = (out_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * (2 * 4 + 1)  # per task: 4 per set, 2 sets, folds
    assert 'src="figures' not in page and "http" not in page
    assert "USF-MAE separated anomalous (utd, mcdk) from normal images better than DenseNet-169" in page
    assert "bootstrap interval of the AUC difference" in page
    assert "| AUC |" in (out_dir / "comparison.md").read_text()


def test_ensemble_predictions_are_the_mean_of_the_fold_models(compared):
    out_dir, run_dirs = compared
    ensemble = pd.read_parquet(out_dir / "ensemble_predictions.parquet")
    assert set(ensemble["fold"]) == {-1} and set(ensemble["split"]) == {"test", "external"}
    ensemble = ensemble[ensemble["split"] == "test"]
    multiclass = ensemble[(ensemble["task"] == "multiclass") & (ensemble["model"] == "densenet169")]
    classes = ["normal", "utd", "mcdk"]
    check_predictions(multiclass, classes, source="ensemble")
    folds = [
        pd.read_parquet(d / "predictions.parquet") for d in _runs_of(run_dirs, "densenet169", "multiclass")
    ]
    tests = [f[f["split"] == "test"].set_index("id")[probability_columns(classes)] for f in folds]
    expected = sum(tests) / len(tests)
    got = multiclass.set_index("id")[probability_columns(classes)].loc[expected.index]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return write_prediction_runs(tmp_path / "models", tasks=("binary",))


BINARY_ONLY = params_from_dict({"finetune": {"tasks": ["binary"]}, "evaluate": {"bootstrap_resamples": 100}})


def _refused(run_dirs, tmp_path, match):
    out_dir = tmp_path / "reports" / "comparison"
    with pytest.raises(DataError, match=match):
        run(BINARY_ONLY, run_dirs, splits_of(tmp_path / "models"), out_dir)
    assert not out_dir.exists()


def test_models_on_different_image_ids_are_refused(runs, tmp_path):
    def rename_one_test_image(frame):
        frame.loc[frame["id"] == "test_0005", "id"] = "test_9999"
        return frame

    rewrite_predictions(_runs_of(runs, "densenet169", "binary")[2], rename_one_test_image)
    _refused(runs, tmp_path, "different 'test' image ids")


def test_models_validated_on_different_folds_are_refused(runs, tmp_path):
    def rename_one_validation_image(frame):
        first_val = frame.index[frame["split"] == "val"][0]
        frame.loc[first_val, "id"] = "dev_9999"
        return frame

    rewrite_predictions(_runs_of(runs, "usfmae", "binary")[1], rename_one_validation_image)
    _refused(runs, tmp_path, "validation fold 1 of task binary holds different images")


def test_nan_probabilities_are_refused(runs, tmp_path):
    def nan(frame):
        frame.loc[3, "prob_anomaly"] = np.nan
        return frame

    rewrite_predictions(runs[0], nan)
    _refused(runs, tmp_path, "NaN")


def test_out_of_range_probabilities_are_refused(runs, tmp_path):
    def too_large(frame):
        frame.loc[3, "prob_anomaly"] = 1.5
        return frame

    rewrite_predictions(runs[0], too_large)
    _refused(runs, tmp_path, r"outside \[0, 1\]")


def test_mismatched_class_lists_are_refused(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "models", tasks=("multiclass",))
    run_file = _runs_of(run_dirs, "densenet169", "multiclass")[0] / "run.json"
    info = json.loads(run_file.read_text())
    run_file.write_text(json.dumps(info | {"classes": ["normal", "mcdk", "utd"]}))
    params = params_from_dict({"finetune": {"tasks": ["multiclass"]}})
    with pytest.raises(DataError, match="mismatched class lists"):
        run(params, run_dirs, splits_of(tmp_path / "models"), tmp_path / "out")


def test_a_missing_model_is_refused(runs, tmp_path):
    _refused(
        [d for d in runs if "baseline" not in d.parts],
        tmp_path,
        "no baseline runs for task binary",
    )


def test_a_missing_fold_is_refused(runs, tmp_path):
    missing = _runs_of(runs, "usfmae", "binary")[3]
    shutil.rmtree(missing)
    _refused([d for d in runs if d != missing], tmp_path, r"usfmae, task binary: folds \[3\] missing")


def test_a_missing_splits_file_is_refused(runs, tmp_path):
    out_dir = tmp_path / "reports" / "comparison"
    with pytest.raises(DataError, match=r"absent.json is missing; run `renalmae split` first"):
        run(BINARY_ONLY, runs, tmp_path / "absent.json", out_dir)
    assert not out_dir.exists()


def test_a_missing_task_is_refused(runs, tmp_path):
    with pytest.raises(DataError, match="task multiclass"):
        run(PARAMS, runs, splits_of(tmp_path / "models"), tmp_path / "out")


def test_a_holdout_with_one_class_reports_auc_as_undefined(runs, tmp_path, caplog):
    def only_normal_test_images(frame):
        test = frame["split"] == "test"
        frame.loc[test, "y_true"] = 0
        return frame

    for run_dir in runs:
        rewrite_predictions(run_dir, only_normal_test_images)
    with caplog.at_level(logging.INFO, logger="renalmae.steps.compare"):
        out_dir = run(BINARY_ONLY, runs, splits_of(tmp_path / "models"), tmp_path / "comparison")
    # the console says what the data held, as the report does (splits.json of the kit: 2 dropped)
    assert "ingest dropped 2 duplicate images" in caplog.text
    assert "0 of the 40 internal holdout images are copies of development images" in caplog.text
    comparison = json.loads((out_dir / "comparison.json").read_text())["binary"]
    holdout = comparison["sets"]["test"]
    assert holdout["ensemble"]["usfmae"]["auc"] is None
    assert comparison["p_values"]["delong:test"] is None
    assert "0 positive" in holdout["delong"]["anomaly"]["undefined"]
    markdown = (out_dir / "comparison.md").read_text()
    assert "the AUC is undefined (the set holds no positive image (40 images))" in markdown
    assert "not defined on these data (DeLong's test needs at least 2 positive" in markdown
    assert all(f["test"]["auc"] is None for f in comparison["folds"]["usfmae"])
    assert holdout["ensemble"]["usfmae"]["specificity"] is not None
    assert json.loads((out_dir / "metrics.json").read_text())["binary"]["usfmae"]["test_auc"] is None
    assert "| AUC | n/a" in markdown
    assert len(FOLDS) == len(comparison["folds"]["densenet169"])


def test_metrics_json_is_the_small_headline_set_dvc_shows(compared):
    """`dvc exp show` / `dvc metrics diff` tabulate every number in metrics.json: keep it readable. Per
    model: AUC, F1, sensitivity, specificity on each evaluation set; per declared DeLong hypothesis (per
    class for the multiclass task) its Holm p."""
    out_dir, _ = compared
    metrics = json.loads((out_dir / "metrics.json").read_text())
    metric_names = ("auc", "f1", "sensitivity", "specificity")
    headline = {f"{name}_{metric}" for name in ("external", "test") for metric in metric_names}

    assert set(metrics["binary"]) == {"usfmae", "densenet169", "test_delong_p_holm", "external_delong_p_holm"}
    classes = ("normal", "utd", "mcdk")
    assert set(metrics["multiclass"]) == {"usfmae", "densenet169"} | {
        f"{name}_delong_p_holm_{class_name}" for name in ("test", "external") for class_name in classes
    }
    for task in ("binary", "multiclass"):
        for model in ("usfmae", "densenet169"):
            assert set(metrics[task][model]) == headline


def test_a_holdout_of_correlated_series_is_one_unit_per_series(tmp_path):
    """Frames of one series are resampled together and named: '80 images from 20 series'."""
    run_dirs = write_prediction_runs(tmp_path / "models", n_test=80, seed=3, tasks=("binary",), series_size=4)
    splits = splits_of(tmp_path / "models")
    binary = {"evaluate": {"bootstrap_resamples": 200}, "finetune": {"tasks": ["binary"]}}
    clustered = run(params_from_dict(binary), run_dirs, splits, tmp_path / "clustered")
    as_frames = params_from_dict(binary | {"data": {"group_column": "none"}})
    independent = run(as_frames, run_dirs, splits, tmp_path / "independent")
    summary = json.loads((clustered / "comparison.json").read_text())["binary"]
    frames = json.loads((independent / "comparison.json").read_text())["binary"]
    holdout = summary["sets"]["test"]
    assert (holdout["n"], holdout["clusters"]) == (80, 20)
    assert holdout["delong"]["anomaly"]["clusters"] == 20
    assert holdout["mcnemar"]["method"] == "clustered"

    def width(result):
        interval = result["sets"]["test"]["bootstrap"]["auc_difference"]
        return interval["high"] - interval["low"]

    assert width(summary) > width(frames)
    assert (
        holdout["delong"]["anomaly"]["std_error"] > frames["sets"]["test"]["delong"]["anomaly"]["std_error"]
    )
    page = (clustered / "comparison.md").read_text()
    assert "80 images from 20 series" in page and "cluster-bootstrap (resampling series)" in page
    assert "from 20 series" not in (independent / "comparison.md").read_text()


def test_one_training_run_says_first_that_training_variance_is_not_in_the_intervals(compared):
    out_dir, _ = compared
    page = (out_dir / "comparison.md").read_text()
    first_paragraph = page.split("\n\n")[1]
    assert (
        "trained once" in first_paragraph and "training variance is not in these intervals" in first_paragraph
    )


def test_repeats_are_compared_one_by_one_and_together(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "models", n_external=40, repeats=3, series_size=2)
    params = params_from_dict({"evaluate": {"bootstrap_resamples": 200, "repeats": 3}})
    out_dir = run(params, run_dirs, splits_of(tmp_path / "models"), tmp_path / "comparison")
    summary = json.loads((out_dir / "comparison.json").read_text())["binary"]
    assert summary["repeats"] == 3
    for name in ("external", "test"):
        over = summary["sets"][name]["repeats"]["anomaly"]
        assert [entry["repeat"] for entry in over["per_repeat"]] == [0, 1, 2]
        assert over["mean_difference"] == pytest.approx(np.mean(over["differences"]))
        assert over["low"] < over["mean_difference"] < over["high"]
        assert 0 <= over["holds_in"] <= 3
        declared = next(test for test in summary["tests"] if test["hypothesis"] == f"delong:{name}")
        assert declared["p_value"] == pytest.approx(over["p_value"])
        assert "over 3 repeats" in declared["statistic"]
    page = (out_dir / "comparison.md").read_text()
    assert "trained 3 times" in page.split("\n\n")[1]
    assert f"holds in {summary['sets']['test']['repeats']['anomaly']['holds_in']} of 3 repeats" in page
    multiclass = json.loads((out_dir / "comparison.json").read_text())["multiclass"]
    assert set(multiclass["sets"]["test"]["repeats"]) == {"normal", "utd", "mcdk"}


def test_a_missing_training_repeat_is_refused_naming_it(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "models", tasks=("binary",), repeats=2)
    params = params_from_dict(
        {"evaluate": {"bootstrap_resamples": 200, "repeats": 3}, "finetune": {"tasks": ["binary"]}}
    )
    out_dir = tmp_path / "comparison"
    with pytest.raises(DataError, match="no runs of training repeat 2.*lower evaluate.repeats"):
        run(params, run_dirs, splits_of(tmp_path / "models"), out_dir)
    assert not out_dir.exists()


def test_operating_points_are_shown_on_every_set_and_a_rule_that_does_not_travel_is_flagged(compared):
    """The external set's weaker signal lowers the sensitivity the validation threshold reaches there."""
    out_dir, _ = compared
    summary = json.loads((out_dir / "comparison.json").read_text())["binary"]
    for model, entry in summary["operating_points"].items():
        assert entry["validation"]["n"] == 100  # every development image, out of fold
        for name in ("validation", "test", "external"):
            interval = entry[name]["sensitivity"]
            assert interval["low"] <= interval["estimate"] <= interval["high"]
        drop = entry["validation"]["sensitivity"]["estimate"] - entry["external"]["sensitivity"]["estimate"]
        assert bool(entry["flags"]) == (drop > 0.1), (model, drop)
        assert (
            entry["test"]["sensitivity"]
            == summary["sets"]["test"]["bootstrap"]["sensitivity_a" if model == "usfmae" else "sensitivity_b"]
        )
    assert any(entry["flags"] for entry in summary["operating_points"].values())
    page = (out_dir / "comparison.md").read_text()
    assert "Operating points across sets" in page and "Operating point not kept" in page


def test_a_fold_model_kept_at_its_first_epoch_or_chosen_below_the_floor_is_flagged(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "models", tasks=("binary",))
    flagged = next(d for d in run_dirs if d.parts[-3] == "baseline" and d.name == "fold2")
    info = json.loads((flagged / "run.json").read_text())
    info |= {
        "selection": {"split": "selection", "images": 6, "groups": 4},
        "selection_flags": ["first_epoch"],
    }
    (flagged / "run.json").write_text(json.dumps(info))
    params = params_from_dict({"evaluate": {"bootstrap_resamples": 200}, "finetune": {"tasks": ["binary"]}})
    out_dir = run(params, run_dirs, splits_of(tmp_path / "models"), tmp_path / "comparison")
    summary = json.loads((out_dir / "comparison.json").read_text())["binary"]
    fold = next(f for f in summary["folds"]["densenet169"] if f["fold"] == 2)
    assert fold["selection_flags"] == ["first_epoch"] and fold["selection"]["images"] == 6
    page = (out_dir / "comparison.md").read_text()
    assert (
        "Fold models whose epoch choice cannot carry much weight: DenseNet-169 fold 2: it was kept at its "
        "first epoch" in page
    )
    assert "| 6 images, 4 groups | first_epoch |" in page
