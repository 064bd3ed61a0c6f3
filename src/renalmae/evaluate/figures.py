"""Comparison figures (PNG, matplotlib Agg) and the CSV curves DVC plots.

Per task and evaluation set (internal holdout; external set when there is one): ROC and
precision-recall curves of both fold ensembles with bootstrap bands (binary: the anomaly class;
multiclass: one panel per class, one-vs-rest), confusion matrices at the chosen decision rules and a
reliability diagram; per task a per-fold dot plot of AUC and F1 on every set. The CSV curves for
`dvc plots` hold one curve per model and set: the anomaly curve for the binary task, the
micro-averaged one-vs-rest curve for the multiclass task.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from renalmae.evaluate.comparison import SET_NAMES, SetComparison, TaskComparison  # noqa: E402
from renalmae.evaluate.metrics import reliability_curve  # noqa: E402
from renalmae.evaluate.report import label  # noqa: E402
from renalmae.stats.bootstrap import cluster_weights  # noqa: E402

ROLE_COLOURS = ("#1b6ca8", "#d95f02")
"""The candidate's colour, then the baseline's (every comparison lists the candidate first)."""
GRID = np.linspace(0.0, 1.0, 101)
MAX_BAND_RESAMPLES = 200


def _curve_points(
    is_positive: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positives of every resample (weights: (rows, n) image multiplicities) at every candidate
    threshold (descending), vectorised: the scores are fixed, only the multiplicities change."""
    candidates = np.unique(scores)
    if len(candidates) > 512:
        candidates = np.quantile(candidates, np.linspace(0.0, 1.0, 512))
    thresholds = np.concatenate([[np.inf], candidates[::-1]])
    at_or_above = (scores[:, None] >= thresholds[None, :]).astype(float)
    true_positives = weights[:, is_positive] @ at_or_above[is_positive]
    false_positives = weights[:, ~is_positive] @ at_or_above[~is_positive]
    return true_positives, false_positives, thresholds


def _curves_on_grid(
    is_positive: np.ndarray, scores: np.ndarray, weights: np.ndarray, kind: str
) -> np.ndarray:
    """ROC (TPR at the FPR grid) or interpolated precision at the recall grid, one row per resample."""
    true_positives, false_positives, _ = _curve_points(is_positive, scores, weights)
    positives, negatives = weights[:, is_positive].sum(axis=1), weights[:, ~is_positive].sum(axis=1)
    rows = []
    for tp, fp, p, n in zip(true_positives, false_positives, positives, negatives, strict=True):
        if kind == "roc":
            rows.append(np.interp(GRID, fp / n, tp / p))
        else:
            predicted = tp + fp
            precision = np.divide(tp, predicted, out=np.ones(len(tp)), where=predicted > 0)
            # Interpolated precision: the best precision at this recall or higher (a monotone curve).
            interpolated = np.maximum.accumulate(precision[::-1])[::-1]
            rows.append(np.interp(GRID, tp / p, interpolated))
    return np.array(rows)


def _curve_with_band(
    is_positive, scores, kind: str, resamples: int, confidence: float, seed: int, clusters=None
):
    """The curve and its percentile band over stratified cluster-bootstrap resamples (clusters: (n,)
    patient / series of each image, None when independent), as the comparison's intervals resample."""
    is_positive = np.asarray(is_positive, dtype=bool)
    point = _curves_on_grid(is_positive, scores, np.ones((1, len(scores))), kind)[0]
    weights = cluster_weights(
        is_positive, clusters, min(resamples, MAX_BAND_RESAMPLES), np.random.default_rng(seed)
    )
    defined = (weights[:, is_positive].sum(axis=1) > 0) & (weights[:, ~is_positive].sum(axis=1) > 0)
    samples = _curves_on_grid(is_positive, scores, weights[defined], kind)
    tail = (1.0 - confidence) / 2.0
    return point, np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def _panels(comparison: TaskComparison) -> list[tuple[str, int]]:
    if len(comparison.classes) == 2:
        return [(comparison.classes[1], 1)]
    return [(name, k) for k, name in enumerate(comparison.classes)]


def _colour(model: str, position: int) -> str:
    return ROLE_COLOURS[position % len(ROLE_COLOURS)]


