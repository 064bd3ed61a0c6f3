"""Epoch selection on an inner grouped split of the training folds (`train.selection_fraction`): the
validation fold a number is reported on never picks the model."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from trainkit import TinyClassifier, tiny_params, write_ingest, write_splits

from renalmae.data.cache import TABLE_FILE
from renalmae.data.splitting import selection_split
from renalmae.errors import DataError, ParamsError
from renalmae.train.classifier import epoch_selection, load_fold, selection_size, train_classifier, write_run
from renalmae.train.selection import SELECTION_FLAGS, selection_flags

SELECT_10 = tiny_params(train={"selection_fraction": 0.1})
LABELS = ["normal"] * 48 + ["utd"] * 32 + ["mcdk"] * 16


@pytest.fixture
def paired_series(tmp_path):
    """96 labelled images in series of two frames (group = series), 24 pool images, 2 folds."""
    table = write_ingest(tmp_path / "ingested", LABELS, pool=24)
    labelled = table["origin"] == "labelled"
    table.loc[labelled, "group"] = [f"series-{index // 2}" for index in range(int(labelled.sum()))]
    table.to_parquet(tmp_path / "ingested" / TABLE_FILE, index=False)
    write_splits(tmp_path / "splits.json", table)
    return tmp_path / "ingested", tmp_path / "splits.json", table


def test_the_selection_split_is_a_grouped_share_of_the_training_folds(paired_series):
    ingest_dir, splits_path, table = paired_series
    params = tiny_params(train={"selection_fraction": 0.2})
    fold_data = load_fold(params, ingest_dir, splits_path, "binary", 0)
    unsplit = load_fold(tiny_params(train={"selection_fraction": 0.0}), ingest_dir, splits_path, "binary", 0)
    selection, train = set(fold_data.ids["selection"]), set(fold_data.ids["train"])
    assert selection and not selection & train and not selection & set(fold_data.ids["val"])
    assert selection | train == set(unsplit.ids["train"])
    assert 0.1 < len(selection) / len(unsplit.ids["train"]) < 0.3
    group_of = table.set_index("id")["group"]
    assert not set(group_of[list(selection)]) & set(group_of[list(train)])  # series never split
    assert set(fold_data.targets["selection"]) == {0, 1}


def _fit(fold_data, params, seed=0):
    torch.manual_seed(seed)
    model = TinyClassifier(num_classes=2)
    result = train_classifier(model, fold_data, params, params.finetune, lr=3e-2)
    return result, model


def test_the_validation_fold_does_not_pick_the_epoch(paired_series):
    ingest_dir, splits_path, _ = paired_series
    params = tiny_params(
        train={"selection_fraction": 0.2}, finetune={"epochs": 4, "early_stopping_patience": 2}
    )
    fold_data = load_fold(params, ingest_dir, splits_path, "binary", 0)
    result, model = _fit(fold_data, params)
    # the same training with every validation label flipped: nothing about the chosen model changes
    flipped = fold_data.targets | {"val": 1 - fold_data.targets["val"]}
    result_flipped, model_flipped = _fit(replace(fold_data, targets=flipped), params)
    assert result.best_epoch == result_flipped.best_epoch
    assert [row["selection_auc"] for row in result.history] == [
        row["selection_auc"] for row in result_flipped.history
    ]
    pairs = zip(model.state_dict().values(), model_flipped.state_dict().values(), strict=True)
    assert all(torch.equal(weights, weights_flipped) for weights, weights_flipped in pairs)
    assert all("val_auc" not in row for row in result.history)
    assert epoch_selection(fold_data, params)["split"] == "selection"


def test_selection_fraction_zero_selects_on_the_validation_fold_and_says_so(paired_series):
    ingest_dir, splits_path, _ = paired_series
    params = tiny_params(train={"selection_fraction": 0.0}, finetune={"epochs": 1})
    fold_data = load_fold(params, ingest_dir, splits_path, "binary", 0)
    assert "selection" not in fold_data.ids
    result, _ = _fit(fold_data, params)
    assert "val_auc" in result.history[0]
    record = epoch_selection(fold_data, params)
    assert record["split"] == "val" and "optimistic" in record["description"]


def test_a_selection_split_of_one_class_is_refused(tmp_path):
    table = write_ingest(tmp_path / "ingested", ["normal"] * 40 + ["utd"] * 2, pool=0)
    write_splits(tmp_path / "splits.json", table, test_fraction=0.25)
    with pytest.raises(DataError, match=r"selection split of fold 0 .* single class.*selection_fraction"):
        load_fold(SELECT_10, tmp_path / "ingested", tmp_path / "splits.json", "binary", 0)


def test_fewer_groups_per_class_than_selection_folds_still_give_a_selection_split_of_every_class():
    """12 groups, 6 per class, fraction 0.1: no class has the 10 groups scikit-learn would deal into 10
    folds, so it deals into 6 and one group of each class picks the epoch."""
    labels = np.array([0] * 12 + [1] * 12)
    groups = np.repeat(np.arange(12), 2)  # two frames a series; series 0-5 normal, 6-11 anomalous

    held = selection_split(labels, groups, 0.1, seed=0)

    assert set(labels[held]) == {0, 1} and len(set(groups[held])) == 2


def test_too_few_groups_for_the_selection_split_are_refused(tmp_path):
    table = write_ingest(tmp_path / "ingested", ["normal"] * 6 + ["utd"] * 6, pool=0)
    write_splits(tmp_path / "splits.json", table, test_fraction=0.2)
    with pytest.raises(DataError, match=r"only \d+ groups .* to hold out 10% .*selection_fraction: 0"):
        load_fold(SELECT_10, tmp_path / "ingested", tmp_path / "splits.json", "binary", 0)


FLOOR = {"selection_min_groups_per_class": 3, "selection_min_images_per_class": 6}


def _series(counts: dict[str, int], frames: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels and series ids of `counts[label]` series per label, `frames` images each."""
    labels, groups = [], []
    for label, series in counts.items():
        for index in range(series):
            labels += [label] * frames
            groups += [f"{label}-{index}"] * frames
    return np.array(labels), np.array(groups)


