"""The `split` step: grouped, stratified k folds, a holdout test and an external set → splits.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from renalmae.artifacts import IngestedData, ValidationReport
from renalmae.data.cache import load_ingested
from renalmae.data.splitting import assign_splits, copies_of_development_images
from renalmae.errors import DataValidationError
from renalmae.io import write_json
from renalmae.params import Params
from renalmae.pipeline import step

STEP = step("split")

log = logging.getLogger(__name__)


def run(
    params: Params,
    ingest_dir: str | os.PathLike,
    validation_dir: str | os.PathLike,
    out_path: str | os.PathLike,
) -> Path:
    """Split the labelled images of `ingest_dir` into folds and a holdout test; write `out_path`.

    Refuses to run unless the validate step passed, and leaves an existing `out_path` untouched when
    it refuses (a leaking group, a class too small for k folds, given folds that do not match k).
    """
    require_validation_passed(Path(validation_dir))
    ingested = load_ingested(ingest_dir)
    assignment = assign_splits(
        ingested.labelled,
        classes=params.data.classes,
        k_folds=params.split.k_folds,
        test_fraction=params.split.test_fraction,
        seed=params.split.seed,
        use_given=params.split.use_given,
        external_folds=params.split.external_folds,
    )
    data = data_summary(ingested, assignment, params.data.near_duplicate_bits is not None)
    copies = data["copies_of_development_images"]
    log.info(
        "split: ingest dropped %s duplicate images; %d test and %d external images are copies of "
        "development images", data["duplicates_dropped_at_ingest"], copies["test"], copies["external"],
    )  # fmt: skip
    out_path = Path(out_path)
    payload = assignment.to_json(seed=params.split.seed, classes=params.data.classes) | {"data": data}
    write_json(out_path, payload)
    return out_path


def data_summary(ingested, assignment, near_duplicates_searched: bool) -> dict:
    """What the report says about the data: duplicates ingest dropped, copies across the split line."""
    summary_path = Path(ingested.directory) / IngestedData.SUMMARY
    ingest = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    dropped = ingest.get("dropped_duplicates")
    return {
        "duplicates_dropped_at_ingest": None if dropped is None else len(dropped),
        "near_duplicates_searched": near_duplicates_searched,
        "near_duplicates": ingest.get("near_duplicates"),
        "copies_of_development_images": copies_of_development_images(ingested.labelled, assignment),
    }


def require_validation_passed(validation_dir: Path) -> None:
    """Raise DataValidationError unless `<validation_dir>/summary.json` says the validation succeeded."""
    report = ValidationReport(validation_dir)
    summary_path = report / ValidationReport.SUMMARY
    fix = "run `renalmae validate` and fix the data first"
    status = report.status()
    if status == "missing":
        raise DataValidationError(f"validation missing: {summary_path} not found or unreadable; {fix}")
    if status != "passed":
        raise DataValidationError(f"validation failed: {summary_path} does not report success; {fix}")
