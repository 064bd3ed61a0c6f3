import copy

import pytest
from comparekit import FOLDS, write_prediction_runs

from renalmae.evaluate import check_runs, compare_task, load_run
from renalmae.evaluate.report import plain_summary, tables
from renalmae.params import EvaluateParams


@pytest.fixture(scope="module")
def binary_summary(tmp_path_factory) -> dict:
    run_dirs = write_prediction_runs(tmp_path_factory.mktemp("report") / "models", tasks=("binary",))
    runs = check_runs([load_run(d) for d in run_dirs], ["binary"], FOLDS)
    return compare_task("binary", runs["binary"], EvaluateParams(bootstrap_resamples=100)).summary


def test_summary_says_which_model_is_better_by_how_much_and_how_sure(binary_summary):
    text = plain_summary(binary_summary)
    assert "USF-MAE separated anomalous from normal kidneys better than DenseNet-169" in text
    assert "AUC points" in text and "% relative" in text
    assert "confidence interval of the AUC difference" in text
    assert "Holm-adjusted p" in text
    sensitivity = round(100 * binary_summary["ensemble"]["usfmae"]["sensitivity"])
    assert f"USF-MAE found {sensitivity} % of anomalies" in text


def test_summary_of_equal_models_names_no_winner(binary_summary):
    summary = copy.deepcopy(binary_summary)
    summary["ensemble"]["densenet169"]["auc"] = summary["ensemble"]["usfmae"]["auc"]
    summary["differences"]["auc"] = {"absolute": 0.0, "relative_percent": 0.0}
    assert "both models separated anomalous from normal kidneys equally well" in plain_summary(summary)


def test_undefined_values_show_as_n_a_in_tables(binary_summary):
    summary = copy.deepcopy(binary_summary)
    summary["ensemble"]["usfmae"]["auc"] = None
    summary["differences"]["auc"] = {"absolute": None, "relative_percent": None}
    metrics_table = tables(summary)[0][2]
    auc_row = next(row for row in metrics_table if row[0] == "AUC")
    assert auc_row[1].startswith("n/a") and auc_row[-1] == "n/a"
    assert "undefined" in plain_summary(summary)
