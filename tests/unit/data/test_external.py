"""The external set (another site, device or period): how `split`, `fold` and `split.external_folds` make it,
and that nothing but prediction ever sees it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_split import given_folds_by_group, labelled_table, make_params, passed_validation

from renalmae.data.splits import load_splits
from renalmae.errors import DataError, ParamsError
from renalmae.params import params_from_dict
from renalmae.steps import split
from renalmae.steps.pretrain import pretraining_ids

EXTERNAL_FOLD = 10 + 7 * 3  # given_folds_by_group(4) gives folds 10, 17, 24, 31


def _groups(table: pd.DataFrame) -> list[str]:
    return sorted(table.loc[table["origin"] == "labelled", "group"].unique())


def test_given_external_rows_form_the_external_set_and_the_holdout_is_drawn_from_the_rest(
    tmp_path, make_ingest_dir
):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        external_groups = set(_groups(table)[::5])
        table.loc[table["group"].isin(external_groups), "split"] = "external"
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=120, table_hook=hook)
    out_path = split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    splits, table = load_splits(out_path), labelled_table(ingest_dir)
    assert sorted(splits.external_ids) == sorted(table.loc[table["split"] == "external", "id"])
    assert splits.test_ids, "without a given train/test split the holdout is drawn from the other rows"
    assert not set(splits.test_ids) & set(splits.external_ids)
    assert not set(splits.development_ids) & set(splits.external_ids)
    payload = json.loads(out_path.read_text())
    assert sum(payload["counts"]["external"].values()) == len(splits.external_ids)


def test_external_folds_hold_out_given_folds_and_the_rest_are_the_cv_folds(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=150, table_hook=given_folds_by_group(4))
    params = make_params(folds=[0, 1, 2], external_folds=[EXTERNAL_FOLD])
    out_path = split.run(params, ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    splits, table = load_splits(out_path), labelled_table(ingest_dir).set_index("id")
    assert set(table.loc[splits.external_ids, "fold"]) == {EXTERNAL_FOLD}
    assert sorted(splits.external_ids) == sorted(table.index[table["fold"] == EXTERNAL_FOLD])
    for fold, val_ids in enumerate(splits.val_ids_by_fold):
        assert set(table.loc[val_ids, "fold"]) == {10 + 7 * fold}
    assert splits.evaluation_splits.keys() == {"test", "external"}


def test_no_external_set_keeps_the_splits_as_before(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=80)
    splits = load_splits(
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    )
    assert splits.external_ids == [] and list(splits.evaluation_splits) == ["test"]


def test_external_folds_the_input_does_not_give_are_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=given_folds_by_group(3))
    with pytest.raises(ParamsError, match=r"external_folds names folds \[99\].*its folds: \[10, 17, 24\]"):
        split.run(
            make_params(folds=[0, 1], external_folds=[99]),
            ingest_dir,
            passed_validation(tmp_path),
            tmp_path / "s.json",
        )
    assert not (tmp_path / "s.json").exists()


def test_external_folds_without_a_given_fold_column_are_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=60)
    with pytest.raises(ParamsError, match=r"external_folds is \[1\] but the input gives no `fold` column"):
        split.run(
            make_params(external_folds=[1]), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json"
        )


def test_external_folds_without_use_given_are_refused_at_load():
    with pytest.raises(ParamsError, match=r"split.*external_folds names given folds.*use_given: true"):
        params_from_dict({"split": {"use_given": False, "external_folds": [7, 8]}})


def test_a_group_in_the_external_set_and_in_training_is_refused(tmp_path, make_ingest_dir):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        labelled = table[table["origin"] == "labelled"]
        sizes = labelled.groupby("group").size()
        leaking_group = sizes[sizes >= 2].index[0]
        table.loc[table.index[table["group"] == leaking_group][0], "split"] = "external"
        table.loc[table["group"].isin(_groups(table)[-5:]), "split"] = "external"
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=hook)
    with pytest.raises(DataError, match=r"group '.*' in external, (fold \d|test).*split column"):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json")


def test_external_folds_whose_rows_say_train_are_refused(tmp_path, make_ingest_dir):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        table = given_folds_by_group(4)(table)
        labelled = table["origin"] == "labelled"
        table.loc[labelled, "split"] = np.where(table.loc[labelled, "fold"] == 10, "test", "train")
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=150, table_hook=hook)
    with pytest.raises(DataError, match=r"are in split.external_folds but their given `split` says train"):
        split.run(
            make_params(folds=[0, 1], external_folds=[EXTERNAL_FOLD]),
            ingest_dir,
            passed_validation(tmp_path),
            tmp_path / "s.json",
        )


def test_an_unknown_split_value_is_refused_naming_the_allowed_ones(tmp_path, make_ingest_dir):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[table["origin"] == "labelled", "split"] = "train"
        table.loc[table.index[0], "split"] = "holdout"
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=60, table_hook=hook)
    with pytest.raises(
        DataError, match=r"unknown `split` value\(s\) \['holdout'\]; allowed: train, test, external"
    ):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json")


def test_external_images_never_reach_the_pretraining_pool():
    table = pd.DataFrame({"id": ["pool-1", "ext-1"], "origin": ["pool", "labelled"]})
    assert pretraining_ids(table, ["dev-1"], ["test-1", "ext-1"]) == ["pool-1", "dev-1"]
    with pytest.raises(DataError, match="holdout test / external images"):
        pretraining_ids(table, ["dev-1", "ext-1"], ["test-1", "ext-1"])


def test_splits_json_counts_copies_of_development_images_and_the_duplicates_ingest_dropped(
    tmp_path, make_ingest_dir
):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        groups = _groups(table)
        labelled = table["origin"] == "labelled"
        table.loc[labelled, "split"] = "train"
        table.loc[table["group"].isin(groups[::5]), "split"] = "external"
        table.loc[table["group"].isin(groups[1::5]), "split"] = "test"
        development_pixels = table.loc[table["group"] == groups[2], "sha256"].iloc[0]
        # one external and one test image hold the pixels of a development image (validate would refuse)
        for part in ("external", "test"):
            table.loc[table.index[table["split"] == part][0], "sha256"] = development_pixels
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=120, table_hook=hook)
    summary = json.loads((ingest_dir / "ingest.json").read_text())
    dropped = [{"source": "a.png", "reason": "copy of b.png"}] * 3
    (ingest_dir / "ingest.json").write_text(json.dumps(summary | {"dropped_duplicates": dropped}))
    out_path = split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json")
    data = json.loads(out_path.read_text())["data"]
    assert data["duplicates_dropped_at_ingest"] == 3
    assert data["copies_of_development_images"] == {"test": 1, "external": 1}
