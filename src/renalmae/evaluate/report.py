"""The comparison report: a plain-language summary per evaluation set, tables, comparison.md and index.html.

Every sentence names the data it rests on (external set or internal holdout), the test and, for the
multiclass task, the class; a test is called significant only when it is a declared hypothesis whose
Holm-adjusted p is below alpha, and never in words that the interval beside it contradicts. The
wording comes from the params: class names and `data.description`, never a hard-coded organ.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from renalmae.evaluate.comparison import INTERVAL_METRICS, SET_NAMES, SUMMARY_METRICS, TaskComparison
from renalmae.initialisation import describe_initialisation
from renalmae.pipeline import model_label

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
SET_PHRASES = {
    "external": "external set (another site or device: never used for training, selection, thresholds or "
    "pretraining)",
    "test": "internal holdout",
}

Table = tuple[str, list[str], list[list[str]]]


def label(model: str) -> str:
    """Display name of a model (any baseline architecture falls back to its own name)."""
    return model_label(model)


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    """`p < 0.001`, `p = 0.023`, or `p n/a`: always a phrase that reads right after a comma."""
    if value is None:
        return "p n/a"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _p_cell(value: float | None) -> str:
    return p_text(value).removeprefix("p = ").removeprefix("p ")


def _interval(interval: dict, digits: int = 3) -> str:
    if interval["low"] is None:
        return "n/a"
    return f"{number(interval['low'], digits)} to {number(interval['high'], digits)}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _images(summary: dict) -> str:
    return f"{summary['description']} images" if summary.get("description") else "images"


def units(summary: dict, name: str, described: bool = True) -> str:
    """The unit of one evaluation set: "60 images from 24 series", or "60 images" without clusters
    (`described`: with `data.description`, "60 kidney ultrasound images ...")."""
    result = summary["sets"][name]
    images = f"{result['n']:,} {_images(summary) if described else 'images'}"
    unit = summary.get("cluster_unit")
    if not unit or result.get("clusters", result["n"]) == result["n"]:
        return images
    return f"{images} from {result['clusters']:,} {unit}"


def _clustered(summary: dict) -> str | None:
    """The cluster unit ("series") when some evaluation set holds several images of one cluster."""
    unit = summary.get("cluster_unit")
    sets = summary["sets"].values()
    return (
        unit if unit and any(result.get("clusters", result["n"]) < result["n"] for result in sets) else None
    )


def _resampled(summary: dict) -> str:
    unit = _clustered(summary)
    return f"cluster-bootstrap (resampling {unit})" if unit else "bootstrap"


def training_variance(summary: dict) -> str:
    """The report's first sentence on what the intervals count: one training run, or R repeats."""
    repeats = summary.get("repeats", 1)
    unit = _clustered(summary)
    sampled = (
        f"which {unit} and images were drawn for testing" if unit else "which images were drawn for testing"
    )
    if repeats == 1:
        return (
            "Each model was trained once (evaluate.repeats: 1), so training variance is not in these "
            f"intervals or tests: they count {sampled}, not which training run was drawn, and another seed "
            "can change the verdict (set evaluate.repeats: 3 or more)."
        )
    return (
        f"Each model was trained {repeats} times (evaluate.repeats, seeds seed to seed + {repeats - 1}); "
        "the declared AUC tests are over the repeats (Obuchowski-Rockette), counting training variance as "
        f"well as {sampled}; the tables show repeat 0, the registered models."
    )


