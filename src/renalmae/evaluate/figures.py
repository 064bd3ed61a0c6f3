"""Comparison figures (PNG, matplotlib Agg) and the CSV curves DVC plots.

Per task: ROC and precision-recall curves of both holdout ensembles with bootstrap 95 % bands
(binary: the anomaly class; multiclass: one panel per class, one-vs-rest), confusion matrices,
a reliability diagram and a per-fold dot plot of AUC and F1. The CSV curves for `dvc plots` hold one
curve per model: the anomaly curve for the binary task, the micro-averaged one-vs-rest curve for
the multiclass task.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from renalmae.evaluate.comparison import TaskComparison  # noqa: E402
from renalmae.evaluate.metrics import reliability_curve  # noqa: E402
from renalmae.evaluate.runs import ByName  # noqa: E402
from renalmae.stats import stratified_indices  # noqa: E402

COLOURS = ByName({"usfmae": "#1b6ca8", "densenet169": "#d95f02"}, default="#7570b3")
LABELS = ByName({"usfmae": "USF-MAE", "densenet169": "DenseNet-169"})
GRID = np.linspace(0.0, 1.0, 101)
MAX_BAND_RESAMPLES = 200


def _curve_points(
    is_positive: np.ndarray, score_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positives of every row at every candidate threshold (descending), vectorised."""
    candidates = np.unique(score_rows)
    if len(candidates) > 512:
        candidates = np.quantile(candidates, np.linspace(0.0, 1.0, 512))
    thresholds = np.concatenate([[np.inf], candidates[::-1]])
    at_or_above = score_rows[:, :, None] >= thresholds[None, None, :]
    true_positives = at_or_above[:, is_positive, :].sum(axis=1)
    false_positives = at_or_above[:, ~is_positive, :].sum(axis=1)
    return true_positives, false_positives, thresholds


def _curves_on_grid(is_positive: np.ndarray, score_rows: np.ndarray, kind: str) -> np.ndarray:
    """ROC (TPR at the FPR grid) or interpolated precision at the recall grid, one row per score row."""
    true_positives, false_positives, _ = _curve_points(is_positive, score_rows)
    positives, negatives = is_positive.sum(), (~is_positive).sum()
    rows = []
    for tp, fp in zip(true_positives, false_positives, strict=True):
        if kind == "roc":
            rows.append(np.interp(GRID, fp / negatives, tp / positives))
        else:
            predicted = tp + fp
            precision = np.divide(tp, predicted, out=np.ones(len(tp)), where=predicted > 0)
            # Interpolated precision: the best precision at this recall or higher (a monotone curve).
            interpolated = np.maximum.accumulate(precision[::-1])[::-1]
            rows.append(np.interp(GRID, tp / positives, interpolated))
    return np.array(rows)


def _curve_with_band(is_positive, scores, kind: str, resamples: int, confidence: float, seed: int):
    is_positive = np.asarray(is_positive, dtype=bool)
    point = _curves_on_grid(is_positive, scores[None, :], kind)[0]
    rows = stratified_indices(is_positive, min(resamples, MAX_BAND_RESAMPLES), np.random.default_rng(seed))
    # Columns of `rows` are grouped by class, so one positive mask serves every resample.
    samples = _curves_on_grid(is_positive[rows[0]], scores[rows], kind)
    tail = (1.0 - confidence) / 2.0
    return point, np.quantile(samples, tail, axis=0), np.quantile(samples, 1.0 - tail, axis=0)


def _panels(comparison: TaskComparison) -> list[tuple[str, int]]:
    if len(comparison.classes) == 2:
        return [(comparison.classes[1], 1)]
    return [(name, k) for k, name in enumerate(comparison.classes)]


