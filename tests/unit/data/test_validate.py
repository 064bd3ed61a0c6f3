"""The validate step: a clean data set passes; each broken rule fails with a report naming the files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from ingestkit import class_tree, manifest_dataset, noise, tiny_params, write_manifest, write_png

from renalmae.cli import main as cli_main
from renalmae.errors import DataValidationError
from renalmae.steps import ingest, validate


def validated(params, tmp_path: Path) -> dict:
    ingest.run(params, tmp_path / "ingested")
    return validate.run(params, tmp_path / "ingested", tmp_path / "report")


def failed(params, tmp_path: Path) -> tuple[str, dict]:
    """Ingest and validate expecting failure; return (error message, summary.json written anyway)."""
    ingest.run(params, tmp_path / "ingested")
    with pytest.raises(DataValidationError) as error:
        validate.run(params, tmp_path / "ingested", tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["success"] is False
    assert (tmp_path / "report" / "index.html").is_file() and (
        tmp_path / "report" / "validation_result.json"
    ).is_file()
    return str(error.value), summary


def failed_rules(summary: dict) -> dict[str, list[str]]:
    return {entry["rule"]: entry["examples"] for entry in summary["failed"]}


def test_clean_data_passes_and_writes_the_report(tmp_path):
    summary = validated(tiny_params(class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})), tmp_path)
    assert summary["success"] is True and summary["failed"] == []
    report = tmp_path / "report"
    assert json.loads((report / "summary.json").read_text())["success"] is True
    assert json.loads((report / "validation_result.json").read_text())["success"] is True
    assert "PASSED" in (report / "index.html").read_text()
    assert summary["statistics"]["labelled"] == {"normal": 3, "utd": 3}


def test_same_image_under_two_labels_fails_naming_both_files(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    (tree / "utd" / "relabelled.png").write_bytes((tree / "normal" / "normal_001.png").read_bytes())
    message, summary = failed(tiny_params(tree), tmp_path)
    examples = failed_rules(summary)["conflicting_labels"]
    assert "normal_001.png" in examples[0] and "relabelled.png" in examples[0]
    assert "conflicting_labels" in message and "normal_001.png" in message and "relabelled.png" in message


def test_duplicate_image_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    # a re-encoded copy (JPEG-free: PNG with other compression) has other bytes but the same pixels
    from PIL import Image

    Image.open(tree / "utd" / "utd_000.png").save(tree / "utd" / "copy.png", compress_level=0)
    message, summary = failed(tiny_params(tree), tmp_path)
    rules = failed_rules(summary)
    assert set(rules) == {"duplicate_image"}
    assert "utd_000.png" in rules["duplicate_image"][0] and "copy.png" in rules["duplicate_image"][0]
    assert "duplicate_image" in message


def test_duplicate_between_labelled_data_and_pool_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    write_png(tmp_path / "pool" / "p.png", noise(0))  # the pixels of normal_000.png
    _, summary = failed(tiny_params(tree, pool=[tmp_path / "pool"]), tmp_path)
    assert "p.png" in failed_rules(summary)["duplicate_image"][0]


def test_repeated_frame_within_one_series_passes(tmp_path):
    """A frozen frame repeated inside one clip (same group, same label) cannot leak: not a failure."""
    root = tmp_path / "data"
    manifest = manifest_dataset(root, {"s1": ("normal", 0, 0), "s2": ("utd", 1, 10)}, frames=3)
    (root / "images" / "s1_2.png").write_bytes((root / "images" / "s1_1.png").read_bytes())
    summary = validated(tiny_params(manifest), tmp_path)
    assert summary["success"] is True and summary["statistics"]["repeated_images"] == 1


def test_group_in_two_given_folds_fails(tmp_path):
    root = tmp_path / "data"
    manifest = manifest_dataset(root, {"s1": ("normal", 0, 0), "s2": ("utd", 1, 10)}, frames=3)
    text = manifest.read_text().splitlines()
    text[2] = text[2].replace(",0,s1", ",1,s1")  # second frame of series s1 moved to fold 1
    manifest.write_text("\n".join(text) + "\n")
    message, summary = failed(tiny_params(manifest), tmp_path)
    assert "group_in_one_fold" in failed_rules(summary)
    assert "s1_" in message and "group_in_one_fold" in message


def test_group_across_given_split_fails(tmp_path):
    rows = []
    for index in range(6):
        write_png(tmp_path / f"{index}.png", noise(index))
        rows.append(
            {
                "image": f"{index}.png",
                "label": ["normal", "utd"][index % 2],
                "patient_id": f"p{index // 2}",
                "split": "test" if index == 1 else "train",
            }
        )
    params = tiny_params(write_manifest(tmp_path / "manifest.csv", rows), data={"group_column": "patient_id"})
    _, summary = failed(params, tmp_path)
    examples = failed_rules(summary)["group_in_one_split"]
    assert {Path(example).name for example in examples} == {"0.png", "1.png"}


def test_class_too_small_for_k_folds_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 6, "utd": 3})
    params = tiny_params(tree, validate={"min_images_per_class": 1}, split={"folds": [0, 1, 2, 3]})
    message, summary = failed(params, tmp_path)
    assert set(failed_rules(summary)) == {"class_min_images"}
    assert all("/utd/" in example for example in failed_rules(summary)["class_min_images"])
    assert ">= 4 images" in message


def test_empty_class_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    message, summary = failed(tiny_params(tree, classes=["normal", "utd", "mcdk"]), tmp_path)
    assert "class_not_empty" in failed_rules(summary) and "mcdk" in message


def test_blank_image_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    write_png(tree / "utd" / "blank.png", np.full((40, 40), 7, dtype=np.uint8))
    _, summary = failed(tiny_params(tree), tmp_path)
    assert [Path(e).name for e in failed_rules(summary)["not_blank"]] == ["blank.png"]


def test_too_small_image_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    write_png(tree / "utd" / "tiny.png", noise(99, size=20))
    _, summary = failed(tiny_params(tree), tmp_path)
    assert [Path(e).name for e in failed_rules(summary)["width_in_range"]] == ["tiny.png"]


def test_too_elongated_image_fails(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    write_png(tree / "utd" / "strip.png", noise(99, size=160, height=40))
    _, summary = failed(tiny_params(tree), tmp_path)
    assert [Path(e).name for e in failed_rules(summary)["aspect_ratio"]] == ["strip.png"]


def test_missing_group_fails(tmp_path):
    rows = []
    for index in range(6):
        write_png(tmp_path / f"{index}.png", noise(index))
        rows.append(
            {
                "image": f"{index}.png",
                "label": ["normal", "utd"][index % 2],
                "series_id": "" if index == 4 else f"s{index}",
            }
        )
    _, summary = failed(tiny_params(write_manifest(tmp_path / "manifest.csv", rows)), tmp_path)
    assert [Path(e).name for e in failed_rules(summary)["group_present"]] == ["4.png"]


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


def test_400_phantom_images_validate_in_under_10_seconds(tmp_path):
    import great_expectations  # noqa: F401  (its import, ~10 s on a busy CPU, is not part of the budget)

    params = tiny_params(
        "phantom://renal?n=400&seed=0", classes=["normal", "utd", "mcdk"], data={"image_size": 64}
    )
    ingest.run(params, tmp_path / "ingested")
    started = time.perf_counter()
    summary = validate.run(params, tmp_path / "ingested", tmp_path / "report")
    assert time.perf_counter() - started < 10
    assert summary["success"] is True and summary["statistics"]["images"] == 400
