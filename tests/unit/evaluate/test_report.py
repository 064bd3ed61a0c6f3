"""The report's words: which model, by how much, how sure, on which data, by which test and class; wording
from the params; nothing the numbers beside it contradict."""

import copy
import dataclasses
import re

import pytest
from comparekit import FOLDS, write_prediction_runs

from renalmae.evaluate import check_runs, compare_task, load_run
from renalmae.evaluate.report import data_sentence, p_text, plain_summary, provenance, render_markdown, tables
from renalmae.params import DataParams, EvaluateParams

SETTINGS = EvaluateParams(bootstrap_resamples=100)
KIDNEY = DataParams(description="fetal kidney")
BREAST = DataParams(classes=["normal", "benign", "malignant"], negative_class="normal", description="breast")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    run_dirs = write_prediction_runs(tmp_path_factory.mktemp("report") / "models", n_external=60)
    return check_runs([load_run(d) for d in run_dirs], ["binary", "multiclass"], FOLDS)


@pytest.fixture(scope="module")
def binary_summary(runs) -> dict:
    return compare_task("binary", runs["binary"], SETTINGS, KIDNEY).summary


@pytest.fixture(scope="module")
def multiclass_summary(runs) -> dict:
    return compare_task("multiclass", runs["multiclass"], SETTINGS, KIDNEY).summary


def test_summary_says_which_model_is_better_by_how_much_how_sure_and_on_which_data(binary_summary):
    text = plain_summary(binary_summary, "test")
    assert text.startswith("On the internal holdout, 40 fetal kidney images (24 normal, 16 anomaly)")
    assert (
        "USF-MAE separated anomalous (utd, mcdk) from normal fetal kidney images better than DenseNet-169"
        in text
    )
    assert "AUC points" in text and "% relative" in text
    assert "bootstrap interval of the AUC difference" in text
    sensitivity = round(100 * binary_summary["sets"]["test"]["ensemble"]["usfmae"]["sensitivity"])
    assert f"USF-MAE found {sensitivity} % of anomalies (sensitivity, CI" in text
    assert "cleared" in text and "of normal images (specificity" in text
    external = plain_summary(binary_summary, "external")
    assert external.startswith("On the external set (another site or device: never used for training")


def test_the_declared_delong_test_is_named_with_its_holm_p(binary_summary):
    text = plain_summary(binary_summary, "external")
    test = next(t for t in binary_summary["tests"] if t["key"] == "delong:external")
    assert test["in_family"]
    assert f"Holm-adjusted over the {sum(t['in_family'] for t in binary_summary['tests'])} declared" in text
    assert p_text(test["p_holm"]) in text


def test_a_rejected_test_whose_interval_includes_zero_is_called_borderline_not_certain(binary_summary):
    summary = copy.deepcopy(binary_summary)
    test = next(t for t in summary["tests"] if t["key"] == "delong:external")
    test |= {"rejected": True, "p_holm": 0.03}
    summary["sets"]["external"]["bootstrap"]["auc_difference"] |= {"low": -0.01, "high": 0.2}
    text = plain_summary(summary, "external")
    assert "rejects equal AUCs" in text and "borderline" in text
    assert "unlikely to be chance" not in text


def test_summary_of_equal_models_names_no_winner(binary_summary):
    summary = copy.deepcopy(binary_summary)
    ensemble = summary["sets"]["test"]["ensemble"]
    ensemble["densenet169"]["auc"] = ensemble["usfmae"]["auc"]
    summary["sets"]["test"]["differences"]["auc"] = {"absolute": 0.0, "relative_percent": 0.0}
    assert "both models separated anomalous (utd, mcdk) from normal fetal kidney images equally well" in (
        plain_summary(summary, "test")
    )


