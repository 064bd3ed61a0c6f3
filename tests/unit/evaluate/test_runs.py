"""Reading trained-model runs: exactly the tasks and folds the params name, whatever else is on disk, and
the models' identities from their own run.json (any baseline architecture)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from comparekit import splits_of, write_prediction_runs

from renalmae.errors import DataError
from renalmae.evaluate.runs import check_runs, load_runs, run_dirs_under
from renalmae.params import params_from_dict
from renalmae.steps.compare import run as compare

BINARY = ("binary",)


def params(folds: list[int], **evaluate):
    return params_from_dict(
        {
            "split": {"folds": folds},
            "finetune": {"tasks": list(BINARY)},
            "evaluate": {"bootstrap_resamples": 100, **evaluate},
        }
    )


def test_runs_left_from_an_earlier_5_fold_run_are_ignored_with_a_warning(tmp_path, caplog):
    """split.folds cut from 5 to 3 and the pipeline re-run: folds 3 and 4 are still on disk."""
    write_prediction_runs(tmp_path / "models", tasks=BINARY)
    roots = [tmp_path / "models" / "finetune", tmp_path / "models" / "baseline"]

    with caplog.at_level(logging.WARNING, logger="renalmae.evaluate.runs"):
        out_dir = compare(params([0, 1, 2]), roots, splits_of(tmp_path / "models"), tmp_path / "comparison")

    summary = json.loads((out_dir / "comparison.json").read_text())["binary"]
    assert [entry["fold"] for entry in summary["folds"]["usfmae"]] == [0, 1, 2]
    assert "fold3" in caplog.text and "fold4" in caplog.text and "ignoring 4 run folder(s)" in caplog.text
    ensemble = pd.read_parquet(out_dir / "ensemble_predictions.parquet")
    candidate = ensemble[ensemble["model"] == "usfmae"].sort_values("id")
    fold_models = [
        pd.read_parquet(tmp_path / "models" / "finetune" / "binary" / f"fold{fold}" / "predictions.parquet")
        for fold in (0, 1, 2)
    ]
    holdout = [frame[frame["split"] == "test"].sort_values("id") for frame in fold_models]
    three_fold_mean = np.mean([frame["prob_anomaly"].to_numpy() for frame in holdout], axis=0)
    np.testing.assert_allclose(candidate["prob_anomaly"].to_numpy(), three_fold_mean)


def test_a_baseline_of_another_architecture_is_compared(tmp_path):
    """The baseline is named after `baseline.arch`: compare takes its name from its run.json."""
    run_dirs = write_prediction_runs(tmp_path / "models", tasks=BINARY, baseline_name="resnet18")

    out_dir = compare(
        params([0, 1, 2, 3, 4]), run_dirs, splits_of(tmp_path / "models"), tmp_path / "comparison"
    )

    metrics = json.loads((out_dir / "metrics.json").read_text())["binary"]
    summary = json.loads((out_dir / "comparison.json").read_text())["binary"]
    assert (summary["candidate"], summary["baseline"]) == ("usfmae", "resnet18")
    assert set(summary["sets"]["test"]["ensemble"]) == {"usfmae", "resnet18"} and "resnet18" in metrics
    assert (out_dir / "figures" / "roc_binary.png").is_file()


def test_baseline_runs_of_two_architectures_are_refused(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "a", tasks=BINARY)
    other = write_prediction_runs(tmp_path / "b", tasks=BINARY, baseline_name="resnet18")
    mixed = [d for d in run_dirs if d.parts[-3] == "finetune" or d.name != "fold4"]
    mixed += [d for d in other if d.parts[-3] == "baseline" and d.name == "fold4"]
    runs = load_runs(mixed, list(BINARY), [0, 1, 2, 3, 4])

    with pytest.raises(DataError, match=r"baseline runs of task binary are of different models"):
        check_runs(runs, list(BINARY), [0, 1, 2, 3, 4])


def test_a_run_json_without_a_role_is_refused_naming_the_fix(tmp_path):
    run_dir = write_prediction_runs(tmp_path / "models", tasks=BINARY)[0]
    info = json.loads((run_dir / "run.json").read_text())
    del info["role"]
    (run_dir / "run.json").write_text(json.dumps(info))

    with pytest.raises(DataError, match=r"run.json: missing keys \['role'\]; re-run the training step"):
        load_runs([run_dir], list(BINARY), [0])


def test_an_unreadable_run_json_is_refused_naming_the_file(tmp_path):
    run_dir = write_prediction_runs(tmp_path / "models", tasks=BINARY)[0]
    (run_dir / "run.json").write_text("{not json")

    with pytest.raises(DataError, match=r"run.json is unreadable"):
        load_runs([run_dir], list(BINARY), [0])


def test_a_runs_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"no-such-folder does not exist"):
        run_dirs_under([tmp_path / "no-such-folder"])


def test_run_folders_are_found_below_roots_and_taken_as_given(tmp_path):
    run_dirs = write_prediction_runs(tmp_path / "models", tasks=BINARY)

    assert run_dirs_under([tmp_path / "models"]) == sorted(run_dirs)
    assert run_dirs_under(run_dirs[:2]) == sorted(run_dirs[:2])


def test_check_runs_refuses_a_fold_outside_the_params(tmp_path):
    """A direct caller that skips `load_runs` still cannot average a stale fold into the ensemble."""
    from renalmae.evaluate.runs import load_run

    runs = [load_run(d) for d in write_prediction_runs(tmp_path / "models", tasks=BINARY)]

    with pytest.raises(DataError, match=r"fold 3 .* is outside the params' folds \[0, 1, 2\]"):
        check_runs(runs, list(BINARY), [0, 1, 2])
