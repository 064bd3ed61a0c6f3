"""Step `validate`: the great-expectations data suite over the ingested data; any failed rule stops the run.

The report directory (validation_result.json, summary.json, index.html) is always written, also on
failure, so the failed rules can be read; then a failure raises `DataValidationError` naming each rule
and example files. The `split` step refuses to run unless summary.json says success.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from renalmae.artifacts import ValidationReport
from renalmae.data.cache import load_ingested
from renalmae.data.expectations import render_html, run_suite, summarize, validation_frame
from renalmae.data.near_duplicates import NearDuplicates
from renalmae.errors import DataValidationError
from renalmae.io import atomic_dir, write_json
from renalmae.params import Params
from renalmae.pipeline import step

log = logging.getLogger(__name__)

STEP = step("validate")

SUMMARY_FILE = ValidationReport.SUMMARY
RESULT_FILE = ValidationReport.RESULT
HTML_FILE = ValidationReport.REPORT
MAX_EXAMPLES_IN_MESSAGE = 3


def run(params: Params, ingest_dir: str | Path, report_dir: str | Path) -> dict[str, Any]:
    started = time.perf_counter()
    ingested = load_ingested(ingest_dir)
    near = NearDuplicates.find(ingested.table, params.data.near_duplicate_bits)
    frame = validation_frame(ingested.table, ingested.images, near)
    validation = run_suite(frame, params).to_json_dict()
    # The same data must give the same report bytes (DVC hashes it): drop the wall-clock load time.
    validation.get("meta", {}).get("batch_markers", {}).pop("ge_load_time", None)
    summary = summarize(validation, frame, near)
    summary["ingest_dir"] = str(ingest_dir)
    with atomic_dir(report_dir) as staging:
        write_json(staging / RESULT_FILE, validation)
        write_json(staging / SUMMARY_FILE, summary)
        (staging / HTML_FILE).write_text(render_html(summary))
    # The timing is logged, not written: the same data must give the same report bytes (DVC hashes it).
    log.info("validate: %d images in %.1f s", len(frame), time.perf_counter() - started)
    if not summary["success"]:
        raise DataValidationError(failure_message(summary, Path(report_dir)))
    return summary


def failure_message(summary: dict[str, Any], report_dir: Path) -> str:
    """One line per failed rule with its first example files, and where the full report is."""
    lines = [f"data validation failed ({len(summary['failed'])} rule(s)); see {report_dir / HTML_FILE}:"]
    for entry in summary["failed"]:
        examples = "; ".join(entry["examples"][:MAX_EXAMPLES_IN_MESSAGE]) or "-"
        more = len(entry["examples"]) - MAX_EXAMPLES_IN_MESSAGE
        lines.append(
            f"  {entry['rule']} ({entry['details']}): {examples}{f' (+{more} more)' if more > 0 else ''} "
            f"-> {entry['fix']}"
        )
    return "\n".join(lines)
