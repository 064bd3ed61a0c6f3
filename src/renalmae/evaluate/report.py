"""The comparison report: tables, a plain-language summary, `comparison.md` and a one-file `index.html`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from renalmae.evaluate.comparison import SUMMARY_METRICS, TaskComparison
from renalmae.evaluate.runs import ByName

LABELS = ByName({"usfmae": "USF-MAE", "densenet169": "DenseNet-169"})
METRIC_NAMES = {
    "auc": "AUC",
    "f1": "F1",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision (PPV)",
    "npv": "NPV",
    "brier": "Brier score (lower is better)",
    "ece": "ECE (lower is better)",
}
TASK_NAMES = {"binary": "Binary task (normal vs anomaly)", "multiclass": "3-class task"}

Table = tuple[str, list[str], list[list[str]]]


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def p_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _interval(interval: dict, digits: int = 3) -> str:
    if interval["low"] is None:
        return "n/a"
    return f"{number(interval['low'], digits)} – {number(interval['high'], digits)}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _operating_point(summary: dict) -> str:
    """Binary only: what each model's validation-chosen threshold does on the holdout, in percentages."""
    if len(summary["classes"]) != 2:
        return ""
    parts = [
        f"{LABELS[model]} found {_percent(summary['ensemble'][model]['sensitivity'])} of anomalies "
        f"(sensitivity) and cleared {_percent(summary['ensemble'][model]['specificity'])} of normal "
        "kidneys (specificity)"
        for model in (summary["candidate"], summary["baseline"])
    ]
    return f" At the decision thresholds chosen on validation data, {parts[0]}; {parts[1]}."


def plain_summary(summary: dict) -> str:
    """Which model is better, by how much and how sure, in words a clinical reader can follow."""
    a, b = summary["candidate"], summary["baseline"]
    boot = summary["bootstrap"]
    auc_a, auc_b = summary["ensemble"][a]["auc"], summary["ensemble"][b]["auc"]
    confidence = f"{boot['confidence']:.0%}"
    if auc_a is None or auc_b is None:
        return (
            f"On the {summary['n_test']} holdout images the AUC is undefined (only one class is "
            "present), so the models cannot be ranked by AUC on this set." + _operating_point(summary)
        )
    skill = (
        "separated anomalous from normal kidneys"
        if len(summary["classes"]) == 2
        else "told " + ", ".join(summary["classes"]) + " kidneys apart (mean one-vs-rest AUC)"
    )
    difference = summary["differences"]["auc"]
    relative = difference["relative_percent"]
    if auc_a == auc_b:
        headline = (
            f"On {summary['n_test']} holdout images, both models {skill} equally well (AUC {number(auc_a)})."
        )
    else:
        better, worse = (a, b) if auc_a > auc_b else (b, a)
        headline = (
            f"On {summary['n_test']} holdout images, {LABELS[better]} {skill} better than {LABELS[worse]}: "
            f"AUC {number(max(auc_a, auc_b))} versus {number(min(auc_a, auc_b))} "
            f"({number(abs(difference['absolute']))} AUC points"
            + (f", {abs(relative):.2f} % relative" if relative is not None else "")
            + ")."
        )
    low, high = boot["auc_difference"]["low"], boot["auc_difference"]["high"]
    sure = (
        f"This difference is statistically significant (DeLong test, Holm-adjusted p = "
        f"{p_value(summary['delong_p_holm'])}, below {summary['alpha']:g}), so it is unlikely to be "
        "chance alone."
        if summary["significant"]
        else f"The difference is not statistically significant (DeLong test, Holm-adjusted p = "
        f"{p_value(summary['delong_p_holm'])}): with this many test images it could be chance."
    )
    f1 = summary["differences"]["f1"]
    return (
        f"{headline} The {confidence} confidence interval of the AUC difference ({LABELS[a]} minus "
        f"{LABELS[b]}) runs from {number(low)} to {number(high)}. {sure} F1 (the balance of missed "
        f"anomalies and false alarms at the chosen operating point) differs by {number(f1['absolute'])} "
        f"({LABELS[a]} minus {LABELS[b]})." + _operating_point(summary) + " An AUC of 1 means every "
        "anomaly scores above every normal image; 0.5 is a coin toss."
    )


def _statistic(delong: dict) -> str:
    return f"undefined: {delong['undefined']}" if delong["z"] is None else f"z = {delong['z']:.3f}"


