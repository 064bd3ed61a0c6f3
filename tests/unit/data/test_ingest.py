"""The ingest step: each input kind becomes one table plus uint8 caches; bad files are refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingestkit import (
    SIZE,
    class_tree,
    gradient,
    manifest_dataset,
    noise,
    tiny_params,
    write_dicom,
    write_manifest,
    write_png,
)

from renalmae.data.cache import TABLE_COLUMNS, load_ingested
from renalmae.errors import DataError
from renalmae.steps import ingest


def ingest_dir(tmp_path: Path) -> Path:
    return tmp_path / "ingested"


def refused(params, tmp_path: Path) -> str:
    """Run ingest expecting a DataError; check nothing was written; return the message."""
    with pytest.raises(DataError) as error:
        ingest.run(params, ingest_dir(tmp_path))
    assert not ingest_dir(tmp_path).exists()
    assert not list(tmp_path.glob(".ingested.tmp-*")), "a staging directory was left behind"
    return str(error.value)


# --- what a user gets -------------------------------------------------------------------------------


def test_class_tree_becomes_table_and_cache(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 2})
    out = ingest.run(tiny_params(tree), ingest_dir(tmp_path))
    data = load_ingested(out)
    assert list(data.table.columns) == TABLE_COLUMNS
    assert data.images.shape == (5, 32, 32) and data.images.dtype == np.uint8
    assert data.masks.shape == (5, 32, 32) and not data.masks.any()
    assert data.table["label"].value_counts().to_dict() == {"normal": 3, "utd": 2}
    assert (data.table["group"] == data.table["id"]).all(), (
        "without a group column each image is its own group"
    )
    assert (data.table["cache_index"] == np.arange(5)).all()
    assert set(data.table["origin"]) == {"labelled"}
    summary = json.loads((out / "ingest.json").read_text())
    assert summary["n_images"] == 5 and summary["labelled"] == {"normal": 3, "utd": 2}


def test_manifest_gives_groups_masks_and_folds(tmp_path):
    manifest = manifest_dataset(tmp_path / "data", {"s1": ("normal", 1, 0), "s2": ("utd", 2, 10)}, frames=2)
    data = load_ingested(ingest.run(tiny_params(manifest), ingest_dir(tmp_path)))
    table = data.table
    assert table["group"].tolist() == ["s1", "s1", "s2", "s2"]
    assert table["fold"].tolist() == [1, 1, 2, 2] and str(table["fold"].dtype) == "Int64"
    assert table["source"].str.endswith("s1_0.png").iloc[0]
    assert table["mask"].notna().all()
    assert set(np.unique(data.masks)) == {0, 1}, "masks are binarised"
    assert (table["width"] == SIZE).all() and (table["height"] == SIZE).all()


def test_group_column_none_makes_each_image_its_own_group(tmp_path):
    manifest = manifest_dataset(tmp_path / "data", {"s1": ("normal", 1, 0)}, frames=2)
    params = tiny_params(manifest, data={"group_column": "none"})
    table = load_ingested(ingest.run(params, ingest_dir(tmp_path))).table
    assert (table["group"] == table["id"]).all()


def test_phantom_uri_is_ingested_with_its_pool(tmp_path):
    params = tiny_params(
        "phantom://renal?n=24&seed=0",
        pool=["phantom://renal?n=8&seed=1&unlabelled=true"],
        classes=["normal", "utd", "mcdk"],
    )
    data = load_ingested(ingest.run(params, ingest_dir(tmp_path)))
    assert len(data.table) == 32
    assert set(data.labelled["label"]) <= {"normal", "utd", "mcdk"} and len(data.labelled) == 24
    assert data.pool["label"].isna().all() and len(data.pool) == 8
    assert data.table["id"].is_unique
    assert data.images.shape == (32, 32, 32)


def test_pool_folder_is_read_at_any_depth(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    write_png(tmp_path / "pool" / "a.png", noise(100))
    write_png(tmp_path / "pool" / "deeper" / "still" / "b.png", noise(101, height=SIZE // 2))
    data = load_ingested(ingest.run(tiny_params(tree, pool=[tmp_path / "pool"]), ingest_dir(tmp_path)))
    pool = data.pool
    assert len(pool) == 2 and pool["label"].isna().all()
    assert pool["source"].str.endswith("b.png").any()
    wide = data.images[int(pool[pool["source"].str.endswith("b.png")]["cache_index"].iloc[0])]
    assert not wide[:4].any() and not wide[-4:].any(), (
        "a non-square image is padded with black, not stretched"
    )


def test_dicom_variants_decode_to_the_same_greyscale(tmp_path):
    from pydicom.pixels import convert_color_space

    pixels = gradient()
    rgb = np.stack([pixels] * 3, axis=-1)
    write_png(tmp_path / "tree" / "normal" / "reference.png", pixels)
    write_dicom(tmp_path / "tree" / "utd" / "mono.dcm", pixels)
    write_dicom(tmp_path / "tree" / "utd" / "multiframe.dcm", np.stack([pixels, 255 - pixels, 255 - pixels]))
    write_dicom(tmp_path / "tree" / "utd" / "rgb.dcm", rgb, "RGB")
    write_dicom(
        tmp_path / "tree" / "utd" / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL"
    )
    write_dicom(tmp_path / "tree" / "utd" / "palette.dcm", 255 - pixels, "PALETTE COLOR")
    table = load_ingested(ingest.run(tiny_params(tmp_path / "tree"), ingest_dir(tmp_path))).table
    images = load_ingested(ingest_dir(tmp_path)).images
    by_name = {
        Path(source).stem: int(index)
        for source, index in zip(table["source"], table["cache_index"], strict=True)
    }
    reference = images[by_name["reference"]].astype(int)
    for name in ("mono", "multiframe", "rgb", "palette"):
        assert np.array_equal(images[by_name[name]], reference), f"{name}.dcm decodes differently"
    assert np.abs(images[by_name["ybr"]].astype(int) - reference).max() <= 2, "YBR → grey within rounding"
    sha = dict(zip(table["source"].map(lambda s: Path(s).stem), table["sha256"], strict=True))
    assert sha["mono"] == sha["reference"] == sha["multiframe"], "the pixel hash ignores the file format"


def test_parallel_decoding_gives_the_same_output(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 20, "utd": 20})
    serial = load_ingested(ingest.run(tiny_params(tree), tmp_path / "serial"))
    parallel = load_ingested(ingest.run(tiny_params(tree, data={"decode_workers": 2}), tmp_path / "parallel"))
    pd.testing.assert_frame_equal(serial.table, parallel.table)
    assert np.array_equal(serial.images, parallel.images)


def test_duplicates_are_recorded_not_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    (tree / "utd" / "copy.png").write_bytes((tree / "normal" / "normal_000.png").read_bytes())
    out = ingest.run(tiny_params(tree), ingest_dir(tmp_path))
    table = load_ingested(out).table
    assert len(table) == 7 and table["id"].is_unique
    assert json.loads((out / "ingest.json").read_text())["repeated_images"] == 1


def test_drop_duplicates_keeps_first_copy_and_drops_conflicting_labels(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    (tree / "normal" / "same_label_copy.png").write_bytes((tree / "normal" / "normal_000.png").read_bytes())
    (tree / "utd" / "other_label_copy.png").write_bytes((tree / "normal" / "normal_001.png").read_bytes())
    out = ingest.run(tiny_params(tree, data={"drop_duplicates": True}), ingest_dir(tmp_path))
    data = load_ingested(out)
    kept = set(data.table["source"].map(lambda s: Path(s).name))
    assert "normal_000.png" in kept and "same_label_copy.png" not in kept
    assert "normal_001.png" not in kept and "other_label_copy.png" not in kept
    assert len(data.table) == len(data.images) == 5
    assert (data.table["cache_index"] == np.arange(5)).all()
    dropped = json.loads((out / "ingest.json").read_text())["dropped_duplicates"]
    assert len(dropped) == 3


# --- bad input: each refused before anything is written, naming the file and the rule -----------------


def test_corrupt_file_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    data = (tree / "utd" / "utd_000.png").read_bytes()
    (tree / "utd" / "broken.png").write_bytes(data[: len(data) // 2])
    (tree / "utd" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    message = refused(tiny_params(tree), tmp_path)
    assert "broken.png" in message and "garbage.jpg" in message and "corrupt" in message


def test_zero_byte_file_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    (tree / "normal" / "empty.png").touch()
    message = refused(tiny_params(tree), tmp_path)
    assert "empty.png" in message and "empty (0 bytes)" in message


def test_non_image_file_in_tree_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    (tree / "utd" / "notes.txt").write_text("scan notes")
    message = refused(tiny_params(tree), tmp_path)
    assert "notes.txt" in message and "not an image file" in message


def test_unknown_label_folder_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2, "cyst": 1})
    message = refused(tiny_params(tree), tmp_path)
    assert "cyst" in message and "is not one of data.classes" in message


def test_unknown_label_in_manifest_is_refused(tmp_path):
    write_png(tmp_path / "a.png", noise(1))
    manifest = write_manifest(tmp_path / "manifest.csv", [{"image": "a.png", "label": "cyst"}])
    message = refused(tiny_params(manifest), tmp_path)
    assert "manifest.csv row 2: label 'cyst' is not one of data.classes" in message


def test_case_only_label_is_refused(tmp_path):
    for seed in range(3):
        write_png(tmp_path / f"{seed}.png", noise(seed))
    rows = [
        {"image": "0.png", "label": "normal"},
        {"image": "1.png", "label": "UTD"},
        {"image": "2.png", "label": "utd"},
    ]
    message = refused(tiny_params(write_manifest(tmp_path / "manifest.csv", rows)), tmp_path)
    assert "manifest.csv row 3: label 'UTD' differs from class 'utd' only by case" in message


def test_missing_manifest_path_is_refused(tmp_path):
    write_png(tmp_path / "a.png", noise(1))
    rows = [{"image": "a.png", "label": "normal"}, {"image": "gone/b.png", "label": "utd"}]
    message = refused(tiny_params(write_manifest(tmp_path / "manifest.csv", rows)), tmp_path)
    assert "manifest.csv row 3" in message and "gone/b.png does not exist" in message


def test_decompression_bomb_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    write_png(tree / "utd" / "bomb.png", np.zeros((3000, 3000), dtype=np.uint8))  # 9 Mpx, a few kB on disk
    assert (tree / "utd" / "bomb.png").stat().st_size < 100_000
    message = refused(tiny_params(tree, data={"max_image_pixels": 1_000_000}), tmp_path)
    assert "bomb.png" in message and "decompression" in message


def test_image_just_over_the_pixel_limit_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    message = refused(tiny_params(tree, data={"max_image_pixels": SIZE * SIZE - 1}), tmp_path)
    assert "over data.max_image_pixels" in message


def test_dicom_without_pixel_data_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    write_dicom(tree / "utd" / "report.dcm", None)
    message = refused(tiny_params(tree), tmp_path)
    assert "report.dcm" in message and "no pixel data" in message


def test_every_bad_file_is_reported_at_once(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    for index in range(12):
        (tree / "normal" / f"empty_{index:02d}.png").touch()
    (tree / "utd" / "notes.txt").write_text("x")
    message = refused(tiny_params(tree), tmp_path)
    assert message.startswith("13 bad input file(s)")
    assert "... and 3 more" in message


def test_failed_run_leaves_last_good_output_untouched(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    out = ingest.run(tiny_params(tree), ingest_dir(tmp_path))
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    (tree / "utd" / "empty.png").touch()
    with pytest.raises(DataError, match="empty.png"):
        ingest.run(tiny_params(tree), out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    # beside them only the decoded shards, kept so that the run after the fix decodes just what changed
    assert sorted(path.name for path in tmp_path.iterdir()) == [".checkpoints", "ingested", "tree"]


def test_mask_of_another_size_is_refused(tmp_path):
    manifest = manifest_dataset(tmp_path / "data", {"s1": ("normal", 1, 0)}, frames=1)
    write_png(tmp_path / "data" / "masks" / "s1_0.png", np.zeros((SIZE, SIZE + 4), dtype=np.uint8))
    message = refused(tiny_params(manifest), tmp_path)
    assert "s1_0.png" in message and "a mask must match its image" in message


def test_manifest_grouped_by_another_column_than_asked_is_refused(tmp_path):
    manifest = manifest_dataset(tmp_path / "data", {"s1": ("normal", 1, 0)}, frames=2)
    message = refused(tiny_params(manifest, data={"group_column": "patient_id"}), tmp_path)
    assert "has column series_id but data.group_column is 'patient_id'" in message


def test_pool_that_is_the_labelled_source_is_named_as_such(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 3, "utd": 3})
    message = refused(tiny_params(tree, pool=[tree]), tmp_path)
    assert (
        message.startswith("1 bad input file")
        and f"{tree}: this data.pool entry is the labelled source" in message
    )
    assert "drop_duplicates" not in message


def test_pool_of_the_source_masks_is_refused(tmp_path):
    manifest = manifest_dataset(tmp_path / "data", {"s1": ("normal", 1, 0), "s2": ("utd", 2, 10)}, frames=2)
    message = refused(tiny_params(manifest, pool=[tmp_path / "data" / "masks"]), tmp_path)
    assert message.startswith("1 bad input file") and "holds 4 lesion masks of data.source" in message


def test_pool_listed_twice_is_refused(tmp_path):
    tree = class_tree(tmp_path / "tree", {"normal": 2, "utd": 2})
    write_png(tmp_path / "pool" / "a.png", noise(100))
    message = refused(tiny_params(tree, pool=[tmp_path / "pool", tmp_path / "pool"]), tmp_path)
    assert "repeats images of data.pool entry" in message
