"""Test kit for the registry: tiny trained-model directories in the project's run-dir contract.

Each fold directory holds a tiny timm model (`weights.safetensors` + `run.json` with its spec) and a
`predictions.parquet` whose validation and holdout rows are drawn with a chosen separability
(`quality`), so a test can register a strong and a weak model and know which one the gate must refuse.
`compared_runs` also writes what `register` reads from `compare`: comparison.json with the operating
point (the real computation, `compare_task`, without the figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from renalmae.data.predictions import probability_columns, task_classes, write_predictions
from renalmae.evaluate import check_runs, compare_task, load_run
from renalmae.io import write_json
from renalmae.models.factory import build_from_spec
from renalmae.models.trained import save_trained_model
from renalmae.params import EvaluateParams

IMAGE_SIZE = 32
CLASSES = ["normal", "utd", "mcdk"]


def tiny_spec(model: str, num_classes: int) -> dict:
    if model == "usfmae":
        kwargs = {
            "img_size": IMAGE_SIZE, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2,
            "in_chans": 1, "num_classes": num_classes, "global_pool": "avg", "fc_norm": False,
        }  # fmt: skip
        return {"kind": "vit", "version": 1, "name": "vit_tiny_patch16_224", "kwargs": kwargs}
    return {
        "kind": "cnn",
        "version": 1,
        "name": "test_resnet",
        "kwargs": {"in_chans": 1, "num_classes": num_classes},
    }


def holdout_labels(task: str, n: int = 40, seed: int = 0) -> np.ndarray:
    num_classes = len(task_classes(CLASSES, "normal", task))
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


def make_run_dirs(
    root: Path,
    model: str = "usfmae",
    task: str = "binary",
    folds: int = 2,
    quality: float = 3.0,
    seed: int = 0,
    n_test: int = 40,
    ids_prefix: str = "img",
) -> list[Path]:
    """Fold directories `root/<model>/<task>/fold<k>`; higher `quality` = better-separated holdout scores."""
    classes = task_classes(CLASSES, "normal", task)
    y_test = holdout_labels(task, n_test)
    n_val = n_test // 2
    run_dirs = []
    for fold in range(folds):
        torch.manual_seed(seed * 100 + fold)
        spec = tiny_spec(model, len(classes))
        run_dir = root / model / task / f"fold{fold}"
        run_dir.mkdir(parents=True)
        role = "candidate" if model == "usfmae" else "baseline"
        info = {"model": model, "role": role, "task": task, "fold": fold, "classes": classes,
                "image_size": IMAGE_SIZE}  # fmt: skip
        save_trained_model(run_dir, build_from_spec(spec), spec, info)
        rng = np.random.default_rng(seed * 1000 + fold)
        y_val = holdout_labels(task, n_val, seed=100 + fold)
        frames = []
        for split, labels, ids in (
            # the holdout first: its scores are what they were before validation rows existed
            ("test", y_test, [f"{ids_prefix}-{index:03d}" for index in range(n_test)]),
            ("val", y_val, [f"{ids_prefix}-val{fold}-{index:03d}" for index in range(n_val)]),
        ):
            logits = quality * np.eye(len(classes))[labels] + rng.normal(size=(len(labels), len(classes)))
            frame = pd.DataFrame(
                np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True),
                columns=probability_columns(classes),
            )
            frame.insert(0, "y_true", labels)
            frame.insert(0, "split", split)
            frame.insert(0, "fold", fold)
            frame.insert(0, "task", task)
            frame.insert(0, "model", model)
            frame.insert(0, "id", ids)
            frames.append(frame)
        write_predictions(run_dir / "predictions.parquet", pd.concat(frames, ignore_index=True), classes)
        run_dirs.append(run_dir)
    return run_dirs


def compared_runs(
    root: Path, task: str = "binary", folds: int = 2, quality: float = 3.0, seed: int = 0
) -> tuple[list[Path], Path]:
    """USF-MAE run dirs (what a test registers) and a comparison folder whose comparison.json compares them
    with a DenseNet-169 of the same quality: the operating point register tags the version with."""
    candidate = make_run_dirs(root, "usfmae", task, folds=folds, quality=quality, seed=seed)
    baseline = make_run_dirs(root, "densenet169", task, folds=folds, quality=quality, seed=seed + 50)
    runs = check_runs([load_run(path) for path in candidate + baseline], [task], list(range(folds)))
    summary = compare_task(task, runs[task], EvaluateParams(bootstrap_resamples=100)).summary
    write_json(root / "comparison" / "comparison.json", {task: summary})
    return candidate, root / "comparison"


def write_validation(directory: Path, success: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(f'{{"success": {str(success).lower()}}}\n')
    return directory


def sample_images(n: int = 3, size: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 images of another size than the models' (the pyfunc must resize them)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


PASSING_TAGS = {
    "renalmae.validation_status": "passed", "holdout.auc": "0.9", "holdout.f1": "0.8",
    "renalmae.negative_class": "normal", "renalmae.data_version": "phantom-test",
}  # fmt: skip


def register_bundle(uri: str, root: Path, name: str, seed: int = 0, **tags: str):
    """Register a two-fold binary ensemble as the next version of `name` through the real registration
    path (`register_version`: models-from-code, evaluation set, tags, `challenger` move); its holdout
    evaluation set is shared by every call with the same `name`. Returns (bundle folder, version)."""
    from renalmae.registry.connection import actor, artifact_location, mlflow_client
    from renalmae.registry.pyfunc import FoldEnsemble, bundle_ensemble
    from renalmae.registry.versions import evaluation_frame, register_version

    bundle = root / "bundle"
    bundle_ensemble(make_run_dirs(root / "runs", "usfmae", "binary", folds=2, seed=seed), "normal", bundle)
    labels = holdout_labels("binary", n=40)
    images = np.random.default_rng(1).integers(0, 256, size=(40, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    probabilities = FoldEnsemble(bundle).predict_proba(images)
    evaluation = evaluation_frame(np.array([f"img-{i:03d}" for i in range(40)]), labels, probabilities,
                                  ["normal", "anomaly"])  # fmt: skip
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name("registry-tests")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("registry-tests", artifact_location(uri))
    )
    run = client.create_run(experiment_id, tags={"mlflow.user": actor()})
    version = register_version(
        client, uri, name, run.info.run_id, bundle, evaluation, {**PASSING_TAGS, **tags}
    )
    client.set_terminated(run.info.run_id)
    return bundle, version
