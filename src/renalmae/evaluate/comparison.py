"""Metrics per model, task, evaluation set and fold; the fold ensembles; the tests of the declared hypotheses.

Evaluation sets: the external set (images from another site, device or period; when the splits have
one it leads every report) and the internal holdout test. Neither chose anything:
- each fold model's epoch was picked on its inner selection split (or, with `train.selection_fraction`
  0, on its validation fold; run.json records which);
- binary thresholds: each fold model's on its own validation fold, each ensemble's the mean of its fold
  models' thresholds; multiclass: prior-corrected argmax with the development set's class frequencies
  (`renalmae.evaluate.decision`).
The summary's `provenance` says this for every number.

On each evaluation set, candidate (a) vs baseline (b) fold ensembles (mean probability), with the images
of one cluster (patient, series: splits.json's `groups`) as one unit wherever groups exist:
- DeLong on AUC with Obuchowski's clustered variance: binary on P(anomaly); multiclass one-vs-rest per
  class, each class its own test;
- McNemar on paired correct / incorrect decisions (exact; Durkalski's clustered statistic with clusters);
- paired stratified cluster-bootstrap CIs of AUC, F1, sensitivity, specificity and of the differences.
With `evaluate.repeats` R > 1 each model was trained R times (seeds seed .. seed + R - 1): every repeat's
ensembles are compared, and the declared DeLong hypotheses are tested over the repeats by Obuchowski and
Rockette's method (`renalmae.stats.repeats`), which counts training variance as well as test sampling;
the report says in how many repeats the conclusion holds. The tables show repeat 0 (the registered one).
Over folds: Wilcoxon signed-rank on the validation-fold AUC and F1 (fold models at their own thresholds).
Holm's family holds only the hypotheses declared in `evaluate.hypotheses`; every other test, and any
test that is undefined or cannot reach alpha here, is descriptive (`renalmae.evaluate.hypotheses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from renalmae.evaluate.decision import DecisionRule, ensemble_rule, fold_threshold, multiclass_rule
from renalmae.evaluate.hypotheses import HypothesisOutcome, declared_family
from renalmae.evaluate.metrics import classification_metrics
from renalmae.evaluate.runs import ModelRun, holdout_ensemble, pooled_validation
from renalmae.params import DataParams, EvaluateParams
from renalmae.stats.bootstrap import decision_intervals, paired_bootstrap
from renalmae.stats.delong import delong_test, delong_test_ovr
from renalmae.stats.mcnemar import mcnemar_test
from renalmae.stats.multiple import relative_improvement
from renalmae.stats.repeats import repeats_test
from renalmae.stats.wilcoxon import wilcoxon_folds
from renalmae.train.selection import SELECTION_FLAGS

EVALUATION_SETS = ("external", "test")
"""Report order: the external set, when there is one, leads."""
SET_NAMES = {"external": "external set", "test": "internal holdout", "val": "validation folds"}
SUMMARY_METRICS = (
    "auc",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "brier",
    "ece",
)
INTERVAL_METRICS = ("auc", "f1", "sensitivity", "specificity")
"""Metrics with paired bootstrap CIs; also the headline `dvc exp show` / `dvc metrics diff` compare across
experiments (comparison.json holds the rest)."""
CLUSTER_WORDS = {"series_id": "series", "patient_id": "patients"}
"""How the report names the clusters of `data.group_column` ("60 images from 24 series")."""


@dataclass
class SetComparison:
    """One evaluation set of one task: the ensembles' predictions on it and its summary."""

    name: str
    ids: np.ndarray
    y_true: np.ndarray
    probabilities: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    summary: dict
    clusters: np.ndarray | None = None
    """(n,) cluster (patient, series) of each image, None when every image is its own."""


@dataclass
class TaskComparison:
    """Everything computed for one task: the JSON summary, the per-set arrays and the decision rules."""

    task: str
    classes: list[str]
    summary: dict
    sets: dict[str, SetComparison] = field(default_factory=dict)
    decisions: dict[str, DecisionRule] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, str]:
        return self.summary["candidate"], self.summary["baseline"]


