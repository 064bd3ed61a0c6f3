"""Using a registered model: load it from a `models:/` URI and predict class probabilities for image files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from renalmae.errors import ModelError
from renalmae.registry.connection import service_errors
from renalmae.registry.connection import tracking_uri as default_tracking_uri
from renalmae.registry.pyfunc import FoldEnsemble, FoldEnsembleModel, read_image


def load_ensemble(model_uri: str, tracking_uri: str | None = None) -> FoldEnsemble:
    """Download and load the fold ensemble behind `model_uri` (`models:/NAME@ALIAS`, `models:/NAME/V`)."""
    import mlflow
    import mlflow.pyfunc

    tracking_uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with service_errors(tracking_uri):
        pyfunc_model = mlflow.pyfunc.load_model(model_uri)
    wrapper = pyfunc_model.unwrap_python_model()
    if not isinstance(wrapper, FoldEnsembleModel):
        raise ModelError(
            f"{model_uri} is not a renalmae model (it wraps {type(wrapper).__name__}); pick a renal-* model"
        )
    return wrapper.ensemble


def load_registered_model(
    model_uri: str, tracking_uri: str | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """The underlying torch fold models (eval mode, CPU) and the ensemble info (model, task, classes, ...).

    For tools that need the networks themselves (Score-CAM on a `models:/` URI).
    """
    ensemble = load_ensemble(model_uri, tracking_uri)
    return ensemble.models, dict(ensemble.info)


def predict_files(model_uri: str, tracking_uri: str | None, images: list[str | os.PathLike]) -> pd.DataFrame:
    """One row per image file: `image`, `prob_<class>` … and the `predicted` class name."""
    ensemble = load_ensemble(model_uri, tracking_uri)
    pixels = [read_image(path) for path in images]
    table = ensemble.predict_frame(pixels)
    table.insert(0, "image", [str(Path(path)) for path in images])
    table["predicted"] = [
        ensemble.classes[index] for index in table.filter(like="prob_").to_numpy().argmax(axis=1)
    ]
    return table