def _repeats_sentence(summary: dict, name: str) -> str:
    """How the AUC difference varies over training repeats and what the test over them concludes."""
    repeats = summary["sets"][name].get("repeats")
    if not repeats:
        return ""
    a, b = summary["candidate"], summary["baseline"]
    parts = []
    for class_name, result in repeats.items():
        what = f" ({class_name} vs rest)" if len(summary["classes"]) > 2 else ""
        if not result["differences"]:
            parts.append(
                f"Over {result['repeats']} repeats{what} the AUC is undefined ({result['undefined']})."
            )
            continue
        spread = f"{min(result['differences']):+.3f} to {max(result['differences']):+.3f}"
        if result["undefined"]:
            parts.append(f"Over {result['repeats']} repeats{what} the AUC difference ranged {spread}; "
                         f"the test over repeats is undefined ({result['undefined']}).")  # fmt: skip
            continue
        df = "inf" if result["df"] is None else f"{result['df']:.1f}"
        verdict = {"candidate better": f"{label(a)} better", "baseline better": f"{label(b)} better",
                   "no difference shown": "no difference shown"}[result["verdict"]]  # fmt: skip
        parts.append(
            f"Over {result['repeats']} training repeats{what} the AUC difference ({label(a)} minus "
            f"{label(b)}) ranged {spread}, mean {result['mean_difference']:+.3f} "
            f"({summary['confidence']:.0%} CI {number(result['low'])} to {number(result['high'])}, df {df}, "
            f"{p_text(result['p_value'])}): "
            f"{verdict}, a conclusion that holds in {result['holds_in']} of {result['repeats']} repeats."
        )
    return " " + " ".join(parts)


def _skill(summary: dict) -> str:
    classes = summary["classes"]
    if len(classes) == 2:
        anomalies = summary.get("anomaly_classes") or [classes[1]]
        what = anomalies[0] if len(anomalies) == 1 else f"anomalous ({', '.join(anomalies)})"
        return f"separated {what} from {classes[0]} {_images(summary)}"
    names = ", ".join(classes[:-1]) + f" and {classes[-1]}"
    return f"told {names} {_images(summary)} apart (macro one-vs-rest AUC)"


def _set_tests(summary: dict, name: str, hypothesis: str) -> list[dict]:
    return [test for test in summary["tests"] if test["hypothesis"] == f"{hypothesis}:{name}"]


def _family_size(summary: dict) -> int:
    return sum(test["in_family"] for test in summary["tests"])


def _auc_test(summary: dict) -> str:
    if summary.get("repeats", 1) > 1:
        return "The test over training repeats"
    return (
        f"DeLong's test (clustered by {summary['cluster_unit']})"
        if summary.get("cluster_unit")
        else "DeLong's test"
    )


def _delong_sentence(summary: dict, test: dict, interval_has_zero: bool) -> str:
    """What DeLong's test on one set (binary) says, as a declared hypothesis or as a descriptive number."""
    name = _auc_test(summary)
    if test["undefined"]:
        return f"{name} is undefined on this set ({test['undefined']})."
    if not test["in_family"]:
        return f"{name} gives {p_text(test['p_value'])}, descriptive only ({test['reason']})."
    size = _family_size(summary)
    family = f"Holm-adjusted over the {size} declared test{'s' if size != 1 else ''} testable here"
    adjusted = p_text(test["p_holm"])
    if not test["rejected"]:
        return (
            f"{name}, a declared hypothesis, does not reject equal AUCs ({adjusted}, {family}): with this "
            "much data the difference could be chance."
        )
    sentence = (
        f"{name}, a declared hypothesis, rejects equal AUCs ({adjusted}, {family}, below "
        f"alpha {summary['alpha']:g})"
    )
    if interval_has_zero:
        return sentence + ", but the bootstrap interval above still includes 0: a borderline difference."
    return sentence + ": a difference this large is unlikely to be chance alone."


def _ovr_sentence(summary: dict, tests: list[dict]) -> str:
    """Multiclass: each class's one-vs-rest DeLong test, with its own difference and place in the family."""
    parts = []
    for test in tests:
        if test["undefined"]:
            parts.append(f"{test['class_name']}: undefined ({test['undefined']})")
            continue
        where = (
            f"Holm-adjusted {p_text(test['p_holm'])}"
            if test["in_family"]
            else f"{p_text(test['p_value'])}, descriptive"
        )
        parts.append(f"{test['class_name']} {where}")
    rejected = [test["class_name"] for test in tests if test["rejected"]]
    verdict = (
        f"the declared one-vs-rest test finds the AUCs differ for {', '.join(rejected)} only"
        if rejected
        else "no declared one-vs-rest test finds the AUCs differ for any class"
    )
    test = _auc_test(summary).removeprefix("The test").removeprefix("DeLong's test")
    return f"One-vs-rest DeLong tests per class{test} ({'; '.join(parts)}): {verdict}."