def _curve_figure(
    comparison: TaskComparison,
    evaluation: SetComparison,
    kind: str,
    resamples: int,
    confidence: float,
    seed: int,
    path: Path,
):
    panels = _panels(comparison)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for axis, (name, k) in zip(axes[0], panels, strict=True):
        is_positive = evaluation.y_true == k
        if is_positive.all() or not is_positive.any():
            axis.text(0.5, 0.5, f"{name}: one class only\n(curve undefined)", ha="center", va="center")
            continue
        for position, (model, probabilities) in enumerate(evaluation.probabilities.items()):
            point, low, high = _curve_with_band(
                is_positive, probabilities[:, k], kind, resamples, confidence, seed, evaluation.clusters
            )
            axis.plot(GRID, point, color=_colour(model, position), label=label(model))
            axis.fill_between(GRID, low, high, color=_colour(model, position), alpha=0.2, linewidth=0)
        if kind == "roc":
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            axis.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity")
        else:
            axis.axhline(is_positive.mean(), color="grey", linestyle=":", linewidth=1)
            axis.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)")
        axis.set(title=f"{comparison.task}: {name}", xlim=(0, 1), ylim=(0, 1.02))
        axis.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    figure.suptitle(
        f"{'ROC' if kind == 'roc' else 'Precision-recall'} on the {SET_NAMES[evaluation.name]}, "
        f"{confidence:.0%} bootstrap bands"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _confusion_figure(comparison: TaskComparison, evaluation: SetComparison, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
    ensembles = evaluation.summary["ensemble"]
    for axis, model in zip(axes, ensembles, strict=True):
        matrix = np.array(ensembles[model]["confusion_matrix"])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour)
        ticks = range(len(comparison.classes))
        axis.set(xticks=ticks, yticks=ticks, xticklabels=comparison.classes, yticklabels=comparison.classes)
        axis.set(xlabel="predicted", ylabel="true", title=label(model))
    figure.suptitle(f"{comparison.task}: confusion matrices on the {SET_NAMES[evaluation.name]}")
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _reliability_figure(comparison: TaskComparison, evaluation: SetComparison, bins: int, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    for position, (model, probabilities) in enumerate(evaluation.probabilities.items()):
        confidence, observed, counts = reliability_curve(evaluation.y_true, probabilities, bins)
        ece = evaluation.summary["ensemble"][model]["ece"]
        axis.plot(
            confidence,
            observed,
            marker="o",
            color=_colour(model, position),
            label=f"{label(model)} (ECE {ece:.3f})",
        )
    binary = len(comparison.classes) == 2
    axis.set(
        xlabel="predicted P(anomaly)" if binary else "confidence of the predicted class",
        ylabel="observed anomaly rate" if binary else "accuracy",
        title=f"{comparison.task}: reliability ({SET_NAMES[evaluation.name]})",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _folds_figure(comparison: TaskComparison, path: Path) -> None:
    splits = ["val", *comparison.summary["evaluation_sets"][::-1]]
    figure, axes = plt.subplots(1, 2, figsize=(4.2 * (1 + len(splits) / 3), 3.6))
    for axis, metric in zip(axes, ("auc", "f1"), strict=True):
        for index, (offset, (model, folds)) in enumerate(
            zip((-0.1, 0.1), comparison.summary["folds"].items(), strict=True)
        ):
            for position, split in enumerate(splits):
                values = [f[split][metric] for f in folds]
                axis.scatter(
                    [position + offset] * len(values),
                    [np.nan if v is None else v for v in values],
                    color=_colour(model, index),
                    marker="os^"[position % 3],
                    alpha=0.8,
                    label=label(model) if position == 0 else None,
                )
        axis.set(
            xticks=range(len(splits)),
            xticklabels=[SET_NAMES[split] for split in splits],
            ylabel=metric.upper(),
            xlim=(-0.5, len(splits) - 0.5),
        )
        axis.set_title(f"{comparison.task}: {metric.upper()} of each fold model")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _suffix(name: str) -> str:
    """File-name suffix of an evaluation set: none for the internal holdout, `_external` for the external."""
    return "" if name == "test" else f"_{name}"


def write_figures(
    comparison: TaskComparison, out_dir: Path, resamples: int, confidence: float, seed: int, bins: int
) -> dict[str, Path]:
    """Write the PNG figures of one task into out_dir, the external set's first; return {name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    task = comparison.task
    paths: dict[str, Path] = {}
    for name, evaluation in comparison.sets.items():
        suffix = _suffix(name)
        named = {
            figure: out_dir / f"{figure}_{task}{suffix}.png"
            for figure in ("roc", "pr", "confusion", "reliability")
        }
        _curve_figure(comparison, evaluation, "roc", resamples, confidence, seed, named["roc"])
        _curve_figure(comparison, evaluation, "pr", resamples, confidence, seed, named["pr"])
        _confusion_figure(comparison, evaluation, named["confusion"])
        _reliability_figure(comparison, evaluation, bins, named["reliability"])
        paths |= {f"{figure} ({SET_NAMES[name]})": path for figure, path in named.items()}
    paths["folds"] = out_dir / f"folds_{task}.png"
    _folds_figure(comparison, paths["folds"])
    return paths


def write_curve_csvs(comparison: TaskComparison, out_dir: Path) -> list[Path]:
    """plots/roc_<task>[_external]_<model>.csv (fpr, tpr) and plots/pr_<task>[_external]_<model>.csv
    (recall, precision): one pair per evaluation set and model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, evaluation in comparison.sets.items():
        for model, probabilities in evaluation.probabilities.items():
            if len(comparison.classes) == 2:
                is_positive, scores = evaluation.y_true == 1, probabilities[:, 1]
            else:
                is_positive = (np.eye(len(comparison.classes))[evaluation.y_true] == 1).ravel()
                scores = probabilities.ravel()
            if is_positive.all() or not is_positive.any():
                continue
            false_positive_rate, true_positive_rate, _ = roc_curve(is_positive, scores)
            precision, recall, _ = precision_recall_curve(is_positive, scores)
            stem = f"{comparison.task}{_suffix(name)}_{model}"
            roc_path, pr_path = out_dir / f"roc_{stem}.csv", out_dir / f"pr_{stem}.csv"
            pd.DataFrame({"model": model, "fpr": false_positive_rate, "tpr": true_positive_rate}).to_csv(
                roc_path, index=False
            )
            pd.DataFrame({"model": model, "recall": recall, "precision": precision}).to_csv(
                pr_path, index=False
            )
            written += [roc_path, pr_path]
    return written