def fold_rule(
    run: ModelRun, settings: EvaluateParams, development_labels: np.ndarray | None = None
) -> DecisionRule:
    """A fold model's own rule: its validation fold's threshold (binary), the ensemble's rule (multiclass).

    development_labels: class indices whose frequencies are the multiclass priors (compare passes every
    validation fold pooled); None: the run's own validation fold.
    """
    if len(run.classes) != 2:
        if development_labels is None:
            development_labels = run.split("val")["y_true"].to_numpy()
        return multiclass_rule(run.info.get("class_balance"), development_labels, len(run.classes))
    validation = run.split("val")
    threshold = fold_threshold(
        validation["y_true"], run.probabilities("val"), settings.threshold, settings.target_sensitivity,
        f"{run.name} val",
    )  # fmt: skip
    return DecisionRule(threshold=threshold, chosen_on=f"validation fold {run.fold} ({settings.threshold})")


def fold_metrics(run: ModelRun, rule: DecisionRule, settings: EvaluateParams, sets: list[str]) -> dict:
    """Metrics of one fold model on its validation fold and on each evaluation set, at its own rule."""
    entry: dict = {
        "fold": run.fold,
        "threshold": rule.threshold,
        "epoch_selection": run.info.get("epoch_selection"),
        "selection": run.info.get("selection"),
        "selection_flags": list(run.info.get("selection_flags") or []),
    }
    for split in ["val", *sets]:
        rows = run.split(split)
        entry[split] = classification_metrics(
            rows["y_true"], run.probabilities(split), run.classes, rule.threshold, settings.calibration_bins,
            rule.class_weights,
        )  # fmt: skip
    return entry


def _tested_classes(classes: list[str]) -> list[tuple[str, int]]:
    """The classes an AUC test is run for: binary the anomaly class, multiclass each one-vs-rest."""
    return [(classes[1], 1)] if len(classes) == 2 else list(zip(classes, range(len(classes)), strict=True))


def _delong(y_true, probs_a, probs_b, classes, names: tuple[str, str], groups) -> dict[str, dict]:
    """DeLong per tested class: binary {anomaly class: result}; multiclass one-vs-rest {class: result}."""
    if len(classes) == 2:
        return {classes[1]: delong_test(y_true, probs_a[:, 1], probs_b[:, 1], names, groups).to_dict()}
    results = delong_test_ovr(y_true, probs_a, probs_b, classes, names, groups)
    return {name: result.to_dict() for name, result in results.items()}


def _verdict(difference: float | None, p_value: float | None, alpha: float) -> str:
    if difference is None or p_value is None:
        return "undefined"
    if p_value >= alpha:
        return "no difference shown"
    return "candidate better" if difference > 0 else "baseline better"


def _repeats(
    name: str,
    repeat_runs: list[dict[str, dict[int, ModelRun]]],
    classes: list[str],
    groups: np.ndarray | None,
    settings: EvaluateParams,
) -> dict[str, dict]:
    """Per tested class: each repeat's ensemble AUCs and clustered DeLong test, and the test over repeats."""
    alpha = round(1.0 - settings.confidence, 10)
    probabilities = {model: [] for model in repeat_runs[0]}
    for runs in repeat_runs:
        for model, by_fold in zip(probabilities, runs.values(), strict=True):
            ids, y_true, ensemble = holdout_ensemble(by_fold, name)
            probabilities[model].append(ensemble)
    scores_a, scores_b = (np.stack(values) for values in probabilities.values())
    results = {}
    for class_name, k in _tested_classes(classes):
        is_class = (y_true == k).astype(int)
        combined = repeats_test(is_class, scores_a[..., k], scores_b[..., k], groups, settings.confidence)
        per_repeat = []
        for repeat in range(len(repeat_runs)):
            single = delong_test(is_class, scores_a[repeat, :, k], scores_b[repeat, :, k], groups=groups)
            per_repeat.append(
                {"repeat": repeat, "auc_a": single.auc_a, "auc_b": single.auc_b,
                 "difference": single.difference, "p_value": single.p_value,
                 "verdict": _verdict(single.difference, single.p_value, alpha)}
            )  # fmt: skip
        verdict = _verdict(combined.mean_difference, combined.p_value, alpha)
        results[class_name] = combined.to_dict() | {
            "per_repeat": per_repeat,
            "verdict": verdict,
            "holds_in": sum(entry["verdict"] == verdict for entry in per_repeat),
        }
    return results


def _difference(a: float | None, b: float | None) -> dict:
    return {
        "absolute": None if a is None or b is None else a - b,
        "relative_percent": relative_improvement(a, b),
    }


