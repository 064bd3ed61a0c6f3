"""The `split` step: grouped stratified folds and holdout, given folds, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from renalmae.data.splits import load_splits
from renalmae.errors import DataError, DataValidationError, ParamsError
from renalmae.params import Params, params_from_dict
from renalmae.steps import split


def make_params(**split_section) -> Params:
    return params_from_dict({"split": split_section})


def passed_validation(tmp_path: Path, success: bool = True) -> Path:
    validation_dir = tmp_path / "validation"
    validation_dir.mkdir(exist_ok=True)
    (validation_dir / "summary.json").write_text(json.dumps({"success": success}))
    return validation_dir


def labelled_table(ingest_dir: Path) -> pd.DataFrame:
    table = pd.read_parquet(ingest_dir / "table.parquet")
    return table[table["origin"] == "labelled"]


def part_of_each_id(splits_path: Path) -> dict[str, str]:
    splits = load_splits(splits_path)
    parts = {image_id: "test" for image_id in splits.test_ids}
    for fold, val_ids in enumerate(splits.val_ids_by_fold):
        parts.update({image_id: f"fold{fold}" for image_id in val_ids})
    return parts


def given_folds_by_group(k: int):
    """A table hook giving every labelled group a fold (round robin over groups) and no split."""

    def hook(table: pd.DataFrame) -> pd.DataFrame:
        labelled = table["origin"] == "labelled"
        groups = sorted(table.loc[labelled, "group"].unique())
        fold_of_group = {group: 10 + 7 * (index % k) for index, group in enumerate(groups)}
        table.loc[labelled, "fold"] = table.loc[labelled, "group"].map(fold_of_group)
        return table

    return hook


def test_split_is_deterministic_by_seed(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=80)
    validation_dir = passed_validation(tmp_path)
    first = split.run(make_params(seed=3), ingest_dir, validation_dir, tmp_path / "a.json")
    second = split.run(make_params(seed=3), ingest_dir, validation_dir, tmp_path / "b.json")
    other_seed = split.run(make_params(seed=4), ingest_dir, validation_dir, tmp_path / "c.json")
    assert first.read_text() == second.read_text()
    assert part_of_each_id(first) != part_of_each_id(other_seed)


def test_every_labelled_image_is_in_exactly_one_part_and_pool_images_in_none(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=80, pool=12)
    out_path = split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    splits = load_splits(out_path)
    placed = splits.test_ids + splits.development_ids
    assert sorted(placed) == sorted(labelled_table(ingest_dir)["id"])
    assert len(placed) == len(set(placed))
    assert splits.k_folds == 5
    assert json.loads(out_path.read_text())["origin"] == "drawn"


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_no_group_crosses_folds_or_the_test_line(tmp_path, make_ingest_dir, seed):
    ingest_dir = make_ingest_dir(tmp_path, n=90, seed=seed)
    out_path = split.run(make_params(seed=seed), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json")
    parts = part_of_each_id(out_path)
    table = labelled_table(ingest_dir)
    parts_per_group = table.assign(part=table["id"].map(parts)).groupby("group")["part"].nunique()
    assert (parts_per_group == 1).all()
    assert table.groupby("group").size().max() > 1, "the phantom should put several images in some groups"


def test_holdout_and_folds_keep_the_class_mix(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=300, class_fractions=(0.6, 0.3, 0.1))
    out_path = split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    payload = json.loads(out_path.read_text())
    test_counts = payload["counts"]["test"]
    assert 0.15 <= sum(test_counts.values()) / 300 <= 0.25
    for counts in [test_counts] + [entry["val"] for entry in payload["counts"]["folds"]]:
        total = sum(counts.values())
        assert abs(counts["normal"] / total - 0.6) < 0.12
        assert abs(counts["utd"] / total - 0.3) < 0.12
        assert counts["mcdk"] >= 1


def test_given_folds_are_used_and_mapped_to_0_to_k_minus_1(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=given_folds_by_group(3))
    out_path = split.run(
        make_params(folds=[0, 1, 2]), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json"
    )
    payload = json.loads(out_path.read_text())
    assert payload["origin"] == "given"
    table = labelled_table(ingest_dir).set_index("id")
    splits = load_splits(out_path)
    assert splits.test_ids, "without a given split a holdout test is still drawn"
    for fold, val_ids in enumerate(splits.val_ids_by_fold):
        assert set(table.loc[val_ids, "fold"]) == {10 + 7 * fold}


def test_given_split_and_folds_are_used(tmp_path, make_ingest_dir):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        table = given_folds_by_group(2)(table)
        labelled = table["origin"] == "labelled"
        groups = sorted(table.loc[labelled, "group"].unique())
        test_groups = set(groups[::4])
        table.loc[labelled, "split"] = np.where(
            table.loc[labelled, "group"].isin(test_groups), "test", "train"
        )
        table.loc[table["split"] == "test", "fold"] = pd.NA  # a manifest may leave the test rows' fold empty
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=90, class_fractions=(0.5, 0.3, 0.2), table_hook=hook)
    out_path = split.run(
        make_params(folds=[0, 1]), ingest_dir, passed_validation(tmp_path), tmp_path / "s.json"
    )
    table = labelled_table(ingest_dir)
    assert sorted(load_splits(out_path).test_ids) == sorted(table.loc[table["split"] == "test", "id"])


def test_a_fold_without_some_class_is_reported(tmp_path, make_ingest_dir):
    def no_mcdk_in_the_third_fold(table: pd.DataFrame) -> pd.DataFrame:
        table = given_folds_by_group(3)(table)
        mcdk_groups = sorted(table.loc[table["label"] == "mcdk", "group"].unique())
        for index, group in enumerate(mcdk_groups):
            table.loc[table["group"] == group, "fold"] = 10 + 7 * (index % 2)
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=no_mcdk_in_the_third_fold)
    with pytest.warns(UserWarning, match=r"without some class.*'fold 2': \['mcdk'\]"):
        out_path = split.run(
            make_params(folds=[0, 1, 2]), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json"
        )
    assert json.loads(out_path.read_text())["missing_classes"]["fold 2"] == ["mcdk"]


def test_given_folds_ignored_when_use_given_is_false(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=given_folds_by_group(3))
    out_path = split.run(
        make_params(use_given=False), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json"
    )
    payload = json.loads(out_path.read_text())
    assert payload["origin"] == "drawn" and payload["k_folds"] == 5


def test_given_fold_count_that_differs_from_k_is_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=given_folds_by_group(3))
    with pytest.raises(ParamsError, match=r"3 distinct folds.*k=5.*split.folds.*use_given: false"):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")


def test_given_folds_with_a_leaking_group_are_refused(tmp_path, make_ingest_dir):
    def leaking_hook(table: pd.DataFrame) -> pd.DataFrame:
        table = given_folds_by_group(3)(table)
        labelled = table[table["origin"] == "labelled"]
        sizes = labelled.groupby("group").size()
        leaking_group = sizes[sizes >= 2].index[0]
        second_image = labelled.index[labelled["group"] == leaking_group][1]
        table.loc[second_image, "fold"] = 10 if table.loc[second_image, "fold"] != 10 else 17
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=90, pool=0, table_hook=leaking_hook)
    leaking_group = _group_with_two_given_folds(ingest_dir)
    # refused whatever the holdout draw does with the group (it may land whole in the test set)
    for seed in range(4):
        with pytest.raises(DataError, match=rf"group '{leaking_group}' in given fold .*use_given: false"):
            split.run(
                make_params(folds=[0, 1, 2], seed=seed),
                ingest_dir,
                passed_validation(tmp_path),
                tmp_path / "s.json",
            )
    assert not (tmp_path / "s.json").exists()


def _group_with_two_given_folds(ingest_dir: Path) -> str:
    table = labelled_table(ingest_dir)
    folds_per_group = table.groupby("group")["fold"].nunique()
    return str(folds_per_group[folds_per_group > 1].index[0])


def test_given_split_with_a_group_on_both_sides_is_refused(tmp_path, make_ingest_dir):
    def hook(table: pd.DataFrame) -> pd.DataFrame:
        labelled = table.index[table["origin"] == "labelled"]
        table.loc[labelled, "split"] = "train"
        sizes = table.loc[labelled].groupby("group").size()
        leaking_group = sizes[sizes >= 2].index[0]
        table.loc[table.index[table["group"] == leaking_group][0], "split"] = "test"
        table.loc[table.index[table["group"] == sizes.index[-1]], "split"] = "test"
        return table

    ingest_dir = make_ingest_dir(tmp_path, n=60, table_hook=hook)
    with pytest.raises(DataError, match=r"group '.*' in fold \d, test.*fix the input's split column"):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")


def test_class_too_small_for_k_folds_is_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=50, class_fractions=(0.62, 0.32, 0.06))  # 3 mcdk images
    with pytest.raises(DataError, match=r"'mcdk'.*fewer images outside the holdout test than k=5"):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")


def test_class_in_fewer_groups_than_k_folds_is_refused(tmp_path, make_ingest_dir):
    def two_mcdk_patients(table: pd.DataFrame) -> pd.DataFrame:
        mcdk_rows = table.index[table["label"] == "mcdk"]
        table.loc[mcdk_rows, "group"] = [f"mcdk-patient-{i % 2}" for i in range(len(mcdk_rows))]
        return table

    ingest_dir = make_ingest_dir(
        tmp_path, n=100, class_fractions=(0.5, 0.3, 0.2), table_hook=two_mcdk_patients
    )
    assert (labelled_table(ingest_dir)["label"] == "mcdk").sum() == 20  # plenty of images, two patients
    with pytest.raises(DataError, match=r"'mcdk'.*than k=5 folds \(counted in patients"):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")


def test_failed_validation_is_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=60)
    validation_dir = passed_validation(tmp_path, success=False)
    with pytest.raises(DataValidationError, match=r"validation failed.*renalmae validate"):
        split.run(make_params(), ingest_dir, validation_dir, tmp_path / "splits.json")


def test_missing_validation_is_refused(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=60)
    with pytest.raises(DataValidationError, match=r"validation missing.*renalmae validate"):
        split.run(make_params(), ingest_dir, tmp_path / "no-validation", tmp_path / "splits.json")


def test_existing_splits_are_left_untouched_when_the_step_fails(tmp_path, make_ingest_dir):
    ingest_dir = make_ingest_dir(tmp_path, n=90, table_hook=given_folds_by_group(3))
    out_path = split.run(
        make_params(folds=[0, 1, 2]), ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json"
    )
    before = out_path.read_bytes()
    with pytest.raises(ParamsError):
        split.run(make_params(), ingest_dir, passed_validation(tmp_path), out_path)
    assert out_path.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".splits")] == []


def _real_kidney_ingest_dir(tmp_path: Path, shared_data: Path) -> Path:
    """An ingest directory holding the table of ../shared/data/hydronephrosis (pixels not needed to split)."""
    manifest = pd.read_csv(shared_data / "hydronephrosis" / "manifest.csv")
    table = pd.DataFrame(
        {
            "id": manifest["image"],
            "source": manifest["image"],
            "sha256": manifest["image"],
            "label": manifest["label"],
            "group": manifest["series_id"].astype(str),
            "width": 224,
            "height": 224,
            "mask": manifest["mask"],
            "fold": manifest["fold"].astype("Int64"),
            "split": pd.Series([None] * len(manifest), dtype="string"),
            "origin": "labelled",
            "cache_index": range(len(manifest)),
        }
    )
    ingest_dir = tmp_path / "ingested"
    ingest_dir.mkdir()
    table.to_parquet(ingest_dir / "table.parquet", index=False)
    np.save(ingest_dir / "images.npy", np.zeros((len(table), 1, 1), dtype=np.uint8))
    np.save(ingest_dir / "masks.npy", np.zeros((len(table), 1, 1), dtype=np.uint8))
    return ingest_dir


@pytest.mark.realdata
@pytest.mark.parametrize("use_given", [True, False])
def test_real_kidney_series_never_cross_parts(tmp_path, shared_data, use_given):
    ingest_dir = _real_kidney_ingest_dir(tmp_path, shared_data)
    params = params_from_dict(
        {
            "data": {"classes": ["normal", "hydronephrosis"], "negative_class": "normal"},
            "split": {"folds": list(range(8)) if use_given else [0, 1, 2, 3, 4], "use_given": use_given},
        }
    )
    out_path = split.run(params, ingest_dir, passed_validation(tmp_path), tmp_path / "splits.json")
    payload = json.loads(out_path.read_text())
    assert payload["origin"] == ("given" if use_given else "drawn")
    parts = part_of_each_id(out_path)
    table = labelled_table(ingest_dir)
    assert len(parts) == len(table)
    assert (table.assign(part=table["id"].map(parts)).groupby("group")["part"].nunique() == 1).all()
    if use_given:
        development = table[table["id"].map(parts) != "test"]
        fold_of = development["id"].map(parts).str.removeprefix("fold").astype(int)
        assert (development["fold"].to_numpy() - 1 == fold_of.to_numpy()).all()
