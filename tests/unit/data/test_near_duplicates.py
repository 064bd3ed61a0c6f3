"""Near-duplicates (the same frame re-exported, annotated): grouped so they never cross a fold or the test
line, refused under conflicting labels unless told otherwise, and counted in the ingest and validation
outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingestkit import near_copy, phantom_frames, tiny_params, write_manifest, write_png

from renalmae.data.cache import load_ingested
from renalmae.data.near_duplicates import merge_groups
from renalmae.errors import DataValidationError
from renalmae.steps import ingest, split, validate

CLASSES = ["normal", "utd", "mcdk"]


def near_copy_manifest(root: Path, copies: list[tuple[str, str, int | None]], n: int = 18) -> Path:
    """`n` distinct phantom frames, one series each (given fold = series index % 3), plus near-copies.

    `copies` holds (series of the copy, its label or "" for the original's label, its given fold or None
    for the original's fold) for frames 0, 1, 2, ... in turn.
    """
    frames, labels = phantom_frames(n)
    rows = []
    for index in range(n):
        write_png(root / f"frame_{index:02d}.png", frames[index])
        rows.append(
            {"image": f"frame_{index:02d}.png", "label": labels[index], "series_id": f"s{index:02d}",
             "fold": index % 3}
        )  # fmt: skip
    for index, (series, label, fold) in enumerate(copies):
        near_copy(frames[index], root / f"copy_of_{index:02d}.jpg")
        rows.append(
            {"image": f"copy_of_{index:02d}.jpg", "label": label or labels[index], "series_id": series,
             "fold": index % 3 if fold is None else fold}
        )  # fmt: skip
    return write_manifest(root / "manifest.csv", rows)


def params_for(manifest: Path, **data):
    return tiny_params(manifest, classes=CLASSES, data=data, split={"folds": [0, 1, 2], "use_given": False})


def test_near_copies_in_other_series_land_in_the_same_part_of_the_split(tmp_path):
    copies = [(f"s{(index + 9) % 18:02d}", "", None) for index in range(6)]  # six copies, six other series
    params = params_for(near_copy_manifest(tmp_path / "data", copies, n=36))
    ingested = ingest.run(params, tmp_path / "ingested")
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "summary.json").write_text(json.dumps({"success": True}))
    splits = json.loads(split.run(params, ingested, tmp_path / "validation", tmp_path / "s.json").read_text())
    part = {image_id: "test" for image_id in splits["test"]}
    part |= {image_id: fold["fold"] for fold in splits["folds"] for image_id in fold["val"]}
    table = load_ingested(ingested).table
    by_name = dict(zip(table["source"].map(lambda s: Path(s).stem), table["id"], strict=True))
    for index in range(6):
        original, copy = by_name[f"frame_{index:02d}"], by_name[f"copy_of_{index:02d}"]
        assert part[original] == part[copy], f"frame {index} and its near-copy are split apart"


@pytest.fixture(scope="module")
def near_copies_validated(tmp_path_factory):
    """Validation of a set with one harmless near-copy, one under another label, one in another given
    fold: (ingest dir, summary.json, the error message)."""
    root = tmp_path_factory.mktemp("near")
    _, labels = phantom_frames(18)
    copies = [
        ("s03", "", None),  # frame 0 (fold 0) copied into series 3 (fold 0): grouped, harmless
        ("s07", next(name for name in CLASSES if name != labels[1]), None),  # under another label
        ("s04", "", 1),  # frame 2 (fold 2) copied into series 4, given fold 1
    ]
    manifest = near_copy_manifest(root / "data", copies)
    params = tiny_params(manifest, classes=CLASSES, split={"folds": [0, 1, 2], "use_given": True},
                         validate={"min_images_per_class": 1})  # fmt: skip
    ingested = ingest.run(params, root / "ingested")
    with pytest.raises(DataValidationError) as error:
        validate.run(params, ingested, root / "validation")
    return ingested, json.loads((root / "validation" / "summary.json").read_text()), str(error.value)


def test_near_copies_under_conflicting_labels_are_refused(near_copies_validated):
    _, summary, message = near_copies_validated
    rules = {entry["rule"]: entry for entry in summary["failed"]}
    assert "near_duplicate_conflicting_labels" in rules
    examples = " ".join(rules["near_duplicate_conflicting_labels"]["examples"])
    assert "frame_01.png" in examples and "copy_of_01.jpg" in examples
    assert "frame_00.png" not in examples, "a near-copy under the same label is no conflict"
    assert "data.near_duplicate_conflicts" in message


def test_near_copies_in_different_given_folds_are_refused(near_copies_validated):
    _, summary, message = near_copies_validated
    rules = {entry["rule"]: entry for entry in summary["failed"]}
    assert "near_duplicates_in_one_given_part" in rules
    assert "copy_of_02.jpg" in " ".join(rules["near_duplicates_in_one_given_part"]["examples"])
    assert "split.use_given: false" in message


def test_near_duplicate_counts_are_in_the_ingest_and_validation_outputs(near_copies_validated):
    ingested, summary, _ = near_copies_validated
    counts = json.loads((Path(ingested) / "ingest.json").read_text())["near_duplicates"]
    assert counts["pairs"] == 3 and counts["conflicting_label_pairs"] == 1
    assert (
        counts["pairs_across_groups"] == 3 and counts["clusters"] == 3 and counts["images_in_clusters"] == 6
    )
    assert summary["statistics"]["near_duplicates"] == counts


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_near_duplicate_conflicts_can_be_dropped_or_kept_when_told(tmp_path, policy):
    _, labels = phantom_frames(18)
    other_label = next(name for name in CLASSES if name != labels[0])
    manifest = near_copy_manifest(tmp_path / "data", [("s09", other_label, None)])
    params = params_for(manifest, near_duplicate_conflicts=policy)
    ingested = ingest.run(params, tmp_path / "ingested")
    table = load_ingested(ingested).table
    names = set(table["source"].map(lambda s: Path(s).name))
    summary = json.loads((Path(ingested) / "ingest.json").read_text())
    if policy == "drop":
        assert "frame_00.png" not in names and "copy_of_00.jpg" not in names
        assert {Path(entry["source"]).name for entry in summary["dropped_duplicates"]} == {
            "frame_00.png", "copy_of_00.jpg"
        }  # fmt: skip
    else:
        assert {"frame_00.png", "copy_of_00.jpg"} <= names
        pair = table[table["source"].str.contains("_00")]
        assert pair["near_group"].nunique() == 1 and pair["near_group"].notna().all()
    assert validate.run(params, ingested, tmp_path / "validation")["success"]


def test_distinct_phantom_images_are_not_near_duplicates(tmp_path):
    params = tiny_params("phantom://renal?n=300&seed=0", pool=["phantom://renal?n=200&seed=1&unlabelled=true"],
                         classes=CLASSES, data={"image_size": 64})  # fmt: skip
    ingested = ingest.run(params, tmp_path / "ingested")
    assert json.loads((Path(ingested) / "ingest.json").read_text())["near_duplicates"]["pairs"] == 0
    assert load_ingested(ingested).table["near_group"].isna().all()


def test_groups_joined_by_a_near_duplicate_cluster_become_one_split_group():
    groups = np.array(["a", "a", "b", "c", "d", "d"])
    clusters = np.array([None, "x", "x", None, "y", None], dtype=object)
    merged = merge_groups(groups, clusters)
    assert merged.tolist() == ["a", "a", "a", "c", "d", "d"]
    assert merge_groups(groups, pd.Series([None] * 6)).tolist() == groups.tolist()


def test_with_the_search_off_nothing_is_hashed_or_grouped(tmp_path):
    copies = [("s09", "", None)]
    params = params_for(near_copy_manifest(tmp_path / "data", copies), near_duplicate_bits=None)
    table = load_ingested(ingest.run(params, tmp_path / "ingested")).table
    assert table["phash"].isna().all() and table["near_group"].isna().all()
