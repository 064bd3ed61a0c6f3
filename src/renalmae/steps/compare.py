"""Step `compare`: metrics and statistical comparison of USF-MAE vs DenseNet-169, written as a report.

Reads the trained-model runs of exactly the tasks and folds in the params (run.json +
predictions.parquet; other run folders found under `run_dirs` are ignored with a warning), refuses an
incomplete or unpaired set, and writes into `out_dir` atomically:

    metrics.json                   per task and model: AUC, F1, sensitivity, specificity on each evaluation
                                   set; the declared DeLong hypotheses' Holm p (DVC metrics)
    comparison.json                per task: every metric, set, fold, test, p-value, Holm p, CI, difference,
                                   decision rule and which data chose what
    comparison.md, index.html      tables, figures and plain-language summaries, the external set first
    ensemble_predictions.parquet   each fold ensemble's predictions (fold = -1) on every evaluation set, with
                                   each image's cluster (`group`: patient / series) for clustered tests
    figures/*.png, plots/*.csv     ROC / PR with bootstrap bands, confusion, reliability, folds; DVC curves

It also reads splits.json for what the report says about the data (duplicates ingest dropped, holdout
test / external images that are copies of development images).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from renalmae.artifacts import Comparison
from renalmae.data.predictions import probability_columns
from renalmae.data.splits import load_splits
from renalmae.evaluate.comparison import TaskComparison, compare_task, dvc_metrics
from renalmae.evaluate.figures import write_curve_csvs, write_figures
from renalmae.evaluate.report import data_sentence, render_html, render_markdown
from renalmae.evaluate.runs import check_repeats, load_runs
from renalmae.io import atomic_dir, write_json
from renalmae.params import Params
from renalmae.pipeline import step

STEP = step("compare")

ENSEMBLE_FOLD = -1

log = logging.getLogger(__name__)


def ensemble_table(comparison: TaskComparison) -> pd.DataFrame:
    """Predictions of both fold ensembles of one task on each evaluation set, in the predictions layout."""
    frames = []
    for name, evaluation in comparison.sets.items():
        for model, probabilities in evaluation.probabilities.items():
            threshold = comparison.decisions[model].threshold
            frame = pd.DataFrame(
                {
                    "id": evaluation.ids,
                    "model": model,
                    "task": comparison.task,
                    "fold": ENSEMBLE_FOLD,
                    "split": name,
                    "group": evaluation.ids if evaluation.clusters is None else evaluation.clusters,
                    "y_true": evaluation.y_true,
                    "y_pred": evaluation.predicted[model],
                    "threshold": np.nan if threshold is None else threshold,
                }
            )
            frame[probability_columns(comparison.classes)] = probabilities
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def run(params: Params, run_dirs: list[Path], splits_path: Path, out_dir: Path) -> Path:
    """Compare the two models on every task in `params.finetune.tasks`; return `out_dir`.

    `run_dirs`: run folders, or folders holding them (`models/finetune`, `models/baseline`).
    `splits_path`: the splits.json the runs were trained from, whose data summary (duplicates dropped at
    ingest, copies across the split line) the report states (`DataError` when it is missing).
    """
    out_dir = Path(out_dir)
    settings = params.evaluate
    splits = load_splits(splits_path)
    tasks, folds = list(params.finetune.tasks), list(params.split.folds)
    runs = load_runs(run_dirs, tasks, folds, settings.repeats)
    indexed = check_repeats(runs, tasks, folds, settings.repeats)
    comparisons = {
        task: compare_task(task, by_repeat[0], settings, params.data, splits.data, splits.groups, by_repeat)
        for task, by_repeat in tqdm(indexed.items(), desc="compare: metrics and tests", leave=False)
    }
    log.info("compare: %s", data_sentence(next(iter(comparisons.values())).summary))
    with atomic_dir(out_dir) as staging:
        figures = {
            task: write_figures(
                comparison,
                staging / Comparison.FIGURES,
                settings.bootstrap_resamples,
                settings.confidence,
                settings.seed,
                settings.calibration_bins,
            )
            for task, comparison in tqdm(comparisons.items(), desc="compare: figures", leave=False)
        }
        for comparison in comparisons.values():
            write_curve_csvs(comparison, staging / Comparison.PLOTS)
        write_json(staging / Comparison.METRICS, dvc_metrics(comparisons))
        write_json(staging / Comparison.SUMMARY, {task: c.summary for task, c in comparisons.items()})
        pd.concat([ensemble_table(c) for c in comparisons.values()], ignore_index=True).to_parquet(
            staging / Comparison.ENSEMBLE_PREDICTIONS, index=False
        )
        (staging / Comparison.MARKDOWN).write_text(render_markdown(comparisons, figures, staging))
        (staging / Comparison.REPORT).write_text(render_html(comparisons, figures))
    return out_dir
