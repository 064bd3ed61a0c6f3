"""The `split` step: grouped, stratified k folds, a holdout test and an external set → splits.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from renalmae.data.cache import load_ingested
from renalmae.data.splitting import assign_splits
from renalmae.errors import DataValidationError
from renalmae.io import write_json
from renalmae.params import Params

VALIDATION_SUMMARY = "summary.json"


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
    out_path = Path(out_path)
    write_json(out_path, assignment.to_json(seed=params.split.seed, classes=params.data.classes))
    return out_path


def require_validation_passed(validation_dir: Path) -> None:
    """Raise DataValidationError unless `<validation_dir>/summary.json` says the validation succeeded."""
    summary_path = validation_dir / VALIDATION_SUMMARY
    fix = "run `renalmae validate` and fix the data first"
    if not summary_path.is_file():
        raise DataValidationError(f"validation missing: {summary_path} not found; {fix}")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataValidationError(
            f"validation missing: {summary_path} is unreadable ({error}); {fix}"
        ) from None
    if not isinstance(summary, dict) or summary.get("success") is not True:
        raise DataValidationError(f"validation failed: {summary_path} does not report success; {fix}")
