"""Using a registered model: load it from a `models:/` URI and predict class probabilities for image files.

A version that holds `champion` without a passing gate decision is never loaded (see
`renalmae.registry.audit`): the check runs here before anything is downloaded, and again in the model's
own `load_context`, for loaders that do not come through here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from renalmae.data.decode import DEFAULT_MAX_IMAGE_PIXELS
from renalmae.errors import ModelError
from renalmae.operating_point import DecisionRule
from renalmae.registry.audit import MODEL_KEY_TAG, require_gated
from renalmae.registry.connection import mlflow_client, redacted, service_errors
from renalmae.registry.connection import tracking_uri as default_tracking_uri
from renalmae.registry.pyfunc import FoldEnsemble, FoldEnsembleModel

NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def load_ensemble(model_uri: str, tracking_uri: str | None = None) -> FoldEnsemble:
    """Download and load the fold ensemble behind `model_uri` (`models:/NAME@ALIAS`, `models:/NAME/V`)."""
    import mlflow
    import mlflow.pyfunc

    tracking_uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    require_registered(model_uri, tracking_uri)
    require_gated_uri(model_uri, tracking_uri)
    with service_errors(tracking_uri):
        pyfunc_model = mlflow.pyfunc.load_model(model_uri)
    wrapper = pyfunc_model.unwrap_python_model()
    if not isinstance(wrapper, FoldEnsembleModel):
        raise ModelError(
            f"{model_uri} is not a renalmae model (it wraps {type(wrapper).__name__}); pick a renal-* model"
        )
    return wrapper.ensemble


def require_registered(model_uri: str, tracking_uri: str) -> None:
    """Refuse a `models:/NAME[@ALIAS]` whose model or alias does not exist, saying how to make it."""
    if not model_uri.startswith("models:/"):
        return
    name, _, alias = model_uri.removeprefix("models:/").partition("@")
    name = name.split("/")[0]
    client = mlflow_client(tracking_uri, read_only=True)
    if not _exists(tracking_uri, lambda: client.get_registered_model(name)):
        raise ModelError(
            f"{model_uri}: no model named {name} in the registry at {redacted(tracking_uri)}; train the "
            f"models (`dvc repro`), register them (`renalmae register`), then make one the champion "
            f"(`renalmae promote --model {name}`)"
        )
    if alias and not _exists(tracking_uri, lambda: client.get_model_version_by_alias(name, alias)):
        how = (
            f"make the challenger the champion with `renalmae promote --model {name}` (it checks the "
            "gate first)"
            if alias == "champion"
            else f"set the alias, or name a version: models:/{name}/<version>"
        )
        raise ModelError(f"{model_uri}: no version of {name} has the alias '{alias}'; {how}")


def require_gated_uri(model_uri: str, tracking_uri: str) -> None:
    """Refuse a `models:/NAME@ALIAS` or `models:/NAME/VERSION` whose version is an ungated champion, or
    one registered as a pickle (no `renalmae.model_key`: before models-from-code), before any download."""
    if not model_uri.startswith("models:/"):
        return
    client = mlflow_client(tracking_uri)
    name, number = registered_version(client, tracking_uri, model_uri)
    with service_errors(tracking_uri):
        tags = client.get_model_version(name, number).tags if number else {}
    if number and MODEL_KEY_TAG not in tags:
        raise ModelError(
            f"{model_uri} (v{number}) was registered before versions were models from code: it holds a "
            "pickled model, which renalmae does not load; register it again (`renalmae register`)"
        )
    if number:
        require_gated(client, tracking_uri, name, str(number))


def registered_version(client: Any, uri: str, model_uri: str) -> tuple[str, str]:
    """(name, version) of a `models:/NAME@ALIAS` or `models:/NAME/VERSION` URI (version "" for a bare
    `models:/NAME`); ModelError for any other URI."""
    if not model_uri.startswith("models:/"):
        raise ModelError(
            f"{model_uri} is not a registered version: name one as models:/NAME@champion or "
            "models:/NAME/VERSION"
        )
    name, _, alias = model_uri.removeprefix("models:/").partition("@")
    name, _, number = name.partition("/")
    with service_errors(uri):
        if alias:
            number = client.get_model_version_by_alias(name, alias).version
    return name, str(number)


def _exists(tracking_uri: str, lookup) -> bool:
    """False when the registry answers `lookup()` with "not found"; other failures are a `ServiceError`."""
    from mlflow.exceptions import MlflowException

    with service_errors(tracking_uri):
        try:
            lookup()
        except MlflowException as error:
            if error.error_code not in NOT_FOUND:
                raise
            return False
    return True


def load_registered_model(
    model_uri: str, tracking_uri: str | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """The underlying torch fold models (eval mode, CPU) and the ensemble info (model, task, classes, ...).

    For tools that need the networks themselves (Score-CAM on a `models:/` URI).
    """
    ensemble = load_ensemble(model_uri, tracking_uri)
    return ensemble.models, dict(ensemble.info)


def predict_files(
    model: str | FoldEnsemble,
    tracking_uri: str | None,
    images: list[str | os.PathLike],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    rule: DecisionRule | None = None,
) -> pd.DataFrame:
    """One row per image file: `image`, `prob_<class>` …, the `predicted` class name at the ensemble's
    registered operating point (compare's rule: a threshold on P(anomaly), or the prior-corrected argmax),
    and that `decision_rule`; a plain argmax for ensembles registered before versions carried one.

    `model`: a `models:/` URI or an ensemble loaded with `load_ensemble` (so that `predict --explain`
    explains the very ensemble that predicted). Files may differ in size, mode and format: each is
    prepared exactly as ingest prepared the model's training images. `rule`: another rule than the
    registered one (a site's, `renalmae.registry.site_rules`), named with where it was chosen. Raises
    `DataError` naming a bad file, `ModelError` without the model.
    """
    ensemble = model if isinstance(model, FoldEnsemble) else load_ensemble(model, tracking_uri)
    table = ensemble.predict_frame([Path(path) for path in images], max_pixels=max_pixels)
    table.insert(0, "image", [str(Path(path)) for path in images])
    probabilities = table.filter(like="prob_").to_numpy()
    registered = rule or ensemble.rule
    table["predicted"] = [
        ensemble.classes[index] for index in (registered or DecisionRule()).predict(probabilities)
    ]
    table["decision_rule"] = (
        f"{rule.name}, {rule.chosen_on}"
        if rule
        else registered.name
        if registered
        else "argmax (no operating point registered)"
    )
    return table