def test_undefined_values_show_as_n_a_in_tables_and_say_why(binary_summary):
    summary = copy.deepcopy(binary_summary)
    summary["sets"]["test"]["ensemble"]["usfmae"] |= {"auc": None, "auc_undefined": "the set holds one class"}
    summary["sets"]["test"]["differences"]["auc"] = {"absolute": None, "relative_percent": None}
    holdout_table = next(table for table in tables(summary) if "internal holdout (40 images)" in table[0])
    auc_row = next(row for row in holdout_table[2] if row[0] == "AUC")
    assert auc_row[1] == "n/a" and auc_row[-1] == "n/a"
    assert "the AUC is undefined (the set holds one class)" in plain_summary(summary, "test")


def test_wording_comes_from_the_params_never_an_organ_word(runs):
    binary = compare_task("binary", runs["binary"], SETTINGS, BREAST).summary
    multiclass = compare_task("multiclass", _renamed(runs["multiclass"], BREAST.classes), SETTINGS, BREAST)
    text = plain_summary(binary, "test") + " ".join(
        plain_summary(multiclass.summary, n) for n in ("test", "external")
    )
    assert "separated anomalous (benign, malignant) from normal breast images" in text
    assert "told normal, benign and malignant breast images apart" in text
    assert "kidney" not in text.lower()


def _renamed(by_model, classes):
    """The same runs with other class names (a breast data set)."""
    renamed = {}
    for model, by_fold in by_model.items():
        renamed[model] = {}
        for fold, run in by_fold.items():
            columns = {f"prob_{old}": f"prob_{new}" for old, new in zip(run.classes, classes, strict=True)}
            predictions = run.predictions.rename(columns=columns)
            renamed[model][fold] = dataclasses.replace(run, classes=classes, predictions=predictions)
    return renamed


def test_multiclass_sentences_name_test_and_class_and_never_contradict_the_interval(multiclass_summary):
    for name in multiclass_summary["evaluation_sets"]:
        text = plain_summary(multiclass_summary, name)
        assert "statistically significant" not in text and "p = <" not in text
        assert "One-vs-rest DeLong tests per class (normal " in text
        assert all(f"{class_name} " in text for class_name in ("normal", "utd", "mcdk"))
        interval = multiclass_summary["sets"][name]["bootstrap"]["auc_difference"]
        if interval["low"] <= 0 <= interval["high"]:
            assert "which includes 0" in text
        rejected = [
            t["class_name"]
            for t in multiclass_summary["tests"]
            if t["rejected"] and t["hypothesis"] == f"delong:{name}"
        ]
        if rejected:
            assert f"finds the AUCs differ for {', '.join(rejected)} only" in text
        else:
            assert "no declared one-vs-rest test finds the AUCs differ for any class" in text


def test_p_values_read_as_phrases_never_p_equals_less_than(runs):
    assert p_text(0.0004) == "p < 0.001" and p_text(0.0234) == "p = 0.023" and p_text(None) == "p n/a"
    comparisons = {
        task: compare_task(task, runs[task], SETTINGS, KIDNEY) for task in ("binary", "multiclass")
    }
    markdown = render_markdown(comparisons, {"binary": {}, "multiclass": {}}, root=None)
    assert not re.search(r"p = <", markdown)


def test_the_report_says_which_data_chose_what(binary_summary):
    text = provenance(binary_summary)
    assert "Epochs were picked on an inner grouped split of the training folds" in text
    assert "each chosen (youden) on its own validation fold" in text
    assert "the internal holdout and the external set chose no epoch, threshold or decision rule" in text


def test_transductive_pretraining_is_flagged(binary_summary):
    summary = copy.deepcopy(binary_summary)
    summary["pretraining"] = {"epochs": 4, "include_development": True, "transductive": True}
    assert "Transductive pretraining" in provenance(summary)
    summary["pretraining"] = {"epochs": 0, "transductive": False}
    published = {"method": "checkpoint", "checkpoint": "usfmae.pth", "pretraining_data": "ultrasound"}
    summary["initialisation"] = {
        "usfmae": {
            "method": "mae-pretraining",
            "pretraining_data": "0 images",
            "encoder_initialisation": published,
        },
        "densenet169": {"method": "random"},
    }
    text = provenance(summary)
    assert "the published encoder (usfmae.pth) was fine-tuned as it is" in text
    assert "DenseNet-169 started from random weights (no pretraining)" in text