def _operating_point(summary: dict, name: str) -> str:
    a, b = summary["candidate"], summary["baseline"]
    result = summary["sets"][name]
    boot = result["bootstrap"]
    if len(summary["classes"]) != 2:
        rules = summary["decision_rules"]
        ensemble = result["ensemble"]
        parts = [
            f"{label(model)} (by {rules[model]['name']}) reached accuracy "
            f"{number(ensemble[model]['accuracy'])} and balanced accuracy "
            f"{number(ensemble[model]['balanced_accuracy'])}"
            for model in (a, b)
        ]
        return " " + "; ".join(parts) + "."
    anomalies = summary.get("anomaly_classes") or [summary["classes"][1]]
    anomaly_words = anomalies[0] if len(anomalies) == 1 else "anomalies"
    ensemble, negative = result["ensemble"], summary["classes"][0]
    parts = [
        f"{label(model)} found {_percent(ensemble[model]['sensitivity'])} of {anomaly_words} "
        f"(sensitivity, CI {_interval(boot[f'sensitivity_{side}'])}) and cleared "
        f"{_percent(ensemble[model]['specificity'])} of {negative} images (specificity, "
        f"CI {_interval(boot[f'specificity_{side}'])})"
        for model, side in ((a, "a"), (b, "b"))
    ]
    return f" At the thresholds chosen on validation data, {parts[0]}; {parts[1]}."


def plain_summary(summary: dict, name: str) -> str:
    """Which model is better on evaluation set `name`, by how much and how sure, in plain words."""
    a, b = summary["candidate"], summary["baseline"]
    result = summary["sets"][name]
    boot = result["bootstrap"]
    counts = ", ".join(f"{count} {class_name}" for class_name, count in result["class_counts"].items())
    where = f"On the {SET_PHRASES[name]}, {units(summary, name)} ({counts})"
    auc_a, auc_b = result["ensemble"][a]["auc"], result["ensemble"][b]["auc"]
    if auc_a is None or auc_b is None:
        why = result["ensemble"][a].get("auc_undefined") or "undefined"
        return (
            f"{where}: the AUC is undefined ({why}), so the models cannot be ranked by AUC."
            + _operating_point(summary, name)
        )
    difference = result["differences"]["auc"]
    if auc_a == auc_b:
        headline = f"{where}: both models {_skill(summary)} equally well (AUC {number(auc_a)})."
    else:
        better, worse = (a, b) if auc_a > auc_b else (b, a)
        relative = difference["relative_percent"]
        headline = (
            f"{where}: {label(better)} {_skill(summary)} better than {label(worse)}, AUC "
            f"{number(max(auc_a, auc_b))} versus {number(min(auc_a, auc_b))} "
            f"({number(abs(difference['absolute']))} AUC points"
            + (f", {abs(relative):.2f} % relative" if relative is not None else "")
            + ")."
        )
    interval = boot["auc_difference"]
    has_zero = interval["low"] is not None and interval["low"] <= 0 <= interval["high"]
    macro = ", macro average" if len(summary["classes"]) > 2 else ""
    interval_sentence = (
        f" The {boot['confidence']:.0%} {_resampled(summary)} interval of the AUC difference ({label(a)} "
        f"minus {label(b)}{macro}) runs from {_interval(interval)}"
        + (", which includes 0." if has_zero else ".")
        if interval["low"] is not None
        else " No bootstrap interval of the AUC difference: too few images of a class."
    )
    tests = _set_tests(summary, name, "delong")
    evidence = (
        _delong_sentence(summary, tests[0], has_zero)
        if len(summary["classes"]) == 2
        else _ovr_sentence(summary, tests)
    )
    return (
        f"{headline}{interval_sentence} {evidence}"
        + _repeats_sentence(summary, name)
        + _operating_point(summary, name)
        + (operating_point_flags(summary) if name == summary["evaluation_sets"][0] else "")
    )