def compare_set(
    name: str,
    runs: dict[str, dict[int, ModelRun]],
    decisions: dict[str, DecisionRule],
    classes: list[str],
    settings: EvaluateParams,
    groups: dict[str, str] | None = None,
    repeat_runs: list[dict[str, dict[int, ModelRun]]] | None = None,
) -> SetComparison:
    """The fold ensembles of both models on evaluation set `name`: metrics, bootstrap CIs, DeLong, McNemar.

    groups: image id -> cluster (patient, series), None when every image is independent; repeat_runs:
    every training repeat's runs (repeat 0 = `runs`), None or one for a single training run.
    """
    candidate, baseline = runs
    probabilities, ensembles = {}, {}
    for model, by_fold in runs.items():
        ids, y_true, probabilities[model] = holdout_ensemble(by_fold, name)
        rule = decisions[model]
        ensembles[model] = classification_metrics(
            y_true,
            probabilities[model],
            classes,
            rule.threshold,
            settings.calibration_bins,
            rule.class_weights,
        )
    predicted = {model: decisions[model].predict(probabilities[model]) for model in runs}
    clusters = None if groups is None else np.array([str(groups.get(i, i)) for i in ids])
    bootstrap = paired_bootstrap(
        y_true,
        probabilities[candidate],
        probabilities[baseline],
        predicted_a=predicted[candidate],
        predicted_b=predicted[baseline],
        groups=clusters,
        resamples=settings.bootstrap_resamples,
        confidence=settings.confidence,
        seed=settings.seed,
    )
    mcnemar = mcnemar_test(predicted[candidate] == y_true, predicted[baseline] == y_true, clusters)
    summary = {
        "name": name,
        "n": int(len(y_true)),
        "clusters": int(len(set(clusters))) if clusters is not None else int(len(y_true)),
        "class_counts": ensembles[candidate]["class_counts"],
        "ensemble": ensembles,
        "bootstrap": bootstrap.to_dict(),
        "delong": _delong(
            y_true,
            probabilities[candidate],
            probabilities[baseline],
            classes,
            (candidate, baseline),
            clusters,
        ),
        "mcnemar": mcnemar.to_dict(),
        "repeats": _repeats(name, repeat_runs, classes, clusters, settings)
        if repeat_runs and len(repeat_runs) > 1
        else None,
        "differences": {
            metric: _difference(ensembles[candidate][metric], ensembles[baseline][metric])
            for metric in SUMMARY_METRICS
        },
    }
    return SetComparison(name, ids, y_true, probabilities, predicted, summary, clusters)


def _outcomes(sets: dict[str, SetComparison], folds: dict[str, list[dict]], classes: list[str]):
    """Every test computed for the task, as hypothesis outcomes (placed in or out of the family later)."""
    outcomes = []
    for name, comparison in sets.items():
        repeats = comparison.summary["repeats"]
        for class_name, result in comparison.summary["delong"].items():
            statistic = "" if result["z"] is None else f"z = {result['z']:.3f}"
            p_value, undefined = result["p_value"], result["undefined"]
            if repeats:  # training variance too: the test over repeats stands for the hypothesis
                over = repeats[class_name]
                df = "inf" if over["df"] is None else f"{over['df']:.1f}"
                statistic = (
                    f"mean difference {over['mean_difference']:+.3f} over {over['repeats']} repeats, df {df}"
                    if over["undefined"] is None
                    else ""
                )
                p_value, undefined = over["p_value"], over["undefined"]
            outcomes.append(
                HypothesisOutcome(
                    f"delong:{name}",
                    class_name if len(classes) > 2 else None,
                    statistic,
                    p_value,
                    None,
                    undefined,
                )  # fmt: skip
            )
        mcnemar = comparison.summary["mcnemar"]
        statistic = f"discordant {mcnemar['a_only_correct']} vs {mcnemar['b_only_correct']}" + (
            f", Durkalski's clustered test over {mcnemar['clusters']} clusters"
            if mcnemar.get("method") == "clustered"
            else ", exact"
        )
        outcomes.append(
            HypothesisOutcome(
                f"mcnemar:{name}", None, statistic, mcnemar["p_value"], mcnemar["smallest_attainable_p"]
            )
        )
    candidate, baseline = folds
    for metric in ("auc", "f1"):
        result = wilcoxon_folds(
            [f["val"][metric] for f in folds[candidate]], [f["val"][metric] for f in folds[baseline]]
        )
        median = "n/a" if result.median_difference is None else f"{result.median_difference:.3f}"
        outcomes.append(
            HypothesisOutcome(
                f"wilcoxon_{metric}:validation",
                None,
                f"{result.n_pairs} folds, median difference {median}",
                result.p_value,
                result.smallest_attainable_p,
                None if result.p_value is not None else "no fold with both metrics defined",
            )  # fmt: skip
        )
    return outcomes


