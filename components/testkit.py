"""Helpers for the component tests: a skip while a step is missing, artifacts on paths, synthetic runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest


def step_or_skip(name: str):
    """`renalmae.steps.<name>`, or skip the test while that step is not written yet."""
    try:
        return importlib.import_module(f"renalmae.steps.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"renalmae.steps.{name}":
            raise
        pytest.skip(f"renalmae.steps.{name} does not exist yet")


def artifact(kind, path: Path):
    """A KFP artifact of class `kind` whose local path is `path` (what the executor hands a component)."""
    return kind(uri=str(path))


def imported(kind, path: Path):
    """Inside a test pipeline: an existing file or folder as an input artifact (kfp.local takes no artifact
    objects as direct arguments, so upstream outputs come in through `dsl.importer`)."""
    from kfp import dsl

    return dsl.importer(artifact_uri=str(path), artifact_class=kind, reimport=True).output


def imported_list(kind, paths: list[Path]):
    """Inside a test pipeline: existing folders as one `Input[list[kind]]`, as `dsl.Collected` passes them."""
    from kfp import dsl

    with dsl.ParallelFor([str(path) for path in paths]) as uri:
        importer_task = dsl.importer(artifact_uri=uri, artifact_class=kind, reimport=True)
    return dsl.Collected(importer_task.output)


def synthetic_runs(root: Path, folds: list[int], n_val: int = 12, n_test: int = 16, seed: int = 0) -> dict:
    """Trained-run folders (run.json + predictions.parquet, the data contract of `compare`) with seeded,
    informative predictions for both models on the binary task, without training anything. Both models
    predict the same holdout ids, as the fold models of one split do. Key `splits`: the splits.json of
    those ids (what `compare` also reads)."""
    import json

    import numpy as np
    import pandas as pd

    from renalmae.data.predictions import write_predictions

    rng = np.random.default_rng(seed)
    classes = ["normal", "anomaly"]
    test_truth = np.arange(n_test) % 2
    runs: dict[str, list[Path]] = {"finetune_runs": [], "baseline_runs": []}
    models = [
        ("usfmae", "candidate", "finetune_runs", 2.0),
        ("densenet169", "baseline", "baseline_runs", 1.0),
    ]
    for model, role, key, skill in models:
        for fold in folds:
            val_truth = np.arange(n_val) % 2
            rows = []
            for split, truth, ids in (
                ("val", val_truth, [f"f{fold}-{i}" for i in range(n_val)]),
                ("test", test_truth, [f"t{i}" for i in range(n_test)]),
            ):
                score = 1 / (1 + np.exp(-(skill * (2 * truth - 1) + rng.normal(size=len(truth)))))
                rows.append(pd.DataFrame({
                    "id": ids, "model": model, "task": "binary", "fold": fold, "split": split,
                    "y_true": truth, "prob_normal": 1 - score, "prob_anomaly": score,
                }))  # fmt: skip
            run_dir = root / model / f"fold{fold}"
            run_dir.mkdir(parents=True)
            write_predictions(run_dir / "predictions.parquet", pd.concat(rows, ignore_index=True), classes)
            info = {"model": model, "role": role, "task": "binary", "fold": fold, "classes": classes}
            (run_dir / "run.json").write_text(json.dumps(info))
            runs[key].append(run_dir)
    splits = {
        "k_folds": len(folds), "seed": seed, "origin": "drawn", "test": [f"t{i}" for i in range(n_test)],
        "folds": [{"fold": fold, "val": [f"f{fold}-{i}" for i in range(n_val)]} for fold in folds],
    }  # fmt: skip
    (root / "splits.json").write_text(json.dumps(splits))
    return runs | {"splits": root / "splits.json"}