def data_sentence(summary: dict) -> str:
    """What the data held: duplicates ingest dropped and copies of development images among the sets."""
    data = summary.get("data")
    if not data:
        return (
            "splits.json does not record what the data held (written by an older `renalmae split`; rerun "
            "it): duplicates and copies are not stated."
        )
    dropped = data.get("duplicates_dropped_at_ingest")
    dropped_text = (
        "ingest dropped no duplicate images (data.drop_duplicates is off, so validation refused any)"
        if dropped is None
        else f"ingest dropped {dropped} duplicate image{'s' if dropped != 1 else ''} (data.drop_duplicates)"
    )
    copies = data["copies_of_development_images"]
    parts = [
        f"{copies.get(name, 0)} of the {summary['sets'][name]['n']} {SET_NAMES[name]} images"
        for name in summary["evaluation_sets"]
    ]
    near = (
        " (same pixels or same near-duplicate cluster)"
        if data.get("near_duplicates_searched")
        else " (same pixels; near-copies were not searched: data.near_duplicate_bits is null)"
    )
    return f"Data: {dropped_text}; {' and '.join(parts)} are copies of development images{near}."


def provenance(summary: dict) -> str:
    """Which data chose what and which data measured it; the pretraining pool when it matters."""
    a, b = summary["candidate"], summary["baseline"]
    chosen = summary["provenance"]
    sentences = [
        f"Epochs were picked on {chosen['epoch'][a]} ({label(a)}) and {chosen['epoch'][b]} ({label(b)}).",
        f"Decisions: {label(a)} {chosen['decision'][a]}; {label(b)} {chosen['decision'][b]}.",
        f"Measured on the {' and the '.join(chosen['measured_on'])}; {chosen['never_chose']}.",
    ]
    if chosen.get("selection_flags"):
        flagged = "; ".join(
            f"{label(entry.split(' ', 1)[0])} {entry.split(' ', 1)[1]}" for entry in chosen["selection_flags"]
        )
        sentences.append(f"Fold models whose epoch choice cannot carry much weight: {flagged}.")
    initialisation = summary.get("initialisation") or {}
    for model in (a, b):
        if initialisation.get(model):
            sentences.append(f"{label(model)} started from {describe_initialisation(initialisation[model])}.")
    pretraining = summary.get("pretraining") or {}
    if pretraining.get("epochs") == 0:
        published = (initialisation.get(a) or {}).get("encoder_initialisation") or {}
        sentences.append(
            f"{label(a)}'s encoder was not pretrained here: the published encoder "
            f"({published.get('checkpoint')}) was fine-tuned as it is."
        )
    elif pretraining.get("transductive"):
        sentences.append(
            f"Transductive pretraining: {label(a)}'s MAE pool included the development images "
            "(pretrain.include_development: true); the holdout and external images were never in it."
        )
    return " ".join(sentences)


def _headline_table(summary: dict) -> Table:
    """AUC, F1, sensitivity, specificity with CIs and the DeLong p, the evaluation sets side by side."""
    a, b = summary["candidate"], summary["baseline"]
    names = summary["evaluation_sets"]
    header = ["metric"]
    for name in names:
        header += [
            f"{label(a)}, {SET_NAMES[name]}",
            f"{label(b)}, {SET_NAMES[name]}",
            f"difference, {SET_NAMES[name]}",
        ]
    rows = []
    for metric in INTERVAL_METRICS:
        row = [METRIC_NAMES[metric]]
        for name in names:
            boot = summary["sets"][name]["bootstrap"]
            row += [
                f"{number(boot[f'{metric}_{side}']['estimate'])} ({_interval(boot[f'{metric}_{side}'])})"
                for side in ("a", "b", "difference")
            ]
        rows.append(row)
    test_name = "over repeats (Obuchowski-Rockette)" if summary.get("repeats", 1) > 1 else "DeLong"
    for test_index, _ in enumerate(_set_tests(summary, names[0], "delong")):
        row = [test_name]
        for name in names:
            test = _set_tests(summary, name, "delong")[test_index]
            what = f"{test['class_name']} vs rest: " if test["class_name"] else ""
            p_cell = (
                "n/a (why: descriptive tests)"
                if test["undefined"]
                else f"{p_text(test['p_value'])}, Holm {_p_cell(test['p_holm'])}"
                if test["in_family"]
                else f"{p_text(test['p_value'])} (descriptive)"
            )
            row += ["", "", what + p_cell]
        rows.append(row)
    confidence = f"{summary['confidence']:.0%}"
    which = " (repeat 0)" if summary.get("repeats", 1) > 1 else ""
    title = f"Fold ensembles{which}, {confidence} {_resampled(summary)} CIs; evaluation sets side by side"
    return (title, header, rows)


