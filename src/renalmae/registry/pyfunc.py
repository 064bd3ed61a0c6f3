"""The served model: an MLflow pyfunc that bundles a fold ensemble with its preprocessing.

Why `mlflow.pyfunc.PythonModel` and not the pt2 (torch.export) flavour: what is served is not one
network but the mean probability of the k fold models (the same ensemble `compare` reports on the
holdout), with the project's preprocessing in front (square pad + resize to the training
`image_size`, then `to_model_input`), and it must accept images of any size. A pyfunc keeps that whole
path in one place and reuses the exact training code; pt2 would export k fixed-shape graphs and
leave resizing and averaging to every caller. The weights travel as safetensors (no pickled
tensors); only the small wrapper object is pickled by MLflow.

Input: a uint8 image array `[N, H, W]` (a single `[H, W]` image and a list of image paths work too when
the Python object is called directly; `renalmae predict` decodes paths for you). Output: a DataFrame
with one `prob_<class>` column per class, rows summing to 1.

Bundle layout (the pyfunc artifact `ensemble`): `ensemble.json` {model, task, classes, image_size,
negative_class, folds} and `fold<k>/{weights.safetensors, run.json}` per fold.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from renalmae.errors import DataError, ModelError
from renalmae.io import read_json, write_json

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_ARTIFACT = "ensemble"
BUNDLED_FILES = ("weights.safetensors", "run.json")


def bundle_ensemble(run_dirs: list[Path], negative_class: str, out_dir: Path) -> dict[str, Any]:
    """Copy the fold models of one model family and task into `out_dir`; return `ensemble.json`."""
    infos = [read_json(Path(run_dir) / "run.json") for run_dir in run_dirs]
    first = infos[0]
    for run_dir, info in zip(run_dirs, infos, strict=True):
        for key in ("model", "task", "classes", "image_size"):
            if info.get(key) != first.get(key):
                raise ModelError(
                    f"{run_dir}/run.json has {key}={info.get(key)!r} but {run_dirs[0]} has "
                    f"{first.get(key)!r}; "
                    "an ensemble needs fold models of one model, task, class list and image size"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = []
    for run_dir, info in sorted(zip(run_dirs, infos, strict=True), key=lambda pair: pair[1].get("fold", 0)):
        fold_dir = out_dir / f"fold{info.get('fold', len(folds))}"
        fold_dir.mkdir()
        for name in BUNDLED_FILES:
            shutil.copy2(Path(run_dir) / name, fold_dir / name)
        folds.append(fold_dir.name)
    manifest = {
        "model": first["model"],
        "task": first["task"],
        "classes": list(first["classes"]),
        "image_size": int(first["image_size"]),
        "negative_class": negative_class,
        "folds": folds,
    }
    write_json(out_dir / ENSEMBLE_FILE, manifest)
    return manifest


def as_image_batch(model_input: Any) -> np.ndarray | list[np.ndarray]:
    """uint8 `[N, H, W]` (or a list of 2-D arrays) from an array, a single image, paths or a DataFrame."""
    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0].tolist() if model_input.shape[1] == 1 else model_input.to_numpy()
    if isinstance(model_input, (str, os.PathLike)):
        model_input = [model_input]
    if (
        isinstance(model_input, (list, tuple))
        and model_input
        and isinstance(model_input[0], (str, os.PathLike))
    ):
        return [read_image(path) for path in model_input]
    images = np.asarray(model_input)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise DataError(f"expected uint8 images [N, H, W] or one [H, W] image, got shape {images.shape}")
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"pixel values must lie in 0..255 (uint8), got {images.min()}..{images.max()}")
        images = images.astype(np.uint8)
    return images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file (PNG / JPEG / DICOM) to uint8 greyscale, as ingest does."""
    from renalmae.data.decode import BadImage, decode_file

    try:
        image, _ = decode_file(path, max_pixels=50_000_000)
    except BadImage as error:
        raise DataError(f"{path}: {error}; pass a readable PNG, JPEG or DICOM image") from None
    return np.asarray(image, dtype=np.uint8)


def resize_batch(images: np.ndarray | list[np.ndarray], size: int) -> np.ndarray:
    """Square-pad and resize each image to `size` exactly as ingest does (`to_square`)."""
    from PIL import Image

    from renalmae.data.decode import to_square

    return np.stack([to_square(Image.fromarray(np.ascontiguousarray(image)), size) for image in images])


class FoldEnsemble:
    """The k fold models of one family and task; `predict_proba` is their mean softmax probability."""

    def __init__(self, bundle_dir: str | os.PathLike, device: str = "cpu"):
        from renalmae.models.trained import load_trained_model

        bundle_dir = Path(bundle_dir)
        self.info: dict[str, Any] = read_json(bundle_dir / ENSEMBLE_FILE)
        self.models = [load_trained_model(bundle_dir / fold, device=device)[0] for fold in self.info["folds"]]
        self.device = device

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def predict_proba(self, images: Any, batch_size: int = 64) -> np.ndarray:
        from renalmae.train.predict import predict_probabilities

        batch = resize_batch(as_image_batch(images), int(self.info["image_size"]))
        probabilities = [
            predict_probabilities(model, batch, batch_size, self.device) for model in self.models
        ]
        return np.mean(probabilities, axis=0)

    def predict_frame(self, images: Any) -> pd.DataFrame:
        return pd.DataFrame(self.predict_proba(images), columns=[f"prob_{name}" for name in self.classes])


class FoldEnsembleModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of `FoldEnsemble` (see the module docstring for why a pyfunc)."""

    def load_context(self, context) -> None:
        self.ensemble = FoldEnsemble(context.artifacts[ENSEMBLE_ARTIFACT])

    # np.ndarray is a hint MLflow accepts without inferring a schema from it: the explicit signature rules
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return self.ensemble.predict_frame(model_input)


PIP_REQUIREMENTS = ["torch", "timm", "safetensors", "numpy", "pandas", "pillow", "pydicom", "mlflow"]


def pinned_requirements() -> list[str]:
    """`PIP_REQUIREMENTS` pinned to the installed versions, so MLflow need not run the model to infer them."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in PIP_REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned
