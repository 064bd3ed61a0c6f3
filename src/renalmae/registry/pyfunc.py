"""The served model: an MLflow pyfunc that bundles a fold ensemble with its preprocessing.

Why `mlflow.pyfunc.PythonModel` and not the pt2 (torch.export) flavour: what is served is not one
network but the mean probability of the k fold models (the same ensemble `compare` reports on the
holdout), with the project's preprocessing in front (square pad + resize to the training
`image_size`, then `to_model_input`), and it must accept images of any size. A pyfunc keeps that whole
path in one place and reuses the exact training code; pt2 would export k fixed-shape graphs and
leave resizing and averaging to every caller. The version is an MLflow model-from-code: MLflow loads it
by running `renalmae/registry/served_model.py` with the package copy logged beside it (no pickle), and
the weights travel as safetensors. Loading refuses a version that holds `champion` without a passing gate
decision (`renalmae.registry.audit.require_gated_model`), so `mlflow models serve -m
models:/NAME@champion` serves only a gated champion.

Input: a uint8 image array `[N, H, W]` (a single `[H, W]` image, a list of images of different sizes and
a list of image paths work too when the Python object is called directly; `renalmae predict` decodes
paths for you). Every image is prepared by `renalmae.data.decode`, the code ingest runs. Output: a
DataFrame with one `prob_<class>` column per class, rows summing to 1.

Bundle layout (the pyfunc artifact `ensemble`): `ensemble.json` {model, task, classes, image_size, crop,
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

from renalmae.data.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    Preparation,
    prepare_image_file,
    prepare_pixels,
)
from renalmae.data.decode import read_image as read_image  # re-exported: decode one file as ingest does
from renalmae.errors import DataError, ModelError
from renalmae.io import read_json, write_json
from renalmae.operating_point import DecisionRule, registered_rule

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_ARTIFACT = "ensemble"
MODEL_KEY = "model_key"
"""`model_config` key of the served model: a random id also tagged on its registered versions."""
BUNDLED_FILES = ("weights.safetensors", "run.json")


def bundle_ensemble(
    run_dirs: list[Path], negative_class: str, out_dir: Path, rule: DecisionRule | None = None,
    min_pixel_std: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Copy the fold models of one model family and task into `out_dir`; return `ensemble.json`, which
    holds `rule`, the operating point compare chose for the ensemble (what `predict` labels images with),
    and `min_pixel_std`, validate's `not_blank` rule for the training images, which `predict` applies to
    the images it is sent."""
    infos = [read_json(Path(run_dir) / "run.json") for run_dir in run_dirs]
    first = infos[0]
    for run_dir, info in zip(run_dirs, infos, strict=True):
        for key in ("model", "task", "classes", "image_size", "crop"):
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
        "crop": first.get("crop", "none"),
        "negative_class": negative_class,
        "folds": folds,
        **({"decision_rule": rule.to_dict()} if rule is not None else {}),
        **({"min_pixel_std": float(min_pixel_std)} if min_pixel_std is not None else {}),
    }
    write_json(out_dir / ENSEMBLE_FILE, manifest)
    return manifest