def _curve_figure(
    comparison: TaskComparison, kind: str, resamples: int, confidence: float, seed: int, path: Path
):
    panels = _panels(comparison)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for axis, (name, k) in zip(axes[0], panels, strict=True):
        is_positive = comparison.y_true == k
        if is_positive.all() or not is_positive.any():
            axis.text(0.5, 0.5, f"{name}: one class only\n(curve undefined)", ha="center", va="center")
            continue
        for model, probabilities in comparison.holdout_probabilities.items():
            point, low, high = _curve_with_band(
                is_positive, probabilities[:, k], kind, resamples, confidence, seed
            )
            axis.plot(GRID, point, color=COLOURS[model], label=LABELS[model])
            axis.fill_between(GRID, low, high, color=COLOURS[model], alpha=0.2, linewidth=0)
        if kind == "roc":
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            axis.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity")
        else:
            axis.axhline(is_positive.mean(), color="grey", linestyle=":", linewidth=1)
            axis.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)")
        axis.set(title=f"{comparison.task}: {name}", xlim=(0, 1), ylim=(0, 1.02))
        axis.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    figure.suptitle(
        f"{'ROC' if kind == 'roc' else 'Precision-recall'} on the holdout, {confidence:.0%} bootstrap bands"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _confusion_figure(comparison: TaskComparison, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
    for axis, model in zip(axes, comparison.summary["ensemble"], strict=True):
        matrix = np.array(comparison.summary["ensemble"][model]["confusion_matrix"])
        axis.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour)
        ticks = range(len(comparison.classes))
        axis.set(xticks=ticks, yticks=ticks, xticklabels=comparison.classes, yticklabels=comparison.classes)
        axis.set(xlabel="predicted", ylabel="true", title=LABELS[model])
    figure.suptitle(f"{comparison.task}: holdout confusion matrices")
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _reliability_figure(comparison: TaskComparison, bins: int, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    for model, probabilities in comparison.holdout_probabilities.items():
        confidence, observed, counts = reliability_curve(comparison.y_true, probabilities, bins)
        ece = comparison.summary["ensemble"][model]["ece"]
        axis.plot(
            confidence, observed, marker="o", color=COLOURS[model], label=f"{LABELS[model]} (ECE {ece:.3f})"
        )
    binary = len(comparison.classes) == 2
    axis.set(
        xlabel="predicted P(anomaly)" if binary else "confidence of the predicted class",
        ylabel="observed anomaly rate" if binary else "accuracy",
        title=f"{comparison.task}: reliability (holdout)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _folds_figure(comparison: TaskComparison, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for axis, metric in zip(axes, ("auc", "f1"), strict=True):
        for offset, (model, folds) in zip((-0.1, 0.1), comparison.summary["folds"].items(), strict=True):
            for position, split in enumerate(("val", "test")):
                values = [f[split][metric] for f in folds]
                x = [position + offset] * len(values)
                marker = "o" if split == "val" else "s"
                label = f"{LABELS[model]}" if split == "val" else None
                axis.scatter(
                    x,
                    [np.nan if v is None else v for v in values],
                    color=COLOURS[model],
                    marker=marker,
                    alpha=0.8,
                    label=label,
                )
        axis.set(
            xticks=[0, 1], xticklabels=["validation fold", "holdout"], ylabel=metric.upper(), xlim=(-0.5, 1.5)
        )
        axis.set_title(f"{comparison.task}: {metric.upper()} of each fold model")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def write_figures(
    comparison: TaskComparison, out_dir: Path, resamples: int, confidence: float, seed: int, bins: int
) -> dict[str, Path]:
    """Write the PNG figures of one task into out_dir; return {figure name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    task = comparison.task
    paths = {
        name: out_dir / f"{name}_{task}.png" for name in ("roc", "pr", "confusion", "reliability", "folds")
    }
    _curve_figure(comparison, "roc", resamples, confidence, seed, paths["roc"])
    _curve_figure(comparison, "pr", resamples, confidence, seed, paths["pr"])
    _confusion_figure(comparison, paths["confusion"])
    _reliability_figure(comparison, bins, paths["reliability"])
    _folds_figure(comparison, paths["folds"])
    return paths


def write_curve_csvs(comparison: TaskComparison, out_dir: Path) -> list[Path]:
    """plots/roc_<task>_<model>.csv (fpr, tpr) and plots/pr_<task>_<model>.csv (recall, precision)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model, probabilities in comparison.holdout_probabilities.items():
        if len(comparison.classes) == 2:
            is_positive, scores = comparison.y_true == 1, probabilities[:, 1]
        else:
            is_positive = (np.eye(len(comparison.classes))[comparison.y_true] == 1).ravel()
            scores = probabilities.ravel()
        if is_positive.all() or not is_positive.any():
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(is_positive, scores)
        precision, recall, _ = precision_recall_curve(is_positive, scores)
        roc_path = out_dir / f"roc_{comparison.task}_{model}.csv"
        pr_path = out_dir / f"pr_{comparison.task}_{model}.csv"
        pd.DataFrame({"model": model, "fpr": false_positive_rate, "tpr": true_positive_rate}).to_csv(
            roc_path, index=False
        )
        pd.DataFrame({"model": model, "recall": recall, "precision": precision}).to_csv(pr_path, index=False)
        written += [roc_path, pr_path]
    return written
