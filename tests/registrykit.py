"""Test kit for the registry: tiny trained-model directories in the project's run-dir contract.

Each fold directory holds a tiny timm model (`weights.safetensors` + `run.json` with its spec) and a
`predictions.parquet` whose holdout rows are drawn with a chosen separability (`quality`), so a test
can register a strong and a weak model and know which one the gate must refuse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from renalmae.data.predictions import probability_columns, task_classes, write_predictions
from renalmae.models.factory import build_from_spec
from renalmae.models.trained import save_trained_model

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
        logits = quality * np.eye(len(classes))[y_test] + rng.normal(size=(n_test, len(classes)))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame = pd.DataFrame(probabilities, columns=probability_columns(classes))
        frame.insert(0, "y_true", y_test)
        frame.insert(0, "split", "test")
        frame.insert(0, "fold", fold)
        frame.insert(0, "task", task)
        frame.insert(0, "model", model)
        frame.insert(0, "id", [f"{ids_prefix}-{index:03d}" for index in range(n_test)])
        write_predictions(run_dir / "predictions.parquet", frame, classes)
        run_dirs.append(run_dir)
    return run_dirs


def write_validation(directory: Path, success: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(f'{{"success": {str(success).lower()}}}\n')
    return directory


def sample_images(n: int = 3, size: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 images of another size than the models' (the pyfunc must resize them)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)