def as_image_batch(model_input: Any, preparation: Preparation, min_pixel_std: float = 0.0) -> np.ndarray:
    """uint8 model input `[N, size, size]`, each image prepared exactly as ingest prepares it.

    Takes an array `[N, H, W]`, one `[H, W]` image, a list of images of any sizes, image paths (PNG,
    JPEG, DICOM), or a one-column DataFrame of either. Raises `DataError` for a bad file, values outside
    0..255, or a prepared image whose pixel standard deviation is below `min_pixel_std` (grey levels; the
    `not_blank` rule validate applied to the training images: a blank or constant frame has nothing to
    classify, yet a model would give it confident probabilities).
    """
    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0].tolist() if model_input.shape[1] == 1 else model_input.to_numpy()
    if isinstance(model_input, (str, os.PathLike)):
        model_input = [model_input]
    if isinstance(model_input, np.ndarray):
        if model_input.ndim == 2:
            model_input = model_input[None]
        if model_input.ndim != 3:
            raise DataError(
                f"expected uint8 images [N, H, W] or one [H, W] image, got shape {model_input.shape}"
            )
    images = [
        prepare_image_file(item, preparation)
        if isinstance(item, (str, os.PathLike))
        else prepare_pixels(_uint8_image(item), preparation)
        for item in model_input
    ]
    if not images:
        raise DataError("no images given; pass one or more images")
    batch = np.stack(images)
    stds = batch.reshape(len(batch), -1).astype(np.float32).std(axis=1)  # as validate computes it
    blank = np.flatnonzero(stds < min_pixel_std)
    if blank.size:
        index = int(blank[0])
        item = model_input[index]
        name = str(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"
        raise DataError(
            f"{name}: blank or constant image (pixel standard deviation {stds[index]:.2f} < "
            f"{min_pixel_std}, validate.min_pixel_std of the model's training data): send a frame that "
            f"shows the kidney{f' ({blank.size} such images in this request)' if blank.size > 1 else ''}"
        )
    return batch


def _uint8_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise DataError(f"expected a greyscale [H, W] image, got shape {image.shape}")
    if image.dtype != np.uint8:
        if image.min() < 0 or image.max() > 255:
            raise DataError(f"pixel values must lie in 0..255 (uint8), got {image.min()}..{image.max()}")
        fractional = np.flatnonzero(image != np.round(image))  # e.g. floats in 0..1, which would turn black
        if fractional.size:
            raise DataError(
                f"pixel values must be whole numbers in 0..255 (uint8), got {image.dtype} values such as "
                f"{image.flat[fractional[0]]}; scale them to 0..255 first"
            )
        image = image.astype(np.uint8)
    return image


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

    @property
    def rule(self) -> DecisionRule | None:
        """The operating point registered with the ensemble (None in bundles made before it was)."""
        return registered_rule(self.info)

    def preparation(self, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Preparation:
        """How ingest prepared this model's training images (size, crop), to prepare new ones the same way."""
        crop = self.info.get("crop", "none")  # bundles made before data.crop existed
        return Preparation(size=int(self.info["image_size"]), max_pixels=max_pixels, crop=crop)

    def predict_proba(
        self, images: Any, batch_size: int = 64, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    ) -> np.ndarray:
        """Mean fold probability [N, classes] of raw images in any form `as_image_batch` takes, each
        prepared as ingest prepared the training images (never pass images prepared already)."""
        from renalmae.train.predict import predict_probabilities

        batch = as_image_batch(images, self.preparation(max_pixels), self.info.get("min_pixel_std", 0.0))
        probabilities = [
            predict_probabilities(model, batch, batch_size, self.device) for model in self.models
        ]
        return np.mean(probabilities, axis=0)

    def predict_frame(self, images: Any, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> pd.DataFrame:
        return pd.DataFrame(
            self.predict_proba(images, max_pixels=max_pixels),
            columns=[f"prob_{name}" for name in self.classes],
        )


class FoldEnsembleModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of `FoldEnsemble` (see the module docstring for why a pyfunc)."""

    def load_context(self, context) -> None:
        """Refuse an ungated champion (in the registry MLflow points at), then load the fold models."""
        import mlflow

        from renalmae.registry.audit import require_gated_model

        require_gated_model((context.model_config or {}).get(MODEL_KEY), mlflow.get_registry_uri())
        self.ensemble = FoldEnsemble(context.artifacts[ENSEMBLE_ARTIFACT])

    # np.ndarray is a hint MLflow accepts without inferring a schema from it: the explicit signature rules
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return self.ensemble.predict_frame(model_input)


PIP_REQUIREMENTS = [
    "torch", "torchvision", "timm", "safetensors", "numpy", "scipy", "scikit-learn", "pandas", "pillow",
    "pydicom", "python-gdcm", "pydantic", "pyyaml", "mlflow",
]  # fmt: skip
"""What the served model's code (the package copy logged with it) imports, for the environment MLflow builds
to serve it."""


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