def operating_points(
    runs: dict[str, dict[int, ModelRun]],
    fold_rules: dict[str, dict[int, DecisionRule]],
    sets: dict[str, SetComparison],
    settings: EvaluateParams,
    groups: dict[str, str] | None,
) -> dict[str, dict]:
    """Each model's decision rule on every set: sensitivity and specificity with cluster-bootstrap CIs.

    `validation`: the out-of-fold decisions of the fold models at their own rules on their validation
    folds, pooled (the data that chose the thresholds); the holdout / external: the fold ensemble at its
    rule. A set whose sensitivity falls more than `evaluate.sensitivity_tolerance` below validation's is
    flagged: the operating point did not travel to it.
    """
    points = {}
    for position, (model, by_fold) in enumerate(runs.items()):
        labels, predicted, ids = [], [], []
        for fold, run in by_fold.items():
            validation = run.split("val")
            labels.append(validation["y_true"].to_numpy(dtype=np.int64))
            predicted.append(fold_rules[model][fold].predict(run.probabilities("val")))
            ids.append(validation["id"].to_numpy())
        ids = np.concatenate(ids)
        clusters = None if groups is None else np.array([str(groups.get(i, i)) for i in ids])
        n_classes = len(next(iter(by_fold.values())).classes)
        entry = {
            "validation": {
                "n": int(len(ids)),
                **{
                    name: interval.to_dict()
                    for name, interval in decision_intervals(
                        np.concatenate(labels),
                        np.concatenate(predicted),
                        n_classes,
                        groups=clusters,
                        resamples=settings.bootstrap_resamples,
                        confidence=settings.confidence,
                        seed=settings.seed,
                    ).items()
                },
            }  # fmt: skip
        }
        side = "a" if position == 0 else "b"
        for name, comparison in sets.items():
            boot = comparison.summary["bootstrap"]
            entry[name] = {"n": comparison.summary["n"]} | {
                metric: boot[f"{metric}_{side}"] for metric in ("sensitivity", "specificity")
            }
        flags = []
        chosen = entry["validation"]["sensitivity"]["estimate"]
        for name in sets:
            reached = entry[name]["sensitivity"]["estimate"]
            if (
                chosen is not None
                and reached is not None
                and chosen - reached > settings.sensitivity_tolerance
            ):
                flags.append(
                    f"{SET_NAMES[name]}: sensitivity {reached:.2f} against {chosen:.2f} on the validation "
                    f"folds that chose the rule (a drop of {chosen - reached:.2f} > evaluate."
                    f"sensitivity_tolerance {settings.sensitivity_tolerance:g}): choose a rule for that site "
                    "on a labelled sample of it (`renalmae site-rule`)"
                )
        points[model] = entry | {"flags": flags}
    return points


def _provenance(runs: dict[str, dict[int, ModelRun]], decisions: dict[str, DecisionRule], sets) -> dict:
    """Which data chose what, and which data measured it, for the report."""
    selection = {}
    for model, by_fold in runs.items():
        records = [run.info.get("epoch_selection") or {} for run in by_fold.values()]
        described = {record.get("description", "not recorded (older run)") for record in records}
        selection[model] = "; ".join(sorted(described))
    flagged = [
        f"{model} fold {run.fold}: {SELECTION_FLAGS.get(flag, flag)}"
        for model, by_fold in runs.items()
        for run in by_fold.values()
        for flag in run.info.get("selection_flags") or []
    ]
    return {
        "epoch": selection,
        "selection_flags": flagged,
        "decision": {model: rule.chosen_on for model, rule in decisions.items()},
        "measured_on": [SET_NAMES[name] for name in sets],
        "never_chose": "the internal holdout and the external set chose no epoch, threshold or decision rule",
    }


