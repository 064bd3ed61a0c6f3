"""The validate step: a clean data set passes; each broken rule fails with a report naming the files.

GX costs seconds per run whatever the data, so the bad-input cases share one broken data set (module
fixture) holding one defect per rule, and each case is its own named test of what the report says.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ingestkit import class_tree, noise, tiny_params, write_manifest, write_png
from PIL import Image

from renalmae.cli import main as cli_main
from renalmae.errors import DataValidationError
from renalmae.steps import ingest, validate

CLASSES = ["normal", "utd", "mcdk", "cyst"]  # `cyst` has no images; `mcdk` has one (k = 2 folds)


def broken_manifest(root: Path) -> Path:
    """A manifest with one defect per validation rule (and a legitimately repeated frame)."""
    rows = []

    def add(name: str, label: str, series: str, fold: int | None = 0, split: str = "train", pixels=None):
        path = root / f"{name}.png"
        if pixels is not None:
            write_png(path, pixels)
        rows.append({"image": path.name, "label": label, "series_id": series, "fold": fold, "split": split})

    for index in range(6):
        add(f"normal_{index}", "normal", f"n{index}", fold=index % 2, pixels=noise(index))
    for index in range(4):
        add(f"utd_{index}", "utd", f"u{index}", fold=index % 2, pixels=noise(10 + index))
    add("mcdk_only", "mcdk", "m0", pixels=noise(20))
    (root / "relabelled.png").write_bytes((root / "normal_1.png").read_bytes())
    add("relabelled", "utd", "r1")
    Image.open(root / "utd_1.png").save(root / "reencoded.png", compress_level=0)
    add("reencoded", "utd", "d1", fold=1)
    (root / "frozen_frame.png").write_bytes((root / "normal_2.png").read_bytes())
    add("frozen_frame", "normal", "n2", fold=0)  # same series, same label as normal_2: not a duplicate
    add("fold_a", "normal", "g", fold=0, pixels=noise(30))
    add("fold_b", "normal", "g", fold=1, pixels=noise(31))
    add("split_a", "utd", "s", fold=1, pixels=noise(32))
    add("split_b", "utd", "s", fold=1, split="test", pixels=noise(33))
    add("no_series", "normal", "", pixels=noise(34))
    add("blank", "normal", "b", pixels=np.full((40, 40), 7, dtype=np.uint8))
    add("tiny", "utd", "t", pixels=noise(35, size=20))
    add("strip", "utd", "w", pixels=noise(36, size=160, height=40))
    write_png(root / "pool" / "pool_copy.png", noise(12))  # the pixels of utd_2.png
    return write_manifest(root / "manifest.csv", rows)


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> tuple[str, dict]:
    """(DataValidationError message, summary.json) of validating the broken data set."""
    root = tmp_path_factory.mktemp("broken")
    params = tiny_params(broken_manifest(root), pool=[root / "pool"], classes=CLASSES)
    ingest.run(params, root / "ingested")
    with pytest.raises(DataValidationError) as error:
        validate.run(params, root / "ingested", root / "report")
    summary = json.loads((root / "report" / "summary.json").read_text())
    summary["report_files"] = sorted(path.name for path in (root / "report").iterdir())
    summary["html"] = (root / "report" / "index.html").read_text()
    return str(error.value), summary


def examples(summary: dict, rule: str) -> str:
    entries = [entry for entry in summary["failed"] if entry["rule"] == rule]
    assert entries, f"rule {rule} did not fail; failed: {[entry['rule'] for entry in summary['failed']]}"
    return " | ".join(entries[0]["examples"])


def names(summary: dict, rule: str) -> set[str]:
    return {Path(example).name for example in examples(summary, rule).split(" | ")}


def test_clean_data_passes_and_writes_the_report(tmp_path):
    params = tiny_params(class_tree(tmp_path / "tree", {"normal": 3, "utd": 3}))
    ingest.run(params, tmp_path / "ingested")
    summary = validate.run(params, tmp_path / "ingested", tmp_path / "report")
    assert summary["success"] is True and summary["failed"] == []
    report = tmp_path / "report"
    assert json.loads((report / "summary.json").read_text())["success"] is True
    assert json.loads((report / "validation_result.json").read_text())["success"] is True
    assert "PASSED" in (report / "index.html").read_text()
    assert summary["statistics"]["labelled"] == {"normal": 3, "utd": 3}


def test_failed_validation_still_writes_the_whole_report(broken):
    message, summary = broken
    assert summary["success"] is False
    assert summary["report_files"] == ["index.html", "summary.json", "validation_result.json"]
    assert "FAILED" in summary["html"] and "conflicting_labels" in summary["html"]
    assert message.startswith("data validation failed")


def test_same_image_under_two_labels_fails_naming_both_files(broken):
    message, summary = broken
    assert "normal_1.png [normal] == " in examples(summary, "conflicting_labels")
    assert "relabelled.png [utd]" in examples(summary, "conflicting_labels")
    assert "conflicting_labels" in message and "relabelled.png" in message


def test_duplicate_image_fails(broken):
    _, summary = broken
    found = examples(summary, "duplicate_image")
    assert "utd_1.png [utd] == " in found and "reencoded.png [utd]" in found, (
        "a re-encoded copy is a duplicate"
    )


def test_pool_copy_of_a_labelled_image_is_named_as_a_pool_copy(broken):
    message, summary = broken
    found = examples(summary, "pool_repeats_labelled")
    assert "utd_2.png [utd]" in found and "pool_copy.png [(pool)]" in found
    assert "pool_copy.png" not in examples(summary, "duplicate_image"), "named once, with its real cause"
    assert "pool_repeats_labelled" in message


def test_repeated_frame_within_one_series_is_not_a_duplicate(broken):
    _, summary = broken
    assert "frozen_frame.png" not in examples(summary, "duplicate_image")


def test_group_in_two_given_folds_fails(broken):
    message, summary = broken
    assert names(summary, "group_in_one_fold") == {"fold_a.png", "fold_b.png"}
    assert "group_in_one_fold" in message


def test_group_across_given_split_fails(broken):
    _, summary = broken
    assert names(summary, "group_in_one_split") == {"split_a.png", "split_b.png"}


def test_class_too_small_for_k_folds_fails(broken):
    _, summary = broken
    assert names(summary, "class_min_images") == {"mcdk_only.png"}


def test_empty_class_fails(broken):
    message, summary = broken
    assert "cyst" in next(e["details"] for e in summary["failed"] if e["rule"] == "class_not_empty")
    assert "class_not_empty" in message


def test_missing_group_fails(broken):
    _, summary = broken
    assert names(summary, "group_present") == {"no_series.png"}


def test_blank_image_fails(broken):
    _, summary = broken
    assert names(summary, "not_blank") == {"blank.png"}


def test_too_small_image_fails(broken):
    _, summary = broken
    assert names(summary, "width_in_range") == {"tiny.png"}
    assert names(summary, "height_in_range") == {"tiny.png"}, "strip.png is 40 px high: within range"


def test_too_elongated_image_fails(broken):
    _, summary = broken
    assert names(summary, "aspect_ratio") == {"strip.png"}


def test_no_other_rule_fails_on_the_broken_set(broken):
    _, summary = broken
    assert {entry["rule"] for entry in summary["failed"]} == {
        "aspect_ratio",
        "class_min_images",
        "class_not_empty",
        "conflicting_labels",
        "duplicate_image",
        "group_in_one_fold",
        "group_in_one_split",
        "group_present",
        "height_in_range",
        "not_blank",
        "pool_repeats_labelled",
        "width_in_range",
    }


def test_cli_validate_exits_non_zero_naming_the_rule(tmp_path, capsys):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    write_png(tree / "utd" / "blank.png", np.zeros((40, 40), dtype=np.uint8))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(tiny_params(tree).to_dict()))
    ingest_dir, report_dir = tmp_path / "ingested", tmp_path / "report"
    assert cli_main(["ingest", "--params", str(params_file), "--out", str(ingest_dir)]) == 0
    code = cli_main(
        ["validate", "--params", str(params_file), "--ingest", str(ingest_dir), "--out", str(report_dir)]
    )
    assert code != 0
    assert "not_blank" in capsys.readouterr().err and (report_dir / "summary.json").is_file()


def test_400_phantom_images_validate(tmp_path):
    params = tiny_params(
        "phantom://renal?n=400&seed=0", classes=["normal", "utd", "mcdk"], data={"image_size": 64}
    )
    ingest.run(params, tmp_path / "ingested")
    summary = validate.run(params, tmp_path / "ingested", tmp_path / "report")
    assert summary["success"] is True and summary["statistics"]["images"] == 400
    assert summary["statistics"]["near_duplicates"]["pairs"] == 0