def test_the_report_says_how_many_duplicates_were_dropped_and_how_many_copies_crossed(binary_summary):
    summary = copy.deepcopy(binary_summary)
    summary["data"] = {
        "duplicates_dropped_at_ingest": 566,
        "near_duplicates_searched": False,
        "near_duplicates": None,
        "copies_of_development_images": {"test": 0, "external": 2},
    }
    text = data_sentence(summary)
    assert "ingest dropped 566 duplicate images (data.drop_duplicates)" in text
    assert "2 of the 60 external set images and 0 of the 40 internal holdout images are copies" in text
    assert "near-copies were not searched" in text
    summary["data"]["near_duplicates_searched"] = True
    assert "same near-duplicate cluster" in data_sentence(summary)
    summary["data"] = None
    assert "not stated" in data_sentence(summary)


def _initialisations(tmp_path, start: str, epochs: int) -> tuple[dict, dict]:
    """The candidate's run.json `initialisation` and the summary's `pretraining`, as the steps write them."""
    from renalmae.initialisation import checkpoint_initialisation, mae_initialisation, mae_pretraining_data

    pool = 0 if epochs == 0 else 1_333
    data = mae_pretraining_data(pool, 0, ["hc18"] if pool else [], "kidney", epochs=epochs)
    published = None
    if start == "checkpoint":
        published = tmp_path / "usfmae.pth"
        published.write_bytes(b"weights")
    encoder_start = checkpoint_initialisation(
        published, "370k ultrasound images" if published else None, None
    )
    record = mae_initialisation(
        tmp_path / "pretrain", {"pretraining_data": data, "initialisation": encoder_start}
    )
    return record, data


@pytest.mark.parametrize(
    ("start", "epochs", "candidate_says"),
    [
        (
            "random",
            20,
            "USF-MAE started from MAE pretraining here on 1,333 images (1,333 unlabelled from hc18;",
        ),
        ("checkpoint", 20, "labels unused), continuing from checkpoint"),
        ("checkpoint", 0, "USF-MAE started from the encoder of checkpoint"),
    ],
)
@pytest.mark.parametrize("baseline_start", ["random", "checkpoint"])
def test_each_initialisation_reads_as_one_consistent_sentence(
    binary_summary, tmp_path, start, epochs, candidate_says, baseline_start
):
    from renalmae.initialisation import checkpoint_initialisation

    summary = copy.deepcopy(binary_summary)
    candidate, summary["pretraining"] = _initialisations(tmp_path, start, epochs)
    imagenet = tmp_path / "densenet169.pth"
    imagenet.write_bytes(b"weights")
    baseline = checkpoint_initialisation(
        imagenet if baseline_start == "checkpoint" else None, "ImageNet-1k", None
    )
    summary["initialisation"] = {"usfmae": candidate, "densenet169": baseline}

    text = provenance(summary)

    usfmae = next(s for s in re.split(r"(?<=\.) ", text) if s.startswith("USF-MAE started from"))
    assert candidate_says in usfmae
    assert usfmae.count("started from") == 1 and "(no pretraining)" not in usfmae
    assert ("randomly initialised encoder" in usfmae) == (start == "random")
    assert ("MAE pretraining here" in usfmae) == (epochs > 0)
    assert ("was fine-tuned as it is" in text) == (epochs == 0)
    densenet = next(s for s in re.split(r"(?<=\.) ", text) if s.startswith("DenseNet-169 started from"))
    expected = (
        "random weights (no pretraining)" if baseline_start == "random" else "(pretrained on ImageNet-1k)"
    )
    assert expected in densenet
