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
    from great_expectations.expectations.row_conditions import Column

    data, rules, k = params.data, params.validate_, params.split.k_folds
    min_per_class = max(rules.min_images_per_class, k)
    labelled = {"row_condition": Column("origin") == "labelled"}

    def meta(rule: str, fix: str, check: str) -> dict:
        """`check`: what the rule asks, in words (the report lists it); `fix`: what to do when it fails."""
        return {"meta": {"rule": rule, "fix": fix, "check": check}}

    expectations = [
        gxe.ExpectColumnValuesToNotBeNull(
            column="id", **meta("id_present", "re-run ingest", "every row has an id")
        ),
        gxe.ExpectColumnValuesToBeUnique(
            column="id", **meta("id_unique", "re-run ingest", "no two rows share an id")
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="source", **meta("source_present", "re-run ingest", "every row names its source file")
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="sha256",
            **meta("sha256_present", "re-run ingest", "every image has a hash of its pixels (sha256)"),
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="label",
            **labelled,
            **meta("label_present", "give every labelled image a label", "every labelled image has a label"),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="label",
            value_set=list(data.classes),
            **meta(
                "label_in_classes",
                f"labels must be one of data.classes {list(data.classes)}",
                f"every label is one of data.classes: {', '.join(data.classes)}",
            ),
        ),
        gxe.ExpectColumnDistinctValuesToContainSet(
            column="label",
            value_set=list(data.classes),
            **meta(
                "class_not_empty",
                "every class in data.classes needs images (or remove the class)",
                "every class of data.classes has images",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="label_count",
            min_value=min_per_class,
            **meta(
                "class_min_images",
                f"each class needs >= {min_per_class} images "
                f"(max of validate.min_images_per_class and {k} folds): add images or lower the setting",
                f"every class has at least {min_per_class} images",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="copies_groups",
            max_value=1,
            **meta(
                "duplicate_image",
                "the same image appears in several groups or twice in the pools: remove the "
                "copies (or set data.drop_duplicates: true)",
                "an image (the same pixels) sits in one group only, and at most once in the pools",
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
                "no pool image repeats a labelled image of data.source",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="copies_labels",
            max_value=1,
            **meta(
                "conflicting_labels",
                "the same image carries different labels: fix the labels",
                "every copy of an image carries the same label",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="width",
            min_value=rules.min_side,
            max_value=rules.max_side,
            **meta(
                "width_in_range",
                f"width must be in [{rules.min_side}, {rules.max_side}] pixels",
                f"width between {rules.min_side} and {rules.max_side} pixels",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="height",
            min_value=rules.min_side,
            max_value=rules.max_side,
            **meta(
                "height_in_range",
                f"height must be in [{rules.min_side}, {rules.max_side}] pixels",
                f"height between {rules.min_side} and {rules.max_side} pixels",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="aspect_ratio",
            max_value=rules.max_aspect_ratio,
            **meta(
                "aspect_ratio",
                f"long side / short side must be <= {rules.max_aspect_ratio}",
                f"long side / short side at most {rules.max_aspect_ratio}",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="pixel_std",
            min_value=rules.min_pixel_std,
            **meta(
                "not_blank",
                f"blank or constant image (pixel std < {rules.min_pixel_std}): remove it",
                f"pixel standard deviation at least {rules.min_pixel_std} (not blank or constant)",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="group_fold_count",
            max_value=1,
            **meta(
                "group_in_one_fold",
                "a group (patient / series) sits in several given folds: fix the "
                "fold column so each group has one fold",
                "each group (patient / series) sits in one given fold",
            ),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="group_split_count",
            max_value=1,
            **meta(
                "group_in_one_split",
                "a group sits in several given splits (train, test, external): fix the split column",
                "each group sits in one given split (train, test or external)",
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
                    "near-copies of one image carry the same label",
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
                    "near-copies of one image sit in one given fold and split",
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
                    f"every labelled image has a {data.group_column}",
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
    """The outcome of one rule in words: how many rows fail of those it checked, or what is missing."""
    outcome = result["result"]
    if outcome.get("partial_missing_list"):
        return f"missing: {outcome['partial_missing_list']}"
    if "unexpected_count" in outcome:
        checked = outcome.get("element_count", 0) - outcome.get("missing_count", 0)
        if checked == 0:
            return "not applicable: no row has a value to check"
        if outcome["unexpected_count"] == 0:
            return f"all {checked} rows pass"
        return f"{outcome['unexpected_count']} of {checked} rows fail"
    if result["success"]:
        return "all present" if "missing_count" in outcome else "passes"
    return json.dumps(outcome, default=str)[:200]


def _examples(rule: str, frame: pd.DataFrame, rows: list[int]) -> tuple[list[str], int]:
    """The first MAX_EXAMPLES offending files (or copy sets) of a failed rule, and how many there are."""
    if rule in ("duplicate_image", "conflicting_labels"):
        return _copies(frame, rows), frame.loc[rows, "sha256"].nunique()
    if rule == "pool_repeats_labelled":  # with their labelled originals
        repeated = frame.loc[rows, "sha256"]
        return _copies(frame, frame.index[frame["sha256"].isin(repeated)].tolist()), repeated.nunique()
    if rule.startswith("near_duplicate"):
        return _near_copies(frame, rows), frame.loc[rows, "near_cluster"].nunique()
    sources = frame.loc[rows, "source"].drop_duplicates()
    return sources.head(MAX_EXAMPLES).tolist(), len(sources)


def summarize(
    validation: dict[str, Any], frame: pd.DataFrame, near: NearDuplicates | None = None
) -> dict[str, Any]:
    """{"success", "rules", "failed", "statistics"} from a GX result dict.

    `rules`: every rule in suite order as {"rule", "check", "column", "success", "details", "fix",
    "examples", "examples_total"}; `failed`: the failed ones, by rule name (the same entries).
    """
    rules = []
    for result in validation["results"]:
        config = result["expectation_config"]
        rows = [] if result["success"] else list(result["result"].get("unexpected_index_list") or [])
        examples, examples_total = _examples(config["meta"]["rule"], frame, rows) if rows else ([], 0)
        rules.append(
            {
                "rule": config["meta"]["rule"],
                "check": config["meta"].get("check", config["type"]),
                "column": config["kwargs"].get("column"),
                "success": bool(result["success"]),
                "details": _describe(result),
                "fix": config["meta"]["fix"],
                "examples": examples,
                "examples_total": int(examples_total),
            }
        )
    failed = sorted((entry for entry in rules if not entry["success"]), key=lambda entry: entry["rule"])
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
    return {
        "success": bool(validation["success"]) and not failed,
        "rules": rules,
        "failed": failed,
        "statistics": statistics,
    }


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


PAGE_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
    "th{background:#f6f8fa}.passed{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}"
    "td.examples{overflow-wrap:anywhere;min-width:16em}ul{margin:0;padding-left:1.2em}"
    "td.number{text-align:right}.nowrap{white-space:nowrap}"
)


def _data_rows(statistics: dict[str, Any]) -> list[tuple[str, str]]:
    labelled = statistics["labelled"]
    rows = [("images", str(statistics["images"]))]
    rows += [(f"labelled: {name}", str(count)) for name, count in labelled.items()]
    rows += [
        ("unlabelled (pretraining pool)", str(statistics["pool"])),
        ("groups (patients / series) of labelled images", str(statistics["groups"])),
        ("repeated images (same pixels)", str(statistics["repeated_images"])),
    ]
    near = statistics.get("near_duplicates") or {}
    for key, name in (("pairs", "near-copy pairs of labelled images"),
                      ("pairs_across_groups", "near-copy pairs across groups"),
                      ("conflicting_label_pairs", "near-copy pairs with different labels"),
                      ("pool_images_near_labelled", "pool images near a labelled image")):  # fmt: skip
        if key in near:
            rows.append((name, str(near[key])))
    for key, name in (("pixel_std_median", "median pixel standard deviation"),
                      ("zero_fraction_median", "median fraction of zero pixels")):  # fmt: skip
        if statistics.get(key) is not None:
            rows.append((name, f"{statistics[key]:.3g}"))
    if "seconds" in statistics:
        rows.append(("validation time", f"{statistics['seconds']:.1f} s"))
    return rows


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained HTML page of the summary: every rule with its result and failing examples."""
    status = "PASSED" if summary["success"] else "FAILED"
    rules = summary.get("rules", summary["failed"])
    failed = [entry for entry in rules if not entry.get("success", False)]
    statistics = summary["statistics"]
    labelled = sum(statistics["labelled"].values())

    def rule_row(entry: dict[str, Any]) -> str:
        passed = entry.get("success", False)
        examples = "".join(f"<li>{html.escape(example)}</li>" for example in entry["examples"])
        more = entry.get("examples_total", 0) - len(entry["examples"])
        if more > 0:
            examples += f"<li>&hellip; and {more} more (validation_result.json lists every row)</li>"
        return (
            f"<tr><td class='{'passed' if passed else 'failed'}'>{'passed' if passed else 'FAILED'}</td>"
            f"<td class='nowrap'><code>{html.escape(entry['rule'])}</code></td>"
            f"<td>{html.escape(entry.get('check', ''))}</td><td>{html.escape(entry['details'])}</td>"
            f"<td>{'&mdash;' if passed else html.escape(entry['fix'])}</td>"
            f"<td class='examples'>{f'<ul>{examples}</ul>' if examples else '&mdash;'}</td></tr>"
        )

    rule_rows = "".join(rule_row(entry) for entry in [*failed, *(e for e in rules if e not in failed)])
    data_rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td class='number'>{html.escape(value)}</td></tr>"
        for name, value in _data_rows(statistics)
    )
    headline = (
        f"{len(rules)} rules checked on {statistics['images']} images ({labelled} labelled, "
        f"{statistics['pool']} in the unlabelled pool): "
        f"{len(rules) - len(failed)} passed, {len(failed)} failed."
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>renalmae data validation</title>"
        f"<style>{PAGE_STYLE}</style></head><body>"
        f"<h1>Data validation: <span class='{status.lower()}'>{status}</span></h1>"
        f"<p>{html.escape(headline)}</p>"
        "<h2>Rules</h2><table><thead><tr><th>result</th><th>rule</th><th>what it checks</th><th>outcome</th>"
        f"<th>fix</th><th>failing examples</th></tr></thead><tbody>{rule_rows}</tbody></table>"
        f"<h2>Data</h2><table><tbody>{data_rows}</tbody></table>"
        "<p>The full great-expectations result: "
        "<a href='validation_result.json'>validation_result.json</a></p>"
        "</body></html>"
    )