def _set_table(summary: dict, name: str) -> Table:
    a, b = summary["candidate"], summary["baseline"]
    result = summary["sets"][name]
    rows = []
    for metric in SUMMARY_METRICS:
        difference = result["differences"][metric]
        relative = difference["relative_percent"]
        rows.append(
            [
                METRIC_NAMES[metric],
                number(result["ensemble"][a][metric]),
                number(result["ensemble"][b][metric]),
                number(difference["absolute"]),
                "n/a" if relative is None else f"{relative:+.2f} %",
            ]
        )
    rules = summary["decision_rules"]
    rows.append(["decision rule", rules[a]["name"], rules[b]["name"], "", ""])
    for class_name in result["ensemble"][a].get("auc_per_class") or {}:
        rows.append(
            [
                f"AUC {class_name} vs rest",
                number(result["ensemble"][a]["auc_per_class"][class_name]),
                number(result["ensemble"][b]["auc_per_class"][class_name]),
                "",
                "",
            ]
        )
    mcnemar = result["mcnemar"]
    rows.append(
        [
            "images only this model got right (McNemar's discordant pairs)",
            str(mcnemar["a_only_correct"]),
            str(mcnemar["b_only_correct"]),
            "",
            "",
        ]
    )
    return (
        f"All metrics on the {SET_NAMES[name]} ({units(summary, name, described=False)})",
        ["metric", label(a), label(b), "difference", "relative"],
        rows,
    )


def _floor(smallest_attainable_p: float | None) -> str:
    return "none (asymptotic test)" if smallest_attainable_p is None else _p_cell(smallest_attainable_p)


def _tests_tables(summary: dict) -> list[Table]:
    family = [test for test in summary["tests"] if test["in_family"]]
    descriptive = [test for test in summary["tests"] if not test["in_family"]]
    family_rows = [
        [test["label"], test["statistic"], _p_cell(test["p_value"]), _p_cell(test["p_holm"]),
         "rejected" if test["rejected"] else "not rejected"]
        for test in family
    ]  # fmt: skip
    descriptive_rows = [
        [test["label"], test["statistic"] or "", _p_cell(test["p_value"]),
         _floor(test["smallest_attainable_p"]), test["reason"].removeprefix("descriptive: ")]
        for test in descriptive
    ]  # fmt: skip
    alpha = f"{summary['alpha']:g}"
    return [
        (
            f"Declared hypotheses (evaluate.hypotheses): Holm's family, alpha {alpha}",
            ["hypothesis", "statistic", "p", "Holm p", "decision"],
            family_rows or [["(none testable on these data)", "", "", "", ""]],
        ),
        (
            "Descriptive tests (not in the family)",
            ["test", "statistic", "p", "smallest attainable p", "why descriptive"],
            descriptive_rows,
        ),
    ]


def _folds_table(summary: dict) -> Table:
    names = summary["evaluation_sets"]
    header = ["model", "fold", "threshold", "epoch picked on", "its size", "flags", "val AUC", "val F1"]
    for name in names:
        header += [f"{SET_NAMES[name]} AUC", f"{SET_NAMES[name]} F1"]
    rows = []
    for model, folds in summary["folds"].items():
        for fold in folds:
            selection = fold.get("epoch_selection") or {}
            size = fold.get("selection") or {}
            size_text = f"{size['images']} images, {size['groups']} groups" if "images" in size else "n/a"
            row = [label(model), str(fold["fold"]), number(fold["threshold"]), selection.get("split", "n/a"),
                   size_text, ", ".join(fold.get("selection_flags") or []) or "none",
                   number(fold["val"]["auc"]), number(fold["val"]["f1"])]  # fmt: skip
            for name in names:
                row += [number(fold[name]["auc"]), number(fold[name]["f1"])]
            rows.append(row)
    return ("Fold models (each at its own validation threshold)", header, rows)