def tables(summary: dict) -> list[Table]:
    a, b = summary["candidate"], summary["baseline"]
    ensemble, boot = summary["ensemble"], summary["bootstrap"]
    metrics_rows = []
    for name in SUMMARY_METRICS:
        difference = summary["differences"][name]
        ci = {"auc": ("auc_a", "auc_b", "auc_difference"), "f1": ("f1_a", "f1_b", "f1_difference")}.get(name)
        cells = [number(ensemble[a][name]), number(ensemble[b][name]), number(difference["absolute"])]
        if ci:
            cells = [f"{c} ({_interval(boot[k])})" for c, k in zip(cells, ci, strict=True)]
        relative = difference["relative_percent"]
        metrics_rows.append([METRIC_NAMES[name], *cells, "n/a" if relative is None else f"{relative:+.2f} %"])
    if summary["thresholds"][a] is not None:
        threshold_row = ["decision threshold on P(anomaly)", number(summary["thresholds"][a])]
        metrics_rows.append([*threshold_row, number(summary["thresholds"][b]), "", ""])
    per_class = ensemble[a].get("auc_per_class") or {}
    for name in per_class:
        metrics_rows.append(
            [
                f"AUC {name} vs rest",
                number(per_class[name]),
                number(ensemble[b]["auc_per_class"][name]),
                "",
                "",
            ]
        )
    holm = summary["p_values_holm"]
    tests = []
    delong = summary["delong"]
    if len(summary["classes"]) == 2:
        tests.append(
            [
                "DeLong (AUC)",
                _statistic(delong),
                p_value(summary["p_values"]["delong"]),
                p_value(holm["delong"]),
            ]
        )
    else:
        for name, result in (delong or {}).items():
            tests.append(
                [
                    f"DeLong (AUC, {name} vs rest)",
                    _statistic(result),
                    p_value(summary["p_values"][f"delong_{name}"]),
                    p_value(holm[f"delong_{name}"]),
                ]
            )
    mcnemar = summary["mcnemar"]
    tests.append(
        [
            "McNemar exact (correct / incorrect)",
            f"{LABELS[a]} only right {mcnemar['a_only_correct']}, "
            f"{LABELS[b]} only right {mcnemar['b_only_correct']}",
            p_value(mcnemar["p_value"]),
            p_value(holm["mcnemar"]),
        ]
    )
    for metric in ("auc", "f1"):
        result = summary["wilcoxon"][metric]
        tests.append(
            [
                f"Wilcoxon signed-rank, validation-fold {metric.upper()}",
                f"{result['n_pairs']} folds, median difference {number(result['median_difference'])}",
                p_value(result["p_value"]),
                p_value(holm[f"wilcoxon_{metric}"]),
            ]
        )
    fold_rows = [
        [
            LABELS[model],
            str(f["fold"]),
            number(f["threshold"]),
            number(f["val"]["auc"]),
            number(f["val"]["f1"]),
            number(f["test"]["auc"]),
            number(f["test"]["f1"]),
        ]
        for model, folds in summary["folds"].items()
        for f in folds
    ]
    confidence = f"{boot['confidence']:.0%}"
    return [
        (
            f"Holdout metrics of the fold ensembles ({confidence} bootstrap CI, "
            f"{boot['resamples']} resamples)",
            ["metric", LABELS[a], LABELS[b], "difference", "relative"],
            metrics_rows,
        ),
        (
            "Statistical tests (Holm-adjusted across this task's tests)",
            ["test", "statistic", "p", "Holm p"],
            tests,
        ),
        (
            "Fold models",
            ["model", "fold", "threshold", "val AUC", "val F1", "holdout AUC", "holdout F1"],
            fold_rows,
        ),
    ]


NOTES = (
    "Binary decisions use a threshold on P(anomaly) chosen on validation data only ({method}): "
    "each fold model uses its own validation fold, each ensemble (mean probability of the fold models) "
    "the pooled out-of-fold validation predictions of its members. 3-class decisions take the most "
    "probable class. Relative difference = (USF-MAE − DenseNet-169) / DenseNet-169 × 100; difference = "
    "USF-MAE − DenseNet-169 in metric points. For the 3-class task AUC, F1, sensitivity, specificity, "
    "precision and NPV are macro averages over classes (one-vs-rest) and the task-level DeLong p is "
    "the smallest Holm-adjusted per-class p. n/a = undefined "
    "(e.g. AUC of a set holding one class)."
)


def _markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"#### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(
    comparisons: dict[str, TaskComparison], figures: dict[str, dict[str, Path]], root: Path
) -> str:
    parts = ["# USF-MAE vs DenseNet-169: comparison on the holdout set", ""]
    for task, comparison in comparisons.items():
        parts += [f"## {TASK_NAMES.get(task, task)}", "", plain_summary(comparison.summary), ""]
        parts += [_markdown_table(*table) for table in tables(comparison.summary)]
        parts += [f"![{name}]({path.relative_to(root).as_posix()})" for name, path in figures[task].items()]
        parts.append("")
    method = next(iter(comparisons.values())).summary["threshold_method"] if comparisons else ""
    parts += ["## Notes", "", NOTES.format(method=method), ""]
    return "\n".join(parts)


def _html_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        # an empty cell (not applicable, e.g. the difference of two thresholds) reads as a dash, not a gap
        "<tr>" + "".join(f"<td>{html.escape(cell) or '&mdash;'}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<h4>{html.escape(title)}</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _embedded_png(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}.summary{background:#eef5fb;border-left:4px solid #1b6ca8;padding:0.8em 1em}
img{max-width:100%;margin:0.5em 0}.note{color:#555;font-size:0.9em}"""


def render_html(comparisons: dict[str, TaskComparison], figures: dict[str, dict[str, Path]]) -> str:
    """One self-contained page: every figure is embedded as a base64 PNG."""
    sections = []
    for task, comparison in comparisons.items():
        sections.append(f"<h2>{html.escape(TASK_NAMES.get(task, task))}</h2>")
        sections.append(f'<p class="summary">{html.escape(plain_summary(comparison.summary))}</p>')
        sections += [_html_table(*table) for table in tables(comparison.summary)]
        sections += [_embedded_png(path, f"{name} {task}") for name, path in figures[task].items()]
    method = next(iter(comparisons.values())).summary["threshold_method"] if comparisons else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>renalmae: USF-MAE vs DenseNet-169</title><style>{STYLE}</style></head><body>"
        "<h1>USF-MAE vs DenseNet-169 on the holdout set</h1>"
        + "".join(sections)
        + "<h2>How to read this</h2>"
        + f"<p class='note'>{html.escape(NOTES.format(method=method))}</p></body></html>"
    )
