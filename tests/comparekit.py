"""Test kit for compare: synthetic trained-model runs as finetune / baseline write them.

The development images are split into 5 validation folds; every fold model of both models predicts
the same holdout test images (and, with `n_external`, the same external images, on which both models'
signal is weaker: another site). USF-MAE is given a stronger signal than DenseNet-169, so a correct
comparison finds it better.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.data.predictions import probability_columns, task_classes, write_predictions
from renalmae.io import write_json

CLASSES = ["normal", "utd", "mcdk"]
FOLDS = [0, 1, 2, 3, 4]
SIGNAL = {"usfmae": 1.6, "densenet169": 0.9}
ROOTS = {"usfmae": "finetune", "densenet169": "baseline"}
ROLES = {"usfmae": "candidate", "densenet169": "baseline"}


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    labels = rng.choice(3, size=n, p=[0.6, 0.28, 0.12])
    labels[:3] = [0, 1, 2]  # every class present
    return labels


def _probabilities(
    rng: np.random.Generator, targets: np.ndarray, n_classes: int, signal: float, shared_noise: np.ndarray
) -> np.ndarray:
    """Softmax of signal + noise shared by a model's fold models (hard images stay hard) + per-model noise."""
    fold_noise = rng.normal(0.0, 0.6, size=(len(targets), n_classes))
    logits = signal * np.eye(n_classes)[targets] + shared_noise[:, :n_classes] + fold_noise
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


EXTERNAL_SIGNAL = 0.6
"""Share of each model's signal left on the external set."""


def write_prediction_runs(
    root: Path,
    n_dev: int = 100,
    n_test: int = 40,
    seed: int = 0,
    tasks=("binary", "multiclass"),
    baseline_name: str = "densenet169",
    n_external: int = 0,
    class_balance: str = "loss",
    repeats: int = 1,
    series_size: int = 1,
) -> list[Path]:
    """Write run.json + predictions.parquet for every model x task x fold (x repeat) under root, and the
    splits.json they were trained from at `root / "splits.json"` (`splits_of(root)`); return the run dirs.

    `baseline_name`: the baseline's model name (what `baseline.arch` names it) in run.json and predictions.
    `repeats`: training repeats of every fold model (repeat r > 0 in `fold<k>-repeat<r>`, run.json
    `repeat`). `series_size`: consecutive images of one evaluation set form one series (one label, one
    shared noise: as correlated as frames of a clip), recorded as splits.json `groups`.
    """
    rng = np.random.default_rng(seed)
    dev_labels, test_labels = _labels(rng, n_dev), _labels(rng, n_test)
    external_labels = _labels(np.random.default_rng(seed + 100), n_external) if n_external else None
    dev_ids = np.array([f"dev_{i:04d}" for i in range(n_dev)])
    test_ids = np.array([f"test_{i:04d}" for i in range(n_test)])
    external_ids = np.array([f"ext_{i:04d}" for i in range(n_external)])
    fold_of = np.arange(n_dev) % len(FOLDS)
    for labels in (dev_labels, test_labels, external_labels):
        if labels is not None and series_size > 1:
            labels[:] = labels[np.arange(len(labels)) // series_size * series_size]
    run_dirs = []
    for model, signal in SIGNAL.items():
        name = baseline_name if ROLES[model] == "baseline" else model
        shared_noise = {
            split: rng.normal(0.0, 0.8, (-(-n // series_size), 3))[np.arange(n) // series_size]
            for split, n in (("val", n_dev), ("test", n_test), ("external", n_external))
        }
        for task, repeat in ((task, repeat) for task in tasks for repeat in range(repeats)):
            classes = task_classes(CLASSES, "normal", task)
            for fold in FOLDS:
                frames = []
                evaluation_sets = [
                    ("val", fold_of == fold, dev_ids[fold_of == fold], dev_labels[fold_of == fold]),
                    ("test", slice(None), test_ids, test_labels),
                ]
                if n_external:
                    evaluation_sets.append(("external", slice(None), external_ids, external_labels))
                for split, rows, ids, labels in evaluation_sets:
                    targets = (labels != 0).astype(np.int64) if task == "binary" else labels
                    strength = signal * (EXTERNAL_SIGNAL if split == "external" else 1.0)
                    probabilities = _probabilities(
                        rng, targets, len(classes), strength, shared_noise[split][rows]
                    )
                    frame = pd.DataFrame(
                        {
                            "id": ids,
                            "model": name,
                            "task": task,
                            "fold": fold,
                            "split": split,
                            "y_true": targets,
                        }
                    )
                    frame[probability_columns(classes)] = probabilities
                    frames.append(frame)
                run_dir = (
                    root / ROOTS[model] / task / (f"fold{fold}" + (f"-repeat{repeat}" if repeat else ""))
                )
                run_dir.mkdir(parents=True, exist_ok=True)
                write_predictions(
                    run_dir / "predictions.parquet", pd.concat(frames, ignore_index=True), classes
                )
                selection = {
                    "split": "selection",
                    "description": "an inner grouped split of the training folds",
                }
                info = {"model": name, "role": ROLES[model], "task": task, "fold": fold, "classes": classes}
                info |= {"repeat": repeat} if repeats > 1 else {}
                write_json(
                    run_dir / "run.json",
                    info | {"class_balance": class_balance, "epoch_selection": selection},
                )
                run_dirs.append(run_dir)
    folds = [{"fold": fold, "val": dev_ids[fold_of == fold].tolist()} for fold in FOLDS]
    groups = {
        image_id: f"{image_id[:3]}_series_{index // series_size}"
        for ids in (dev_ids, test_ids, external_ids)
        for index, image_id in enumerate(ids)
    }
    write_json(
        splits_of(root),
        {"k_folds": len(FOLDS), "seed": seed, "origin": "drawn", "test": test_ids.tolist(),
         "external": external_ids.tolist(), "folds": folds, "groups": groups, "data": SPLIT_DATA},
    )  # fmt: skip
    return sorted(run_dirs)


SPLIT_DATA = {
    "duplicates_dropped_at_ingest": 2,
    "near_duplicates_searched": False,
    "copies_of_development_images": {"test": 0, "external": 0},
}
"""The data summary the kit's splits.json states (what `renalmae split` records)."""


def splits_of(root: Path) -> Path:
    """The splits.json `write_prediction_runs(root)` wrote."""
    return Path(root) / "splits.json"


def rewrite_predictions(run_dir: Path, edit) -> None:
    """Apply `edit(frame) -> frame` to a run's predictions table, bypassing the contract check."""
    path = run_dir / "predictions.parquet"
    edit(pd.read_parquet(path)).to_parquet(path, index=False)