def test_a_class_below_the_floor_takes_more_of_its_series():
    labels, groups = _series({"normal": 40, "mcdk": 8})
    drawn = selection_split(labels, groups, 0.1, seed=0)
    assert len(set(groups[drawn & (labels == "mcdk")])) < 3  # 10 % of 8 series: one

    held = selection_split(labels, groups, 0.1, seed=0, min_groups_per_class=3, min_images_per_class=6)

    for label in ("normal", "mcdk"):
        assert len(set(groups[held & (labels == label)])) >= 3
        assert (held & (labels == label)).sum() >= 6
    assert not set(groups[held]) & set(groups[~held])  # series never split
    assert (held & drawn).sum() == drawn.sum()  # the drawn split only grows


def test_the_floor_never_takes_more_than_half_of_a_class_series():
    labels, groups = _series({"normal": 40, "mcdk": 4})

    held = selection_split(labels, groups, 0.1, seed=0, min_groups_per_class=3, min_images_per_class=6)

    assert len(set(groups[held & (labels == "mcdk")])) == 2  # 2 of 4 series: training keeps the other 2


def test_a_fold_whose_selection_split_stays_below_the_floor_is_flagged(paired_series):
    """The fixture's folds train on 6-7 mcdk frames: half of their series cannot reach 6 frames."""
    ingest_dir, splits_path, table = paired_series
    params = tiny_params(train={"selection_fraction": 0.1, **FLOOR})

    fold_data = load_fold(params, ingest_dir, splits_path, "multiclass", 0)
    record = selection_size(fold_data, params)

    unsplit = load_fold(
        tiny_params(train={"selection_fraction": 0.0}), ingest_dir, splits_path, "multiclass", 0
    )
    mcdk_series = table.set_index("id").loc[unsplit.ids["train"]].query("label == 'mcdk'")["group"].nunique()
    assert record["per_class"]["mcdk"]["groups"] == mcdk_series // 2
    assert record["per_class"]["mcdk"]["images"] < 6 and record["below_floor"] == ["mcdk"]
    assert record["per_class"]["normal"]["groups"] >= 3 and record["per_class"]["normal"]["images"] >= 6
    assert selection_flags(record, best_epoch=2, best_value=0.8, epochs_run=4) == ["below_floor"]


def test_run_json_gives_the_size_of_the_split_that_picked_the_epoch_and_its_flags(paired_series, tmp_path):
    ingest_dir, splits_path, table = paired_series
    params = tiny_params(
        train={"selection_fraction": 0.2, **FLOOR}, finetune={"epochs": 3, "early_stopping_patience": 0}
    )
    fold_data = load_fold(params, ingest_dir, splits_path, "binary", 0)
    result, model = _fit(fold_data, params)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run(run_dir, model, {"name": "tiny"}, {}, fold_data, result, "tiny", params, started=0.0)
    run = json.loads((run_dir / "run.json").read_text())

    selection = run["selection"]
    held = table.set_index("id").loc[fold_data.ids["selection"]]
    assert selection["split"] == "selection"
    assert selection["images"] == len(held) and selection["groups"] == held["group"].nunique()
    per_class = {"normal": (held["label"] == "normal"), "anomaly": (held["label"] != "normal")}
    for name, rows in per_class.items():
        assert selection["per_class"][name] == {
            "images": int(rows.sum()),
            "groups": held[rows]["group"].nunique(),
        }
    assert selection["floor"] == {"groups_per_class": 3, "images_per_class": 6}
    assert run["best_epoch"] == result.best_epoch and run["epochs_run"] == 3
    assert run["selection_flags"] == selection_flags(selection, result.best_epoch, result.best_value, 3)


def test_a_model_kept_at_its_first_epoch_is_flagged():
    record = {"below_floor": []}
    assert selection_flags(record, best_epoch=0, best_value=0.7, epochs_run=3) == ["first_epoch"]
    assert selection_flags(record, best_epoch=1, best_value=0.7, epochs_run=3) == []
    assert selection_flags(record, best_epoch=0, best_value=0.7, epochs_run=1) == []  # nothing to choose from


def test_a_model_whose_selection_auc_was_never_defined_is_flagged_unranked():
    record = {"below_floor": ["mcdk"]}
    assert selection_flags(record, best_epoch=0, best_value=-math.inf, epochs_run=3) == [
        "below_floor",
        "unranked",
    ]


def test_every_flag_has_a_sentence_naming_what_it_means():
    assert set(SELECTION_FLAGS) == {"below_floor", "first_epoch", "unranked"}
    assert "train.selection_min_groups_per_class" in SELECTION_FLAGS["below_floor"]


@pytest.mark.parametrize("key", ["selection_min_groups_per_class", "selection_min_images_per_class"])
def test_a_negative_selection_floor_is_refused_naming_the_key(key):
    with pytest.raises(ParamsError, match=key):
        tiny_params(train={key: -1})