def _operating_points_table(summary: dict) -> Table:
    """Each model's rule on the validation folds that chose it and on every reported set, side by side."""
    points = summary["operating_points"]
    names = ["validation", *summary["evaluation_sets"]]
    header = ["model", "decision rule"] + [
        f"{metric}, {SET_NAMES['val' if name == 'validation' else name]}"
        for name in names
        for metric in ("sensitivity", "specificity")
    ]
    rows = []
    for model, entry in points.items():
        row = [label(model), summary["decision_rules"][model]["name"]]
        for name in names:
            row += [
                f"{number(entry[name][metric]['estimate'])} ({_interval(entry[name][metric])})"
                for metric in ("sensitivity", "specificity")
            ]
        rows.append(row)
    macro = " (macro means over classes)" if len(summary["classes"]) > 2 else ""
    title = (
        f"Operating points across sets{macro}: validation = the folds that chose each rule, pooled out of "
        f"fold; {summary['confidence']:.0%} {_resampled(summary)} CIs"
    )
    return (title, header, rows)


def operating_point_flags(summary: dict) -> str:
    """One sentence per rule whose sensitivity did not travel from validation to a reported set."""
    flags = [
        f"{label(model)}'s rule: {flag}."
        for model, entry in summary.get("operating_points", {}).items()
        for flag in entry["flags"]
    ]
    return (" Operating point not kept: " + " ".join(flags)) if flags else ""


def _repeats_table(summary: dict) -> list[Table]:
    """Each training repeat's ensemble AUCs and clustered DeLong test, and the test over the repeats."""
    if summary.get("repeats", 1) == 1:
        return []
    a, b = summary["candidate"], summary["baseline"]
    rows = []
    for name in summary["evaluation_sets"]:
        for class_name, result in summary["sets"][name]["repeats"].items():
            what = f"{SET_NAMES[name]}" + (f", {class_name} vs rest" if len(summary["classes"]) > 2 else "")
            rows += [
                [what, str(entry["repeat"]), number(entry["auc_a"]), number(entry["auc_b"]),
                 number(entry["difference"]), _p_cell(entry["p_value"]), entry["verdict"]]
                for entry in result["per_repeat"]
            ]  # fmt: skip
            interval = (
                "n/a" if result["low"] is None else f"{number(result['low'])} to {number(result['high'])}"
            )
            rows.append(
                [what, "all (Obuchowski-Rockette)", "", "",
                 f"{number(result['mean_difference'])} ({interval})", _p_cell(result["p_value"]),
                 f"{result['verdict']}: holds in {result['holds_in']} of {result['repeats']}"]
            )  # fmt: skip
    header = ["set", "repeat", f"{label(a)} AUC", f"{label(b)} AUC", "difference", "p", "verdict"]
    return [
        (
            f"Training repeats: each repeat's fold ensembles and the test over {summary['repeats']}",
            header,
            rows,
        )
    ]


def tables(summary: dict) -> list[Table]:
    return [
        _headline_table(summary),
        _operating_points_table(summary),
        *_repeats_table(summary),
        *[_set_table(summary, name) for name in summary["evaluation_sets"]],
        *_tests_tables(summary),
        _folds_table(summary),
    ]


