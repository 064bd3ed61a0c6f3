"""Epoch selection on an inner grouped split of the training folds (`train.selection_fraction`): the
validation fold a number is reported on never picks the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from trainkit import TinyClassifier, tiny_params, write_ingest, write_splits

from renalmae.data.cache import TABLE_FILE
from renalmae.data.splitting import selection_split
from renalmae.errors import DataError
from renalmae.train.classifier import epoch_selection, load_fold, train_classifier

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