def compare_task(
    task: str,
    runs: dict[str, dict[int, ModelRun]],
    settings: EvaluateParams,
    data: DataParams | None = None,
    data_summary: dict | None = None,
    groups: dict[str, str] | None = None,
    repeat_runs: list[dict[str, dict[int, ModelRun]]] | None = None,
) -> TaskComparison:
    """Compare the candidate and baseline fold models and ensembles of one task.

    `runs` is model name -> fold -> run, the candidate first (as `check_runs` returns it). `data` gives
    the report's wording (class names, `data.description`, the cluster unit of `data.group_column`);
    `data_summary` is splits.json's `data` (duplicates dropped at ingest, copies across the split line),
    None when not given; `groups` splits.json's image id -> cluster (None: independent images);
    `repeat_runs` every training repeat's runs, repeat 0 first (`check_repeats`), None for one run.
    """
    candidate, baseline = runs
    first = next(iter(runs[candidate].values()))
    classes = first.classes
    development_labels = pooled_validation(runs[candidate])[0]
    fold_rules = {
        model: {fold: fold_rule(run, settings, development_labels) for fold, run in by_fold.items()}
        for model, by_fold in runs.items()
    }
    if len(classes) == 2:
        decisions = {
            model: ensemble_rule([rule.threshold for rule in rules.values()], settings.threshold)
            for model, rules in fold_rules.items()
        }
    else:
        decisions = {model: next(iter(rules.values())) for model, rules in fold_rules.items()}
    set_names = [name for name in EVALUATION_SETS if not first.split(name).empty]
    data = data or DataParams()
    if data.group_column == "none":
        groups = None  # every image its own unit, as the split treated them
    sets = {
        name: compare_set(name, runs, decisions, classes, settings, groups, repeat_runs) for name in set_names
    }
    folds = {
        model: [
            fold_metrics(run, fold_rules[model][fold], settings, set_names) for fold, run in by_fold.items()
        ]
        for model, by_fold in runs.items()
    }
    alpha = round(1.0 - settings.confidence, 10)
    tests = declared_family(_outcomes(sets, folds, classes), list(settings.hypotheses), alpha)
    summary = {
        "task": task,
        "classes": classes,
        "candidate": candidate,
        "baseline": baseline,
        "description": data.description,
        "anomaly_classes": [name for name in data.classes if name != data.negative_class],
        "evaluation_sets": set_names,
        "cluster_unit": CLUSTER_WORDS.get(data.group_column) if groups is not None else None,
        "repeats": len(repeat_runs) if repeat_runs else 1,
        "decision_rules": {model: rule.to_dict() for model, rule in decisions.items()},
        "provenance": _provenance(runs, decisions, sets),
        "operating_points": operating_points(runs, fold_rules, sets, settings, groups),
        "initialisation": {
            model: next(iter(by_fold.values())).info.get("initialisation") for model, by_fold in runs.items()
        },
        "pretraining": (first.info.get("initialisation") or {}).get("mae_pretraining"),
        "data": data_summary,
        "sets": {name: comparison.summary for name, comparison in sets.items()},
        "folds": folds,
        "tests": [outcome.to_dict() for outcome in tests],
        "declared_hypotheses": list(settings.hypotheses),
        "p_values": {outcome.key: outcome.p_value for outcome in tests},
        "p_values_holm": {outcome.key: outcome.p_holm for outcome in tests if outcome.in_family},
        "alpha": alpha,
        "confidence": settings.confidence,
    }
    return TaskComparison(task, classes, summary, sets, decisions)


def dvc_metrics(comparisons: dict[str, TaskComparison]) -> dict:
    """metrics.json, the headline DVC shows: per task, each model's fold-ensemble AUC / F1 / sensitivity /
    specificity on each evaluation set (`test_<metric>`, `external_<metric>`), and the Holm-adjusted p of
    each declared DeLong hypothesis (`<set>_delong_p_holm`, per class `_<class>` for the multiclass task);
    None where undefined or not declared. A small set, so a table of experiments stays readable."""
    metrics: dict = {}
    for task, comparison in comparisons.items():
        summary = comparison.summary
        entry: dict = {model: {} for model in comparison.models}
        for name in summary["evaluation_sets"]:
            for model in comparison.models:
                ensemble = summary["sets"][name]["ensemble"][model]
                entry[model] |= {f"{name}_{metric}": ensemble[metric] for metric in INTERVAL_METRICS}
            for outcome in summary["tests"]:
                if outcome["hypothesis"] == f"delong:{name}":
                    suffix = f"_{outcome['class_name']}" if outcome["class_name"] else ""
                    entry[f"{name}_delong_p_holm{suffix}"] = outcome["p_holm"]
        metrics[task] = entry
    return metrics
