"""The data validation suite: great-expectations rules over the ingest table joined with per-image statistics.

Each expectation carries `meta = {"rule": name, "fix": hint}`; `summarize` turns a GX validation result
into the plain summary people read (failed rules with example source files). The helper columns below
turn set-level rules (duplicates, leakage, class sizes) into per-row values that simple GX column
expectations can check, so every failure points at concrete files.

Duplicates, precisely: an image (sha256 of its decoded pixels) may repeat only inside one group under one
label (a frozen frame of one clip, which cannot leak); a copy in another group, another label or the pool
fails.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from renalmae.data.near_duplicates import NearDuplicates
from renalmae.params import Params

MAX_EXAMPLES = 10
STAT_CHUNK = 2048


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """Mean, standard deviation and fraction of zero pixels of each cached image (chunked over the memmap)."""
    stats = np.zeros((len(images), 3), dtype=np.float64)
    for start in range(0, len(images), STAT_CHUNK):
        chunk = np.asarray(images[start : start + STAT_CHUNK], dtype=np.float32).reshape(
            -1, images.shape[1] * images.shape[2]
        )
        stats[start : start + len(chunk)] = np.stack(
            [chunk.mean(axis=1), chunk.std(axis=1), (chunk == 0).mean(axis=1)], axis=1
        )
    return pd.DataFrame(stats, columns=["pixel_mean", "pixel_std", "zero_fraction"])


def validation_frame(
    table: pd.DataFrame, images: np.ndarray, near: NearDuplicates | None = None
) -> pd.DataFrame:
    """The table plus per-image statistics and the per-row helper columns the suite checks.

    `near`: the near-duplicate pairs of `table` (`NearDuplicates.find`); None counts as none.
    """
    frame = pd.concat([table.reset_index(drop=True), image_statistics(images)], axis=1)
    sides = frame[["width", "height"]].astype(float)
    frame["aspect_ratio"] = sides.max(axis=1) / sides.min(axis=1).clip(lower=1)
    labelled = frame["origin"] == "labelled"
    frame["label_count"] = frame["label"].map(frame.loc[labelled, "label"].value_counts()).astype(float)
    # a pool image repeating a labelled one is the `pool_repeats_labelled` rule's business, not a duplicate
    repeats = ~labelled & frame["sha256"].isin(frame.loc[labelled, "sha256"])
    frame["pool_repeats_labelled"] = repeats.astype(int)
    counted = frame[frame["pool_repeats_labelled"] == 0]
    group_or_id = counted["group"].fillna(counted["id"])
    by_image = counted.assign(group_or_id=group_or_id).groupby("sha256", dropna=False)
    frame["copies_groups"] = by_image["group_or_id"].transform("nunique").reindex(frame.index).fillna(1)
    frame["copies_labels"] = by_image["label"].transform("nunique").reindex(frame.index).fillna(0)
    given = labelled & frame["group"].notna()
    frame["group_fold_count"] = (
        frame[given].groupby("group")["fold"].transform("nunique").reindex(frame.index).astype(float)
    )
    frame["group_split_count"] = (
        frame[given].groupby("group")["split"].transform("nunique").reindex(frame.index).astype(float)
    )
    frame.loc[frame["group_fold_count"] == 0, "group_fold_count"] = np.nan
    frame.loc[frame["group_split_count"] == 0, "group_split_count"] = np.nan
    # exact copies are judged by the duplicate rules above: these two rules see only the other pairs
    near = None if near is None else near.without_exact_copies()
    frame["near_conflicts"] = 0 if near is None else near.conflicts_per_row()
    frame["near_cluster"] = None if near is None else near.near_groups().to_numpy()
    clustered = frame[labelled & frame["near_cluster"].notna()]
    by_cluster = clustered.groupby("near_cluster")
    parts = pd.concat(
        [by_cluster["fold"].transform("nunique"), by_cluster["split"].transform("nunique")], axis=1
    ).max(axis=1)
    frame["near_group_parts"] = parts.reindex(frame.index).astype(float)
    return frame


def build_suite(params: Params):
    """The expectation suite for `params` (classes, sizes, thresholds, k folds, grouping)."""
    import great_expectations as gx
    from great_expectations import expectations as gxe

    data, rules, k = params.data, params.validate_, params.split.k_folds
    min_per_class = max(rules.min_images_per_class, k)
    labelled = {"row_condition": 'origin=="labelled"', "condition_parser": "pandas"}

    def meta(rule: str, fix: str) -> dict:
        return {"meta": {"rule": rule, "fix": fix}}

    expectations = [
        gxe.ExpectColumnValuesToNotBeNull(column="id", **meta("id_present", "re-run ingest")),
        gxe.ExpectColumnValuesToBeUnique(column="id", **meta("id_unique", "re-run ingest")),
        gxe.ExpectColumnValuesToNotBeNull(column="source", **meta("source_present", "re-run ingest")),
        gxe.ExpectColumnValuesToNotBeNull(column="sha256", **meta("sha256_present", "re-run ingest")),
        gxe.ExpectColumnValuesToNotBeNull(
            column="label", **labelled, **meta("label_present", "give every labelled image a label")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="label",
            value_set=list(data.classes),
            **meta("label_in_classes", f"labels must be one of data.classes {list(data.classes)}"),
        ),
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="label",
            value_set=list(data.classes),
            **meta("class_not_empty", "every class in data.classes needs images (or remove the class)"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="label_count",
            min_value=min_per_class,
            **meta(
                "class_min_images",
                f"each class needs >= {min_per_class} images "
                f"(max of validate.min_images_per_class and {k} folds): add images or lower the setting",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="copies_groups",
            max_value=1,
            **meta(
                "duplicate_image",
                "the same image appears in several groups or twice in the pools: remove the "
                "copies (or set data.drop_duplicates: true)",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="pool_repeats_labelled",
            max_value=0,
            **meta(
                "pool_repeats_labelled",
                "pool images repeat labelled images of data.source (is a pool the source itself, or a copy "
                "of it?): take them out of data.pool, which needs unlabelled images only; the development "
                "images are pretrained on already, and copies of test or external images would leak",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="copies_labels",
            max_value=1,
            **meta("conflicting_labels", "the same image carries different labels: fix the labels"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="width",
            min_value=rules.min_side,
            max_value=rules.max_side,
            **meta("width_in_range", f"width must be in [{rules.min_side}, {rules.max_side}] pixels"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="height",
            min_value=rules.min_side,
            max_value=rules.max_side,
            **meta("height_in_range", f"height must be in [{rules.min_side}, {rules.max_side}] pixels"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="aspect_ratio",
            max_value=rules.max_aspect_ratio,
            **meta("aspect_ratio", f"long side / short side must be <= {rules.max_aspect_ratio}"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="pixel_std",
            min_value=rules.min_pixel_std,
            **meta("not_blank", f"blank or constant image (pixel std < {rules.min_pixel_std}): remove it"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="group_fold_count",
            max_value=1,
            **meta(
                "group_in_one_fold",
                "a group (patient / series) sits in several given folds: fix the "
                "fold column so each group has one fold",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="group_split_count",
            max_value=1,
            **meta(
                "group_in_one_split",
                "a group sits in several given splits (train, test, external): fix the split column",
            ),
        ),
    ]
    if data.near_duplicate_conflicts == "refuse":
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="near_conflicts",
                max_value=0,
                **meta(
                    "near_duplicate_conflicting_labels",
                    "near-copies of one image carry different labels: fix the labels, or set "
                    "data.near_duplicate_conflicts: drop (ingest drops both) or keep",
                ),
            )
        )
    if params.split.use_given:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="near_group_parts",
                max_value=1,
                **meta(
                    "near_duplicates_in_one_given_part",
                    "near-copies of one image sit in different given folds or splits, which leaks across "
                    "them: set split.use_given: false to draw a split that keeps them together, or fix the "
                    "fold / split column",
                ),
            )
        )
    if data.group_column != "none":
        expectations.append(
            gxe.ExpectColumnValuesToNotBeNull(
                column="group",
                **labelled,
                **meta(
                    "group_present",
                    f"every labelled image needs a {data.group_column} (or set data.group_column: none)",
                ),
            )
        )
    suite = gx.ExpectationSuite(name="renalmae_data")
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def run_suite(frame: pd.DataFrame, params: Params):
    """Validate `frame` with the suite in an ephemeral GX context; returns the GX validation result."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    asset = context.data_sources.add_pandas("ingested").add_dataframe_asset("table")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(build_suite(params), result_format="COMPLETE")