NOTES = " ".join(
    [
        "Which data chose what: each fold model's epoch on an inner grouped split of its training folds",
        "(train.selection_fraction; with 0, on its validation fold, whose numbers are then optimistic);",
        "each fold model's binary threshold on its validation fold; each fold ensemble's (mean probability",
        "of its fold models) threshold is the mean of its members' thresholds. 3-class decisions take the",
        "prior-corrected argmax: probabilities times the development set's class frequencies, undoing",
        "class-balanced training. The internal holdout and the external set chose nothing. Holm's family",
        "holds only the declared hypotheses (evaluate.hypotheses); a test that is undefined, cannot reach",
        "alpha on these data (e.g. Wilcoxon over 5 folds: smallest p 0.0625) or was not declared is",
        "descriptive. Difference = candidate minus baseline in metric points; relative = difference /",
        "baseline x 100. For the 3-class task AUC, F1, sensitivity, specificity, precision and NPV are macro",
        "averages over classes (one-vs-rest), and each class's DeLong test stands for that class only.",
        "Images of one patient or series (data.group_column) are one unit: DeLong's test uses Obuchowski's",
        "clustered variance (1997), the bootstrap resamples whole clusters, McNemar's test is Durkalski's",
        "clustered statistic (2003). With evaluate.repeats > 1 the declared AUC hypotheses are tested over",
        "the training repeats (Obuchowski-Rockette 1995, Hillis's degrees of freedom), so a seed's luck is",
        "not mistaken for a difference between the models.",
        "n/a = undefined (e.g. AUC of a set holding one class).",
    ]
)


def _markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"#### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _title(comparisons: dict[str, TaskComparison]) -> str:
    first = next(iter(comparisons.values())).summary if comparisons else None
    if first is None:
        return "Model comparison"
    versus = f"{label(first['candidate'])} vs {label(first['baseline'])}"
    on = " and the ".join(SET_NAMES[name] for name in first["evaluation_sets"])
    return f"{versus}: comparison on the {on}"


def _task_name(comparison: TaskComparison) -> str:
    classes = comparison.classes
    if len(classes) == 2:
        return f"Binary task ({classes[0]} vs {classes[1]})"
    return f"{len(classes)}-class task ({', '.join(classes)})"


def render_markdown(
    comparisons: dict[str, TaskComparison], figures: dict[str, dict[str, Path]], root: Path
) -> str:
    first = next(iter(comparisons.values())).summary if comparisons else None
    parts = [f"# {_title(comparisons)}", ""] + ([f"*{training_variance(first)}*", ""] if first else [])
    for task, comparison in comparisons.items():
        summary = comparison.summary
        parts += [f"## {_task_name(comparison)}", ""]
        parts += [plain_summary(summary, name) + "\n" for name in summary["evaluation_sets"]]
        parts += [f"*What chose what.* {provenance(summary)} {data_sentence(summary)}", ""]
        parts += [_markdown_table(*table) for table in tables(summary)]
        parts += [f"![{name}]({path.relative_to(root).as_posix()})" for name, path in figures[task].items()]
        parts.append("")
    parts += ["## Notes", "", NOTES, ""]
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


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}.summary{background:#eef5fb;border-left:4px solid #1b6ca8;padding:0.8em 1em}
.external{background:#fdf3e7;border-left-color:#d95f02}
img{max-width:100%;margin:0.5em 0}.note{color:#555;font-size:0.9em}"""


def render_html(comparisons: dict[str, TaskComparison], figures: dict[str, dict[str, Path]]) -> str:
    """One self-contained page, the external result first when there is one; figures embedded as PNG."""
    first = next(iter(comparisons.values())).summary if comparisons else None
    sections = []
    for task, comparison in comparisons.items():
        summary = comparison.summary
        sections.append(f"<h2>{html.escape(_task_name(comparison))}</h2>")
        for name in summary["evaluation_sets"]:
            css = "summary external" if name == "external" else "summary"
            sections.append(f'<p class="{css}">{html.escape(plain_summary(summary, name))}</p>')
        chose = f"{provenance(summary)} {data_sentence(summary)}"
        sections.append(f"<p class='note'><b>What chose what.</b> {html.escape(chose)}</p>")
        sections += [_html_table(*table) for table in tables(summary)]
        sections += [_embedded_png(path, f"{name} {task}") for name, path in figures[task].items()]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>renalmae: {html.escape(_title(comparisons))}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(_title(comparisons))}</h1>"
        + (f"<p class='summary'>{html.escape(training_variance(first))}</p>" if first else "")
        + "".join(sections)
        + "<h2>How to read this</h2>"
        + f"<p class='note'>{html.escape(NOTES)}</p></body></html>"
    )
