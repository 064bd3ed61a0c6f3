"""Real kidney ultrasound (../shared/data/hydronephrosis) through ingest, validate and split (kidney-cpu).

The default tests use a subset manifest (a few series of each source fold, written to tmp) so they take
seconds; the full 3,700-frame runs are marked slow. What validate says on the full source, by design:
frames repeated inside one clip pass; the same frame under two series (the same clip exported twice, in
two different folds) fails `duplicate_image`, four frames fail `conflicting_labels`, and near-copies under
both labels fail `near_duplicate_conflicting_labels`. The profile sets `data.drop_duplicates: true` and
`data.near_duplicate_conflicts: drop` so the first copy is kept and conflicting copies are dropped.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from renalmae.cli import main as cli_main
from renalmae.errors import DataError, DataValidationError
from renalmae.params import load_params, params_from_dict
from renalmae.steps import ingest, validate

REPO_ROOT = Path(__file__).resolve().parents[1].parent
KIDNEY = REPO_ROOT / ".." / "shared" / "data" / "hydronephrosis"
FETAL_HEAD = REPO_ROOT / ".." / "shared" / "data" / "hc18_fetal_head"
PROFILE = REPO_ROOT / "profiles" / "kidney-cpu.yaml"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (KIDNEY / "manifest.csv").is_file(),
        reason=f"real kidney data not found at {KIDNEY.resolve()} (see ../shared/data/README.md)",
    ),
]


def kidney_rows() -> list[dict]:
    with (KIDNEY / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def subset_rows(series_per_label: int = 1, frames_per_series: int = 6) -> list[dict]:
    """The first frames of the first few series of each label in each source fold, paths made absolute."""
    chosen: dict[tuple[str, str], list[str]] = {}
    frames: dict[str, int] = {}
    rows = []
    for row in kidney_rows():
        series = chosen.setdefault((row["fold"], row["label"]), [])
        if row["series_id"] not in series:
            if len(series) == series_per_label:
                continue
            series.append(row["series_id"])
        if frames.get(row["series_id"], 0) == frames_per_series:
            continue
        frames[row["series_id"]] = frames.get(row["series_id"], 0) + 1
        rows.append(
            {
                **row,
                "image": str((KIDNEY / row["image"]).resolve()),
                "mask": str((KIDNEY / row["mask"]).resolve()),
            }
        )
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def profile_params(tmp_path: Path, **data) -> Path:
    """The kidney-cpu profile with `data` overrides, as a params file in tmp (no progress bars)."""
    raw = yaml.safe_load(PROFILE.read_text())
    for key, value in data.items():
        raw["data"][key] = [str(v) for v in value] if isinstance(value, list) else value
        raw["data"][key] = str(value) if isinstance(value, Path) else raw["data"][key]
    raw["train"]["progress"] = False
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def fetal_head_pool(tmp_path: Path, count: int = 16) -> Path:
    """A pool folder of links to a few fetal head frames (links, not copies)."""
    pool = tmp_path / "pool"
    pool.mkdir()
    for path in sorted(FETAL_HEAD.glob("*.png"))[:count]:
        (pool / path.name).symlink_to(path.resolve())
    return pool


def run_cli(step: str, params_file: Path, *args: str) -> int:
    return cli_main([step, "--params", str(params_file), *args])


def test_profile_is_a_valid_params_file():
    params = load_params(PROFILE)
    assert params.data.classes == ["normal", "hydronephrosis"] and params.data.negative_class == "normal"
    assert params.data.group_column == "series_id" and params.split.k_folds == 8


def test_kidney_subset_ingests_validates_and_splits(tmp_path):
    pytest.importorskip("renalmae.steps.split", reason="the split step is not in this checkout yet")
    manifest = write_rows(tmp_path / "manifest.csv", subset_rows(series_per_label=2, frames_per_series=3))
    params_file = profile_params(tmp_path, source=manifest, pool=[str(fetal_head_pool(tmp_path))])
    ingest_dir, report_dir, splits_file = (
        tmp_path / "ingested",
        tmp_path / "validation",
        tmp_path / "splits.json",
    )
    assert run_cli("ingest", params_file, "--out", str(ingest_dir)) == 0
    assert run_cli("validate", params_file, "--ingest", str(ingest_dir), "--out", str(report_dir)) == 0
    assert json.loads((report_dir / "summary.json").read_text())["success"] is True
    assert (
        run_cli(
            "split",
            params_file,
            "--ingest",
            str(ingest_dir),
            "--validation",
            str(report_dir),
            "--out",
            str(splits_file),
        )
        == 0
    )
    splits = json.loads(splits_file.read_text())
    assert splits["k_folds"] == 8 and len(splits["folds"]) == 8
    assert all(fold["val"] for fold in splits["folds"])
    summary = json.loads((ingest_dir / "ingest.json").read_text())
    assert summary["pool"] == 16 and set(summary["labelled"]) == {"normal", "hydronephrosis"}


def test_corrupted_kidney_frame_is_named(tmp_path):
    rows = subset_rows(series_per_label=1, frames_per_series=3)[:12]
    copied = []
    for row in rows:
        image = tmp_path / "images" / Path(row["image"]).name
        image.parent.mkdir(exist_ok=True)
        shutil.copyfile(row["image"], image)
        copied.append({**row, "image": f"images/{image.name}", "mask": ""})
    victim = tmp_path / copied[5]["image"]
    victim.write_bytes(victim.read_bytes()[:300])  # a download cut short
    params = params_from_dict(
        {
            **yaml.safe_load(PROFILE.read_text()),
            "data": {
                **yaml.safe_load(PROFILE.read_text())["data"],
                "source": str(write_rows(tmp_path / "manifest.csv", copied)),
                "pool": [],
                "decode_workers": 0,
            },
        }
    )
    with pytest.raises(DataError) as error:
        ingest.run(params, tmp_path / "ingested")
    assert victim.name in str(error.value) and "1 bad input file" in str(error.value)
    assert not (tmp_path / "ingested").exists()


@pytest.mark.slow
def test_full_kidney_source_fails_validation_on_cross_series_duplicates(tmp_path):
    params = load_params(
        profile_params(
            tmp_path,
            source=KIDNEY / "manifest.csv",
            pool=[],
            drop_duplicates=False,
            near_duplicate_conflicts="refuse",
        )
    )
    ingest.run(params, tmp_path / "ingested")
    with pytest.raises(DataValidationError) as error:
        validate.run(params, tmp_path / "ingested", tmp_path / "validation")
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    rules = {entry["rule"]: entry for entry in summary["failed"]}
    assert set(rules) == {"duplicate_image", "conflicting_labels", "near_duplicate_conflicting_labels"}
    conflicting = " ".join(rules["conflicting_labels"]["examples"])
    assert "04_165639_1656411428_000.jpg" in conflicting and "07_165639_1656411427_000.jpg" in conflicting
    assert "duplicate_image" in str(error.value)


@pytest.mark.slow
def test_full_kidney_profile_ingests_validates_and_splits(tmp_path):
    pytest.importorskip("renalmae.steps.split", reason="the split step is not in this checkout yet")
    params_file = profile_params(tmp_path, source=KIDNEY / "manifest.csv", pool=[FETAL_HEAD])
    ingest_dir, report_dir, splits_file = (
        tmp_path / "ingested",
        tmp_path / "validation",
        tmp_path / "splits.json",
    )
    assert run_cli("ingest", params_file, "--out", str(ingest_dir)) == 0
    assert run_cli("validate", params_file, "--ingest", str(ingest_dir), "--out", str(report_dir)) == 0
    assert (
        run_cli(
            "split",
            params_file,
            "--ingest",
            str(ingest_dir),
            "--validation",
            str(report_dir),
            "--out",
            str(splits_file),
        )
        == 0
    )
    summary = json.loads((ingest_dir / "ingest.json").read_text())
    assert summary["n_images"] == 3700 + 1334 - len(summary["dropped_duplicates"])
    assert len(json.loads(splits_file.read_text())["folds"]) == 8