def _describe(result: dict[str, Any]) -> str:
    outcome = result["result"]
    if "missing_count" in outcome and "partial_missing_list" in outcome:
        return f"missing: {outcome['partial_missing_list']}"
    if "unexpected_count" in outcome:
        return f"{outcome['unexpected_count']} of {outcome.get('element_count')} rows"
    return json.dumps(outcome, default=str)[:200]


def summarize(
    validation: dict[str, Any], frame: pd.DataFrame, near: NearDuplicates | None = None
) -> dict[str, Any]:
    """{"success", "failed": [{"rule", "fix", "details", "examples"}], "statistics"} from a GX result dict."""
    failed = []
    for result in validation["results"]:
        if result["success"]:
            continue
        config = result["expectation_config"]
        rows = result["result"].get("unexpected_index_list") or []
        examples = frame.loc[list(rows), "source"].drop_duplicates().head(MAX_EXAMPLES).tolist()
        if config["meta"]["rule"] in ("duplicate_image", "conflicting_labels") and rows:
            examples = _copies(frame, rows)
        if config["meta"]["rule"] == "pool_repeats_labelled" and rows:  # with their labelled originals
            examples = _copies(frame, frame.index[frame["sha256"].isin(frame.loc[rows, "sha256"])].tolist())
        if config["meta"]["rule"].startswith("near_duplicate") and rows:
            examples = _near_copies(frame, rows)
        failed.append(
            {
                "rule": config["meta"]["rule"],
                "fix": config["meta"]["fix"],
                "column": config["kwargs"].get("column"),
                "details": _describe(result),
                "examples": examples,
            }
        )
    failed.sort(key=lambda entry: entry["rule"])
    labelled = frame[frame["origin"] == "labelled"]
    statistics = {
        "images": len(frame),
        "labelled": {str(k): int(v) for k, v in labelled["label"].value_counts().sort_index().items()},
        "pool": int((frame["origin"] == "pool").sum()),
        "groups": int(labelled["group"].nunique()),
        "repeated_images": int(frame["sha256"].duplicated().sum()),
        "near_duplicates": None if near is None else near.summary(),
        "pixel_std_median": float(frame["pixel_std"].median()) if len(frame) else None,
        "zero_fraction_median": float(frame["zero_fraction"].median()) if len(frame) else None,
        "expectations": validation["statistics"],
    }
    return {"success": bool(validation["success"]) and not failed, "failed": failed, "statistics": statistics}


def _copies(frame: pd.DataFrame, rows: list[int]) -> list[str]:
    """Examples for a duplicate rule: each offending image with its copies, as `a == b` strings."""
    examples = []
    for _, copies in frame.loc[list(rows)].groupby("sha256", sort=False):
        labels = copies["label"].fillna("(pool)")
        examples.append(
            " == ".join(f"{source} [{label}]" for source, label in zip(copies["source"], labels, strict=True))
        )
        if len(examples) == MAX_EXAMPLES:
            break
    return examples


def _near_copies(frame: pd.DataFrame, rows: list[int]) -> list[str]:
    """Examples for a near-duplicate rule: each offending cluster as `a [label, fold] ~ b [label, fold]`."""
    examples = []
    offending = frame.loc[list(rows)]
    for cluster in offending["near_cluster"].dropna().unique()[:MAX_EXAMPLES]:
        members = frame[frame["near_cluster"] == cluster]
        examples.append(
            " ~ ".join(
                f"{row.source} [{row.label}, fold {row.fold}, {row.split}]" for row in members.itertuples()
            )
            .replace(", <NA>", "")
            .replace(", None", "")
            .replace(", nan", "")
        )
    return examples


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained HTML page of the summary (the Data Docs of this suite)."""
    status = "PASSED" if summary["success"] else "FAILED"
    colour = "#1a7f37" if summary["success"] else "#cf222e"
    rows = "".join(
        f"<tr><td><b>{html.escape(entry['rule'])}</b></td><td>{html.escape(str(entry['column']))}</td>"
        f"<td>{html.escape(entry['details'])}</td><td>{html.escape(entry['fix'])}</td>"
        f"<td><ul>{''.join(f'<li>{html.escape(e)}</li>' for e in entry['examples'])}</ul></td></tr>"
        for entry in summary["failed"]
    )
    failed_table = (
        "<h2>Failed rules</h2><table><tr><th>rule</th><th>column</th><th>what</th><th>fix</th>"
        f"<th>examples</th></tr>{rows}</table>"
        if summary["failed"]
        else "<p>Every rule passed.</p>"
    )
    statistics = html.escape(json.dumps(summary["statistics"], indent=2, default=str))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>renalmae data validation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top;text-align:left}</style></head><body>"
        f"<h1>Data validation: <span style='color:{colour}'>{status}</span></h1>{failed_table}"
        f"<h2>Statistics</h2><pre>{statistics}</pre>"
        "<p>Full great-expectations result: <a href='validation_result.json'>validation_result.json</a></p>"
        "</body></html>"
    )
